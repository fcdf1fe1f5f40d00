"""Where the served graph's time goes: each stage of the in-graph MTCNN, the crop and FaceNet's
forward pass, timed (best of N runs) as its own compiled tf.function on the previous stage's output
(op-level timing by stage), at batch 1 and 8, per photo size. Prints a markdown table of ms per
photo (the table in docs/faces-profile.md).

    python -m bench.faces_profile [--sizes 350 640 1080] [--batches 1 8] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)

DEFAULT_SCUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                            "scut-fbp5500-train")


def _best_ms(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # traced and warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), out  # the least disturbed run: the machine may be shared


def profile(photos: list[bytes], repeats: int, backbone) -> dict[str, float]:
    """ms per photo of each stage over one batch of `photos`."""
    import tensorflow as tf

    from deepattraction.trainer import faces, features

    cfg = faces.DetectorConfig()
    det = faces.Detector(cfg)
    b = len(photos)
    data = tf.constant(photos)
    rows: dict[str, float] = {}

    def stage(name, fn, *args):
        f = tf.function(fn)
        ms, out = _best_ms(lambda: f(*args), repeats)
        rows[name] = ms / b
        return out

    canvases, hws, factors = stage("decode + canvas", lambda d: faces.photo_canvas(d, cfg.canvas), data)
    norm = stage("normalise", lambda c: (c - 127.5) / 128.0, canvases)
    ids, boxes, scores = [], [], []
    side = np.array(canvases.shape[1:3])
    for k, scale in enumerate(cfg.scales()):
        level_side = tf.constant((side * scale).astype(np.int32))
        if min(level_side.numpy()) < 12:
            continue
        stage(f"level {k} ({level_side[1]}x{level_side[0]}) resize",
              lambda n, s, scale=scale, ls=level_side: det._level(n, s, scale, ls), norm, hws)
        i, bx, sc = stage(f"level {k} P-Net + its NMS (incl. resize)",
                          lambda n, s, scale=scale, ls=level_side: det._level_proposals(n, s, scale, ls), norm, hws)
        rows[f"level {k} P-Net + its NMS (incl. resize)"] -= rows[f"level {k} ({level_side[1]}x{level_side[0]}) resize"]
        ids.append(i), boxes.append(bx), scores.append(sc)
    ids, boxes, scores = tf.concat(ids, 0), tf.concat(boxes, 0), tf.concat(scores, 0)

    def across(i, bx, sc):
        kept = faces.nms(i, bx, sc, cfg.nms_pnet)
        return tf.gather(i, kept), faces._square(tf.gather(bx, kept))

    rows["proposals over all levels"] = float(len(ids)) / b  # a count, not ms: shown as such
    ids, boxes = stage("P-Net NMS across levels", across, ids, boxes, scores)
    ids, boxes = stage("R-Net (patches, net, NMS)", lambda n, s, i, bx: det._rnet(n, s, i, bx), norm, hws, ids, boxes)
    stage("O-Net (patches, net, NMS)", lambda n, s, i, bx: det._onet(n, s, i, bx), norm, hws, ids, boxes)
    size = features.BACKBONES["facenet"].image_size
    region = tf.tile(tf.constant([[0.1, 0.1, 0.6, 0.6]]), [b, 1])
    crops = stage("crop (crop_and_resize to 160)", lambda c, r: tf.image.crop_and_resize(
        c, r, tf.range(tf.shape(c)[0]), [size, size], extrapolation_value=127.5), canvases, region)
    stage("FaceNet forward (backbone + head)", lambda x: backbone(x, training=False), crops)

    def whole(d):  # decode, detect, crop, backbone in one graph: the served signature's work
        c, hw, _, _ = faces.detect_photos(d, cfg, det)
        return backbone(tf.image.crop_and_resize(c, region, tf.range(tf.shape(c)[0]), [size, size]), training=False)

    stage("WHOLE (one graph)", whole, data)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scut", default=DEFAULT_SCUT)
    p.add_argument("--sizes", type=int, nargs="+", default=[350, 640, 1080])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    from bench import face_parity
    from deepattraction.trainer import features
    from deepattraction.trainer.model import ModelConfig, build_model

    backbone = build_model(ModelConfig(backbone="facenet"), features.BACKBONES["facenet"].image_size)
    table: dict[str, dict[str, float]] = {}
    for size in a.sizes:
        n = max(a.batches)
        photos = ([b for _, b in face_parity.scut_photos(a.scut, n, seed=3)] if size == 350
                  else [b for _, b in face_parity.group_photos(a.scut, size, n, seed=3)])
        for batch in a.batches:
            table[f"{size} px, batch {batch}"] = profile(photos[:batch], a.repeats, backbone)
    cols = list(table)
    names = list(dict.fromkeys(k for r in table.values() for k in r))
    print(f"ms per photo, best of {a.repeats}, {os.cpu_count()} cores")
    print("| stage | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name in names:
        cells = [f"{table[c][name]:.1f}" if name in table[c] else "-" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for c in cols:
        r = table[c]
        staged = sum(v for k, v in r.items() if k not in ("WHOLE (one graph)", "proposals over all levels"))
        print(f"{c}: sum of stages {staged:.1f} ms/photo, whole graph {r['WHOLE (one graph)']:.1f} ms/photo, "
              f"FaceNet {r['FaceNet forward (backbone + head)']:.1f} ms/photo")


if __name__ == "__main__":
    main()
