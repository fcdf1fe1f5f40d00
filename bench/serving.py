"""Serving benchmark on the model users serve: the demo's FaceNet model (build/demo's pushed model
when `make demo` ran since the served code last changed; else the same recipe exported here, once
per code version: the Transform's in-graph MTCNN, FaceNet with the converted weights in
build/weights, trainer.train.export), or with --recipe NAME that product recipe's backbone and
weights, exported the same way. In one run, on real 350 px SCUT JPEGs:

1. Served cost per photo at batch 1, N and 8: one client, requests of 1, N and 8 photos to the local
   server without batching, alternating with the backbone's own forward pass (with the head) on
   crops of its size at the same batch, and on their mirrors too for a recipe that serves mirrored
   (the physical anchor: no server can cost less), so load from other processes hits both alike.
2. Batching: N concurrent clients, one photo per request, for T seconds against the server with
   --enable_batching (bench/serving_batching.config unless --batching-parameters-file): photos/s,
   as a share of the served throughput at batch 8 from step 1, and errors. N clients that each wait
   for their answer make batches of at most N photos, so the served throughput at batch 4 is the
   ceiling of 4 clients (of N clients: batch N, up to 8): the share of that is printed too.
The servers run in their own processes (`deepattraction serve`), as they would in production.
Last line: `serving: batch 1 <a> ms/photo (<x>x backbone), batch 8 <b> ms/photo (<y>x backbone);
4 clients batched <q> photos/s (<p>% of batch 8), errors <e>`."""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEMO_MODEL = os.path.join(ROOT, "build", "demo", "pipeline", "serving", "deepattraction")
WEIGHTS = os.path.join(ROOT, "build", "weights", "facenet_inception_resnet_v1.h5")
SCUT = os.path.join(ROOT, "..", "shared", "data", "scut-fbp5500-train")
BATCHING_CONFIG = os.path.join(HERE, "serving_batching.config")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    model_base: str = ""  # a TF Serving model base path; empty: the demo's, else the recipe's model exported here
    recipe: str = ""  # a product recipe (deepattraction/recipes.py) to export and serve; empty: the demo's FaceNet
    workdir: str = "build/bench/serving"
    clients: int = 4
    seconds: float = 20.0
    calls: int = 12  # per batch size, each alternating with the backbone alone
    photos: int = 16
    batching_parameters_file: str = BATCHING_CONFIG


def recipe_backbone(cfg: BenchConfig) -> tuple[str, str, bool]:
    """(backbone, weights file, mirrored) of the model served: the recipe's, or the demo's FaceNet.
    mirrored: the recipe serves the mean over each crop and its mirror (serve_mirrored)."""
    if not cfg.recipe:
        return "facenet", WEIGHTS, False
    from deepattraction import recipes

    r = recipes.get(cfg.recipe)
    return (r.backbone, recipes.weights_file(r.weights, os.path.dirname(WEIGHTS)),
            bool(r.train_config().serve_mirrored))


# The module that exports the served graph (the Transform's MTCNN and crop, trainer.train.export):
# with every deepattraction module it imports, the code a served model's cost comes from.
SERVED_CODE = ("deepattraction.serving.sample_model",)


def current_demo_model(demo_model: str = DEMO_MODEL) -> bool:
    """Whether `make demo` pushed a model after the last change to the code that builds served
    graphs (make's rule, by modification time): an older push serves an older detector, and
    would be measured as if it were this checkout's."""
    from deepattraction.pipeline.configs import module_files

    if not os.path.isdir(demo_model):
        return False
    versions = [os.path.join(demo_model, v) for v in os.listdir(demo_model) if v.isdigit()]
    if not versions:
        return False
    newest_source = max(os.path.getmtime(f) for f in module_files(SERVED_CODE).values())
    return max(os.path.getmtime(v) for v in versions) > newest_source


def model_base(cfg: BenchConfig) -> str:
    if cfg.model_base:
        return cfg.model_base
    if not cfg.recipe and current_demo_model():
        return DEMO_MODEL
    from deepattraction.pipeline.configs import code_version
    from deepattraction.serving.sample_model import MODEL_NAME, export_model  # loads TFX: only when exporting

    backbone, weights, mirrored = recipe_backbone(cfg)
    # One export per code version: an export by older code is never reused.
    base = os.path.join(os.path.abspath(cfg.workdir), f"{cfg.recipe or 'facenet'}-{code_version(SERVED_CODE)}")
    if not os.path.exists(os.path.join(base, MODEL_NAME, "1", "saved_model.pb")):
        if weights != "none" and not os.path.exists(weights):
            raise SystemExit(f"bench: no weights at {weights}: run `make weights` (or make demo) first")
        print(f"bench: exporting {backbone} ({cfg.recipe or 'the demo recipe'}) to {base}", flush=True)
        export_model(base, 1, backbone=backbone, weights=weights, image_size=0, mirrored=mirrored)
    return os.path.join(base, MODEL_NAME)


