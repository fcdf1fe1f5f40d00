"""Issue 16's quality options, measured cheaply: which head inputs and test-time choices raise the
like-ratio prediction's Pearson with the mean score, over bench/quality's own folds and examples.

A fine-tuned FaceNet takes about 25 min per fold on two cores, so trying each option that way
would take days. Here each backbone runs once per photo and view (the photo and its mirror) over
the pipeline's transformed examples (bench/quality's make_examples: the same Transform and crops).
The global average pool of every block's output is kept, and a weighted ridge regression (the
study's loss: squared error weighted by the swipe count) is fitted per fold and option on the
training photos, its strength picked by the eval photos' weighted MSE, and scored on the test
photos with components/evaluator/evaluation.py. Gender uses the same features and a ridge on
+-1, scored by accuracy. The options:

- which features: the product's head input (the backbone's pool), several blocks' pools, or
  both backbones' together;
- mirroring: features averaged over the photo and its mirror, in training and at test time
  (for a linear model that is the mean of the two views' predictions, i.e. test-time mirroring).

Diagnostics (FaceNet's pool, mirrored) ask why no option reaches the goal: the same probe fitted on
the like ratio expected over all 60 ratings (no swipe noise), and on a quarter and a half of each
fold's training photos, a learning curve extrapolated log-linearly to the photo count the goal
would need. They are not options: the product never sees the expected ratio.

A probe is linear and frozen, so its figures are a floor for what a fine-tuned head on the same
inputs reaches, and they rank the options; the product's figures come from `make bench-quality`.

    python -m bench.options [--folds 5] [--backbones facenet inception_v3] [--blocks 1]

Prints the table (also written to build/bench/options/results.md and .json) and ends with
`options: best <name> pearson <x> (pool <y>)` and a `diagnostics:` line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time

import numpy as np

from bench import quality
from deepattraction.components.evaluator import evaluation

ROOT = quality.ROOT
GOAL = 0.925  # issue 16's graded 5-fold Pearson
ALPHAS = tuple(10.0 ** k for k in np.arange(-3, 2.01, 0.5))  # times the kernel's mean diagonal


TARGETS = ("observed", "expected")


@dataclasses.dataclass(frozen=True)
class Option:
    """A probe's input: blocks (backbone -> block names, "pool" for the head's input) and whether
    the photo's and its mirror's features are averaged. Two diagnostics ask where the goal's
    distance comes from: target "expected" fits the like ratio expected over all 60 ratings
    (no swipe noise, equal weights) instead of the observed one, and train_fraction < 1 fits on
    that share of the fold's training photos, for a learning curve."""

    name: str
    blocks: dict
    mirrored: bool
    target: str = "observed"
    train_fraction: float = 1.0

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")


def facenet_stage_ends(names: list[str]) -> list[str]:
    """The last block of each of FaceNet's stages (35, 17 and 8 px grids at 299 px input)."""
    out = []
    for stage in ("Block35", "Mixed_6a", "Block17", "Mixed_7a", "Block8"):
        of = [n for n in names if n.startswith(stage)]
        if of:
            out.append(of[-1])
    return out


# FaceRes's penultimate layer: the 256-d ReLU its age and gender outputs share (its "pool" is the
# 1024-d descriptor under it).
FEATS = "feats"
STAGE_ENDS = {"inception_v3": ("mixed7", "mixed9"), "faceres": ("conv_pw_5_relu", "conv_pw_11_relu")}