def _start_server(base: str, *extra: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "deepattraction", "serve", "--model-base", base, "--grpc-port", "0",
           "--rest-port", "-1", "--poll-seconds", "30", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    target = None
    for line in proc.stdout:
        m = re.search(r"gRPC (\S+),", line)
        target = target or (m and m.group(1))
        if line.startswith("serve: ready"):
            return proc, target
    raise RuntimeError(f"server exited with {proc.wait()} before it was ready")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def run(cfg: BenchConfig) -> dict:
    import tensorflow as tf

    from bench import face_parity
    from deepattraction.serving.client import ClientConfig, ServingClient
    from deepattraction.trainer import features
    from deepattraction.trainer.model import ModelConfig, build_model

    base = model_base(cfg)
    photos = [b for _, b in face_parity.scut_photos(SCUT, cfg.photos, seed=11)]
    name, weights, mirrored = recipe_backbone(cfg)
    size = features.BACKBONES[name].image_size
    backbone = build_model(ModelConfig(backbone=name, weights=weights if os.path.exists(weights) else "none"), size)
    # The anchor does the backbone work the served model does: each crop, and its mirror when mirrored.
    forward = tf.function(lambda x: backbone({features.IMAGE_XF: tf.concat([x, x[:, :, ::-1]], 0) if mirrored else x},
                                             training=False))
    ceiling = min(cfg.clients, 8)  # clients that each wait for their answer batch this many photos at most
    sizes = sorted({1, ceiling, 8})
    crops = {b: tf.constant(np.random.default_rng(b).uniform(0, 255, (b, size, size, 3)).astype(np.float32))
             for b in sizes}
    served, anchor = {}, {}
    proc, target = _start_server(base)
    try:
        client = ServingClient(ClientConfig(target, retries=0))
        for b in sizes:
            batches = [[photos[(i * b + k) % len(photos)] for k in range(b)] for i in range(cfg.calls)]
            for warm in batches[:2]:  # first-call costs out of the way on both sides
                client.predict(warm), forward(crops[b])
            t_served, t_anchor = [], []
            for batch in batches:
                t0 = time.perf_counter()
                tf.nest.flatten(forward(crops[b]))[0].numpy()
                t1 = time.perf_counter()
                client.predict(batch)
                t_anchor.append(t1 - t0)
                t_served.append(time.perf_counter() - t1)
            served[b], anchor[b] = 1e3 * np.median(t_served) / b, 1e3 * np.median(t_anchor) / b
            print(f"bench: batch {b}: served {served[b]:.1f} ms/photo, {name} forward alone {anchor[b]:.1f} "
                  f"ms/photo ({served[b] / anchor[b]:.2f}x)", flush=True)
        client.close()
    finally:
        _stop(proc)

    proc, target = _start_server(base, "--enable-batching", "--batching-parameters-file", cfg.batching_parameters_file)
    done, errors = [0], []
    lock = threading.Lock()
    try:
        warm = ServingClient(ClientConfig(target, retries=0))
        warm.predict(photos[:1])
        warm.close()
        stop_at = time.perf_counter() + cfg.seconds

        def worker(k: int):
            c = ServingClient(ClientConfig(target, retries=0))
            i = k
            while time.perf_counter() < stop_at:
                try:
                    c.predict([photos[i % len(photos)]])
                    with lock:
                        done[0] += 1
                except Exception as e:  # counted, never hidden
                    with lock:
                        errors.append(str(e))
                i += cfg.clients
            c.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(cfg.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        _stop(proc)
    batched = done[0] / wall
    return {"served": served, "anchor": anchor, "batched_photos_s": batched,
            "share_of_batch8": 100.0 * batched / (1e3 / served[8]),
            "ceiling": ceiling, "share_of_ceiling": 100.0 * batched / (1e3 / served[ceiling]), "errors": len(errors),
            "first_errors": errors[:3], "clients": cfg.clients, "seconds": cfg.seconds, "model": base,
            "backbone": name + (" mirrored" if mirrored else ""),
            "cpus": os.cpu_count()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = BenchConfig()
    p.add_argument("--model-base", default=d.model_base)
    p.add_argument("--recipe", default=d.recipe, help="export and serve this product recipe's model (default: the "
                   "demo's FaceNet)")
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--seconds", type=float, default=d.seconds)
    p.add_argument("--calls", type=int, default=d.calls)
    p.add_argument("--batching-parameters-file", default=d.batching_parameters_file)
    a = p.parse_args(argv)
    if not 1 <= a.clients <= 64 or not 0 < a.seconds <= 300 or not 1 <= a.calls <= 200:
        p.error("clients must be 1..64, seconds 0..300 and calls 1..200: the benchmark stays bounded")
    if a.recipe:
        from deepattraction import recipes

        if a.recipe not in recipes.RECIPES:
            p.error(f"unknown recipe {a.recipe!r}; known: {', '.join(recipes.RECIPES)}")
    r = run(BenchConfig(model_base=a.model_base, recipe=a.recipe, workdir=a.workdir, clients=a.clients,
                        seconds=a.seconds, calls=a.calls, batching_parameters_file=a.batching_parameters_file))
    print(f"bench: model {r['model']} ({r['backbone']}); {r['clients']} clients x {r['seconds']:.0f} s with "
          f"{a.batching_parameters_file}; {r['cpus']} CPUs" + (f"; first errors: {r['first_errors']}"
                                                                if r["errors"] else ""))
    print(f"bench: {r['clients']} clients batched reach {r['share_of_ceiling']:.0f}% of the served throughput at "
          f"batch {r['ceiling']} ({1e3 / r['served'][r['ceiling']]:.1f} photos/s), the most they can batch")
    s, b = r["served"], r["anchor"]
    print(f"serving: batch 1 {s[1]:.1f} ms/photo ({s[1] / b[1]:.2f}x backbone), batch 8 {s[8]:.1f} ms/photo "
          f"({s[8] / b[8]:.2f}x backbone); {r['clients']} clients batched {r['batched_photos_s']:.1f} photos/s "
          f"({r['share_of_batch8']:.0f}% of batch 8), errors {r['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