def options(blocks: dict[str, list[str]], extra: dict[str, list[str]] | None = None,
            with_blocks: bool = True) -> list[Option]:
    """The options over the backbones measured: blocks maps each to its block names, in order;
    extra to other features it has besides its pool (FaceRes's FEATS). with_blocks=False leaves
    out the options on lower blocks' pools (most of a fold's time)."""
    extra = extra or {}
    out = []
    for b, names in blocks.items():
        stages = facenet_stage_ends(names) if b == "facenet" else [n for n in names if n in STAGE_ENDS.get(b, ())]
        for mirrored in (False, True):
            suffix = ", mirrored" if mirrored else ""
            out.append(Option(f"{b}: pool{suffix}", {b: ["pool"]}, mirrored))
            for e in extra.get(b, []):
                out.append(Option(f"{b}: {e}{suffix}", {b: [e]}, mirrored))
                out.append(Option(f"{b}: pool + {e}{suffix}", {b: ["pool", e]}, mirrored))
            if with_blocks:
                out.append(Option(f"{b}: stage ends + pool{suffix}", {b: [*stages, "pool"]}, mirrored))
                out.append(Option(f"{b}: every block + pool{suffix}", {b: [*names, "pool"]}, mirrored))
    if len(blocks) > 1:
        out.append(Option("both: pools, mirrored", {b: ["pool"] for b in blocks}, True))
        for b, es in extra.items():
            for e in es:
                others = {o: ["pool"] for o in blocks if o != b}
                out.append(Option(f"both: pools + {b} {e}, mirrored", {**others, b: ["pool", e]}, True))
                out.append(Option(f"both: other pools + {b} {e}, mirrored", {**others, b: [e]}, True))
        if with_blocks:
            out.append(Option("both: every block + pool, mirrored", {b: [*n, "pool"] for b, n in blocks.items()},
                              True))
    return out


LEARNING_CURVE = (0.25, 0.5)


def diagnostics(backbone: str, blocks: dict | None = None, name: str | None = None) -> list[Option]:
    """The best option's input (the pool, mirrored; or `blocks`, named `name`) with noise-free
    labels, and on a quarter and a half of the training photos: how far label noise and the
    photo count hold the probe back."""
    pool = blocks or {backbone: ["pool"]}
    name = name or f"{backbone}: pool, mirrored"
    out = [Option(f"{name}, noise-free labels (diagnostic)", pool, True, target="expected")]
    out += [Option(f"{name}, {f:.0%} of training photos (diagnostic)", pool, True,
                   train_fraction=f) for f in LEARNING_CURVE]
    return out


BOTH_POOLS = "both: pools, mirrored"


def all_diagnostics(backbones: tuple) -> list[Option]:
    """The diagnostics of each backbone's pool and, with several, of their pools together."""
    out = [o for b in backbones for o in diagnostics(b)]
    if len(backbones) > 1:
        out += diagnostics(backbones[0], {b: ["pool"] for b in backbones}, BOTH_POOLS)
    return out


def subsample(train: np.ndarray, fraction: float, fold: int) -> np.ndarray:
    """A fixed random `fraction` of the training mask's photos (seeded by the fold)."""
    if fraction >= 1:
        return train
    idx = np.flatnonzero(train)
    keep = np.random.default_rng(fold).choice(idx, max(1, round(fraction * len(idx))), replace=False)
    out = np.zeros_like(train)
    out[keep] = True
    return out


def log_linear_fit(curve: list[tuple[int, float]]) -> tuple[float, float]:
    """(Pearson per doubling, intercept) of a least-squares line through (log2 photos, Pearson).
    Closed form on centred values, so a flat curve gives a slope of exactly 0 on every machine
    (np.polyfit's BLAS-backed solve leaves a machine-dependent residue of order 1e-17)."""
    x = [math.log2(c[0]) for c in curve]
    y = [float(c[1]) for c in curve]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        return 0.0, my
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx
    # A rise smaller than rounding over the whole curve is no rise.
    if abs(slope) * (max(x) - min(x)) <= FLAT_PEARSON * max(1.0, abs(my)):
        slope = 0.0
    return slope, my - slope * mx


FLAT_PEARSON = 1e-9  # a rise in Pearson this small over the whole curve is float noise, not learning
MAX_DOUBLINGS = 64  # past 2^64 photos an extrapolation says only "not within reach"


def photos_for(goal: float, curve: list[tuple[int, float]]) -> float | None:
    """Training photos at which a log-linear fit of (photos, Pearson) reaches `goal`; None when
    the curve does not rise or reaches the goal only past MAX_DOUBLINGS doublings."""
    slope, icpt = log_linear_fit(curve)
    if slope <= 0:
        return None
    doublings = (goal - icpt) / slope
    return float(2 ** doublings) if doublings <= MAX_DOUBLINGS else None


def pooled_features(cfg: quality.BenchConfig, examples: quality.Examples, backbone: str, weights: str,
                    log=print) -> dict:
    """{"ids", block name -> [photos, 2 views, channels] float16}: the global average pool of each
    block's output and the backbone's pool, on every transformed example and its mirror; cached
    in <out-dir>/features."""
    path = os.path.join(cfg.out_dir, "features", f"{os.path.basename(examples.pipeline_root)}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import tensorflow as tf
    import tensorflow_transform as tft

    from deepattraction.trainer import faceres, features, finetune
    from deepattraction.trainer.model import ModelConfig, build_model, on_pixels

    size = quality.image_size(cfg, backbone)
    # FaceRes is built up to its FEATS layer, whose input is its pool (the descriptor).
    model_cfg = ModelConfig(backbone=backbone, weights=weights, faceres_features=FEATS if backbone == "faceres"
                            else ModelConfig.faceres_features)
    model = build_model(model_cfg, size)
    bb = finetune.backbone_of(model)
    ends = [bb.layers[i - 1] for i in finetune.block_starts(bb, backbone)]
    outs = {layer.name: tf.keras.layers.GlobalAveragePooling2D(name=f"{layer.name}_gap")(layer.output)
            for layer in ends}
    outs["pool"] = bb.output
    if backbone == "faceres":
        outs["pool"], outs[FEATS] = bb.get_layer(faceres.DESCRIPTOR_LAYER).output, bb.output
    probe = on_pixels(model, tf.keras.Model(bb.input, outs, name=f"{bb.name}_blocks"))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
    def run(images):
        own, mirror = probe(images, training=False), probe(tf.image.flip_left_right(images), training=False)
        return {k: tf.cast(tf.stack([own[k], mirror[k]], axis=1), tf.float16) for k in own}

    spec = tft.TFTransformOutput(examples.transform_graph).transformed_feature_spec()
    spec = {k: spec[k] for k in (features.IMAGE_XF, features.USER_ID_XF)}
    ds = (tf.data.TFRecordDataset(examples.train_files, compression_type="GZIP").batch(32)
          .map(lambda x: tf.io.parse_example(x, spec)).prefetch(1))
    got: dict = {"ids": []}
    t0 = time.time()
    for xf in ds:
        for k, v in run(tf.cast(xf[features.IMAGE_XF], tf.float32)).items():
            got.setdefault(k, []).append(v.numpy())
        got["ids"] += [i.decode() for i in xf[features.USER_ID_XF].numpy().reshape(-1)]
        if len(got["ids"]) % 640 == 0:
            log(f"{backbone}: pooled features of {len(got['ids'])} photos, {time.time() - t0:.0f} s")
    out = {k: np.concatenate(v) if k != "ids" else np.array(v) for k, v in got.items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **out)
    log(f"{backbone}: {len(out['ids'])} photos x 2 views, {len(out) - 1} pools "
        f"({sum(v.shape[-1] for k, v in out.items() if k != 'ids')} channels) in {time.time() - t0:.0f} s")
    tf.keras.backend.clear_session()
    return out


def block_kernel(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Photos x photos inner products of one block's features, standardised on the training
    photos and divided by the channel count, so every block weighs the same in a sum."""
    x = x.astype(np.float32)
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mu) / sd
    return (z @ z.T) / x.shape[1]


def ridge(k: np.ndarray, y: np.ndarray, w: np.ndarray, train: np.ndarray, alphas) -> dict[float, np.ndarray]:
    """alpha -> predictions for every photo of the kernel ridge regression fitted on the training
    photos with sample weights w and an unpenalised intercept (features and labels centred on
    their weighted training means): one eigendecomposition for all alphas."""
    p = w[train] / w[train].sum()
    ka = k[:, train] @ p
    k = k - ka[:, None] - ka[None, :] + float(p @ ka[train])
    sw = np.sqrt(w[train] / w[train].mean())
    mean = float(np.average(y[train], weights=w[train]))
    ktt = k[np.ix_(train, train)] * np.outer(sw, sw)
    lam, q = np.linalg.eigh(ktt)
    proj = q.T @ (sw * (y[train] - mean))
    scale = float(np.mean(np.diag(ktt)))
    out = {}
    for a in alphas:
        dual = sw * (q @ (proj / (lam + a * scale)))
        out[a] = mean + k[:, train] @ dual
    return out


def probe_fold(kernels: dict, opt: Option, labels: evaluation.Labels, mean_score: np.ndarray,
               masks: tuple, fold: int, expected_ratio: np.ndarray | None = None) -> dict:
    """One option on one fold: ratio and gender ridges on the option's summed block kernels,
    strength chosen on the eval photos, figures on the test photos (always against the observed
    labels and the mean score, whatever the option fits)."""
    train, evl, test = masks
    train = subsample(train, opt.train_fraction, fold)
    view = "mirrored" if opt.mirrored else "own"
    k = sum(kernels[(b, n, view)] for b, names in opt.blocks.items() for n in names)
    if opt.target == "expected":
        if expected_ratio is None:
            raise ValueError(f"{opt.name}: fitting the expected like ratio needs expected_ratio")
        y, w = expected_ratio.astype(np.float64), np.ones(len(expected_ratio))
    else:
        y, w = labels.like_ratio.astype(np.float64), labels.swipe_count.astype(np.float64)
    ratio = ridge(k, y, w, train, ALPHAS)
    best = min(ratio, key=lambda a: float(np.average((ratio[a][evl] - y[evl]) ** 2, weights=w[evl])))
    sign = 2.0 * labels.male.astype(np.float64) - 1.0
    gender = ridge(k, sign, np.ones_like(w), train, ALPHAS)
    g_best = max(gender, key=lambda a: float(np.mean((gender[a][evl] > 0) == (sign[evl] > 0))))
    male_prob = np.clip((gender[g_best][test] + 1) / 2, 1e-4, 1 - 1e-4)
    base = evaluation.baselines(evaluation.subset(labels, train))
    row = quality.score(opt.name, evaluation.subset(labels, test), base, mean_score[test],
                        np.clip(ratio[best][test], 0, 1), male_prob, fold)
    row.update(alpha=best, gender_alpha=g_best, train_photos=int(train.sum()))
    return row


def run(cfg: quality.BenchConfig, log=print, with_blocks: bool = True) -> dict:
    from deepattraction.components.evaluator.executor import read_labels
    from deepattraction.weights import fetch

    t0 = time.time()
    data_dir = quality.prepare_data(cfg, log)
    feats, labels, ids = {}, None, None
    for b in cfg.backbones:
        examples = quality.make_examples(cfg, data_dir, b)
        if labels is None:
            labels, ids = read_labels(examples.raw_files)
        f = pooled_features(cfg, examples, b, fetch(quality.WEIGHTS_FILES[b], cfg.weights_dir), log)
        order = {u: i for i, u in enumerate(f["ids"])}
        missing = [u for u in ids if u not in order]
        if missing:
            raise ValueError(f"{b}: {len(missing)} photos have no transformed example, e.g. {missing[:3]}")
        idx = np.array([order[u] for u in ids])
        feats[b] = {k: v[idx] for k, v in f.items() if k != "ids"}
    mean_score, expected_ratio = quality.scut_arrays(cfg, ids)
    blocks = {b: [k for k in f if k not in ("pool", FEATS)] for b, f in feats.items()}
    extra = {b: [FEATS] for b, f in feats.items() if FEATS in f}
    opts = options(blocks, extra, with_blocks) + all_diagnostics(tuple(cfg.backbones))
    needed = {(b, n, "mirrored" if o.mirrored else "own") for o in opts for b, names in o.blocks.items() for n in names}
    rows = []
    for fold in range(cfg.folds):
        t1 = time.time()
        masks = quality.split(ids, fold)
        kernels = {}
        for b, n, view in sorted(needed):  # only the kernels some option sums
            x = feats[b][n]
            kernels[(b, n, view)] = block_kernel(x[:, 0] if view == "own" else x.astype(np.float32).mean(1), masks[0])
        for opt in opts:
            rows.append(probe_fold(kernels, opt, labels, mean_score, masks, fold, expected_ratio))
        log(f"fold {fold}: {len(opts)} options in {time.time() - t1:.0f} s; "
            + ", ".join(f"{r['model']} {r['pearson']:.4f} (gender {r['gender_accuracy']:.4f})"
                        for r in rows[-len(opts):]))
    summary = quality.summarize(rows)
    return {"config": dataclasses.asdict(cfg), "summary": summary, "rows": rows, "seconds": time.time() - t0}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = quality.BenchConfig(out_dir=os.path.join(ROOT, "build", "bench", "options"))
    p.add_argument("--scut-dir", default=d.scut_dir)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--examples-dir", default=os.path.join(ROOT, "build", "bench", "quality"),
                   help="bench/quality's out-dir, whose pipelines (and their cached steps) make the examples")
    p.add_argument("--weights-dir", default=d.weights_dir)
    p.add_argument("--folds", type=int, default=d.folds)
    p.add_argument("--backbones", nargs="+", default=list(d.backbones), choices=sorted(quality.WEIGHTS_FILES))
    p.add_argument("--blocks", type=int, default=1, choices=(0, 1),
                   help="0: only the pools (and FaceRes's feats), no options on lower blocks' pools")
    a = p.parse_args(argv)
    cfg = quality.BenchConfig(scut_dir=a.scut_dir, out_dir=a.examples_dir, weights_dir=a.weights_dir,
                              folds=a.folds, backbones=tuple(a.backbones))
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    result = run(cfg, log, with_blocks=bool(a.blocks))
    text = quality.table(result["summary"])
    print(text)
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    options_only = [r for r in result["summary"] if not r["model"].endswith("(diagnostic)")]
    best = max(options_only, key=lambda r: r["pearson"] or -1)
    pool = next(r for r in result["summary"] if r["model"].endswith(": pool"))
    print(f"options: best {best['model']} pearson {best['pearson']:.4f} (pool {pool['pearson']:.4f})")
    for name in [f"{b}: pool, mirrored" for b in cfg.backbones] + ([BOTH_POOLS] if len(cfg.backbones) > 1 else []):
        print(diagnostics_line(result["rows"], name))
    return result


def diagnostics_line(rows: list[dict], name: str, goal: float = GOAL) -> str:
    """The diagnostics in one line: an option's probe on noise-free labels, and the learning
    curve's Pearson per doubling of the training photos with the photo count it puts at `goal`.
    name: the option (a backbone alone means its pool, mirrored)."""
    mirrored = name if ":" in name else f"{name}: pool, mirrored"
    by = {}
    for r in rows:
        if r["model"] == mirrored or r["model"].startswith(mirrored + ","):
            by.setdefault(r["model"], []).append(r)
    curve = sorted((float(np.mean([r["train_photos"] for r in rs])), float(np.mean([r["pearson"] for r in rs])))
                   for name, rs in by.items() if "noise-free" not in name)
    clean = next(float(np.mean([r["pearson"] for r in rs])) for name, rs in by.items() if "noise-free" in name)
    slope = log_linear_fit(curve)[0]
    need = photos_for(goal, curve)
    return (f"diagnostics ({mirrored}): noise-free labels pearson {clean:.4f}; learning curve "
            + ", ".join(f"{n:.0f} photos {p:.4f}" for n, p in curve)
            + f"; {slope:+.4f} per doubling; {goal} at " + (f"{need:,.0f} training photos" if need else "no count"))


if __name__ == "__main__":
    main()
