"""Quality benchmark on the 3,300 real SCUT-FBP5500 faces in ../shared: the study's table.

Ratings stand in for swipes as the data's README says, each photo keeping a random subset of its
60 raters (3 to 60), so swipe counts and label noise vary. --like-rule graded (the default) makes
a rating s a like with probability (s - 1) / 4, so the expected like ratio is affine in the mean
score that the Pearson column compares with; --like-rule threshold makes ratings of 4 or 5 likes
(deepattraction.demo_data.like_probability says why). The "Ceiling" row predicts each photo's
expected like ratio over all 60 of its ratings: the best any model can do.
Photos fall into five folds by a hash of the file name. With --folds 5 (the default) each fold
is the test set once (5-fold cross-validation) and the table gives each figure's mean over the
folds, with the standard deviation of the correlations; --folds 1 tests on fold 0 alone, a fixed
held-out fifth. A fixed tenth of all photos, less those in the test fold, is the eval set that
early stopping watches.

Each backbone runs the trainer's own schedule (trainer/train.py, trainer/finetune.py): the head
on the frozen backbone, then the top blocks fine-tuned at a lower rate. The layers below the top
blocks never train and run in inference mode, so their outputs are computed once, of each crop
and of its mirror image (trainer/finetune.split_for_fine_tuning); each epoch then picks one of
the two per photo at random, which is the trainer's random_flip. Faces are cropped by the
Transform graph's own function (preprocessing.face_inputs), with each backbone's margin.
Rows marked * train and test on the starred subset (exactly one face counts).

    python -m bench.quality [--folds 5] [--photos 0] [--fine-tune-epochs 5] [--backbones facenet]

Prints the table (also written to build/bench/quality/results.md and .json) and ends with
`quality: facenet pearson <x>, mse/constant <y>, mse/gender-constant <z>, gender accuracy <a>`.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import time

import numpy as np

from deepattraction.demo_data import LIKE_RULES, like_probability, rating_likes
from deepattraction.trainer import metrics
from deepattraction.weights import fetch, sha256

# TensorFlow and our modules that load it are imported inside the functions that train and crop:
# the folds and tables (tests/test_bench_quality.py) need none of it.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCUT = os.path.join(ROOT, "..", "shared", "data", "scut-fbp5500-train")
WEIGHTS_FILES = {"inception_v3": ("inception", "inception_v3_nsfwjs.h5"),
                 "facenet": ("facenet", "facenet_inception_resnet_v1.h5")}
FOLDS = 5
WEIGHTS_NAMES = {"inception_v3": "Inception v3 (nsfwjs: ImageNet lower layers)", "facenet": "FaceNet (MS-Celeb)"}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    scut_dir: str = DEFAULT_SCUT
    out_dir: str = os.path.join(ROOT, "build", "bench", "quality")
    weights_dir: str = os.path.join(ROOT, "build", "weights")
    photos: int = 0  # 0: all 3,300
    folds: int = FOLDS  # how many of the FOLDS folds are test sets in turn: FOLDS is cross-validation, 1 a fixed fifth
    min_swipes: int = 3
    max_swipes: int = 60
    seed: int = 0
    backbones: tuple = ("facenet", "inception_v3")
    inception_size: int = 299
    head_epochs: int = 60
    fine_tune_epochs: int = 5
    fine_tune_blocks: int = 2
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    head_layers: int = 1  # on the FaceNet pool, fold 0: Pearson 0.895 against 0.889 with 2 layers (README)
    head_width: int = 256
    dropout: float = 0.3
    facenet_features: str = "pool"
    flip: int = 1  # the trainer's random mirror (TrainConfig.flip)
    gender_loss_weight: float = 0.1
    batch_size: int = 32
    patience: int = 3
    like_rule: str = LIKE_RULES[0]  # see deepattraction.demo_data.like_probability

    def __post_init__(self):
        if not 1 <= self.folds <= FOLDS:
            raise ValueError(f"folds must be 1 to {FOLDS}, got {self.folds}")
        like_probability(self.like_rule)  # refuses an unknown rule


@dataclasses.dataclass
class Data:
    ids: list
    photos: list  # JPEG bytes
    male: np.ndarray
    group: np.ndarray
    mean_score: np.ndarray
    likes: np.ndarray
    swipes: np.ndarray
    expected_ratio: np.ndarray  # the like rule's expectation over all 60 ratings
    fold: np.ndarray  # 0 to FOLDS - 1: the fold whose test set holds the photo
    eval_pool: np.ndarray  # True: an eval photo whenever it is not a test photo

    @property
    def ratio(self) -> np.ndarray:
        return self.likes / self.swipes


def _bucket(name: str, salt: str) -> int:
    return int(hashlib.sha1(f"{salt}:{name}".encode()).hexdigest(), 16) % 100


def assign_folds(ids: list) -> tuple[np.ndarray, np.ndarray]:
    """(fold, eval_pool) per photo, from hashes of its name: Data.fold and Data.eval_pool.
    Fold 0 is the fixed fifth that earlier runs held out."""
    return (np.array([_bucket(i, "test") * FOLDS // 100 for i in ids], np.int64),
            np.array([_bucket(i, "eval") < 10 for i in ids], bool))


def split(data: Data, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, eval, test) masks with `fold` as the test set; they partition the photos."""
    test = data.fold == fold
    evl = ~test & data.eval_pool
    return ~test & ~evl, evl, test


def load(cfg: BenchConfig) -> Data:
    with open(os.path.join(cfg.scut_dir, "ratings.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(cfg.seed)
    if cfg.photos and cfg.photos < len(rows):
        rows = [rows[i] for i in sorted(rng.choice(len(rows), cfg.photos, replace=False))]
    likes, swipes, photos, counts = [], [], [], []
    for row in rows:
        counts.append([int(row[f"n_score_{k}"]) for k in range(1, 6)])
        scores = np.repeat(np.arange(1, 6), counts[-1])
        rng.shuffle(scores)
        n = int(rng.integers(cfg.min_swipes, min(cfg.max_swipes, len(scores)) + 1))
        likes.append(int(rating_likes(scores[:n], cfg.like_rule, rng).sum()))
        swipes.append(n)
        with open(os.path.join(cfg.scut_dir, "images", row["filename"]), "rb") as f:
            photos.append(f.read())
    ids = [os.path.splitext(r["filename"])[0] for r in rows]
    counts = np.array(counts, np.float64)
    return Data(ids, photos, np.array([r["group"].endswith("M") for r in rows], np.int64),
                np.array([r["group"] for r in rows]),
                np.array([float(r["mean_score"]) for r in rows]), np.array(likes, np.float64),
                np.array(swipes, np.float64),
                counts @ like_probability(cfg.like_rule) / counts.sum(1), *assign_folds(ids))


def crop_cache_path(data: Data, size: int, backbone: str, cache_dir: str) -> str:
    from deepattraction.trainer import features

    margin = features.BACKBONES[backbone].face_margin
    return os.path.join(cache_dir, f"crops_{backbone}_{size}_m{margin:g}_{len(data.ids)}_"
                                   f"{hashlib.sha1(''.join(data.ids).encode()).hexdigest()[:8]}.npz")


def face_crops(data: Data, size: int, backbone: str, cache_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Transform's face crop for every photo (cached on disk): (crops float16, face counts)."""
    path = crop_cache_path(data, size, backbone, cache_dir)
    if os.path.exists(path):
        z = np.load(path)
        return z["crops"], z["face_count"]
    import tensorflow as tf

    from deepattraction.trainer import features
    from deepattraction.trainer.preprocessing import face_inputs

    fn = tf.function(lambda b: face_inputs(b, size, features.BACKBONES[backbone], features.FACE_CANVAS))
    crops, counts = [], []
    for i in range(0, len(data.photos), 32):
        out = fn(tf.constant(data.photos[i:i + 32]))
        crops.append(out[features.IMAGE_XF].numpy().astype(np.float16))
        counts.append(out[features.FACE_COUNT_XF].numpy())
    crops, counts = np.concatenate(crops), np.concatenate(counts)
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, crops=crops, face_count=counts)
    return crops, counts


def baseline_rows(data: Data, test: np.ndarray, train: np.ndarray, fold: int) -> list[dict]:
    """Both constants, and the ceiling: the like rule's expected ratio over all 60 ratings, whose
    weighted MSE is the labels' own noise (a perfect model's) and whose Pearson is the most a
    like-ratio prediction can reach."""
    const = metrics.best_constant(data.ratio[train], data.swipes[train])
    gc = metrics.group_constants(data.ratio[train], data.swipes[train], data.male[train])
    majority, _ = metrics.majority(data.male[train])
    return [score("Baseline: best constant", data, test, np.full(test.sum(), const),
                  np.full(test.sum(), float(majority)), train, fold),
            score("Baseline: gender-conditional constant", data, test, np.array([gc[m] for m in data.male[test]]),
                  np.full(test.sum(), float(majority)), train, fold),
            score("Ceiling: expected like ratio over all 60 ratings", data, test, data.expected_ratio[test], None,
                  train, fold)]


def score(name: str, data: Data, test: np.ndarray, ratio_pred: np.ndarray, male_prob: np.ndarray | None,
          train: np.ndarray,
          fold: int) -> dict:
    """Weighted MSE against both constants fitted on the same training photos, and the
    correlations of the predicted ratio with the photo's mean score over all 60 raters."""
    from scipy import stats

    y, w = data.ratio[test], data.swipes[test]
    const = metrics.best_constant(data.ratio[train], data.swipes[train])
    gc = metrics.group_constants(data.ratio[train], data.swipes[train], data.male[train])
    mse = metrics.weighted_mse(y, ratio_pred, w)
    c_mse = metrics.weighted_mse(y, np.full_like(y, const), w)
    g_mse = metrics.weighted_mse(y, np.array([gc[m] for m in data.male[test]]), w)
    constant_pred = np.ptp(ratio_pred) == 0
    return {"model": name, "fold": fold, "photos": int(test.sum()), "weighted_mse": mse,
            "mse_over_constant": mse / c_mse,
            "mse_over_gender_constant": mse / g_mse,
            "pearson": None if constant_pred else float(stats.pearsonr(ratio_pred, data.mean_score[test])[0]),
            "spearman": None if constant_pred else float(stats.spearmanr(ratio_pred, data.mean_score[test])[0]),
            "gender_accuracy": None if male_prob is None else metrics.accuracy(data.male[test], male_prob)}


def _xy(x, data: Data, mask: np.ndarray):
    from deepattraction.trainer import features

    y = {features.RATIO_LABEL: data.ratio[mask, None].astype(np.float32),
         features.GENDER_LABEL: data.male[mask, None].astype(np.float32)}
    w = {features.RATIO_LABEL: (data.swipes[mask] / data.swipes.mean()).astype(np.float32),
         features.GENDER_LABEL: np.ones(mask.sum(), np.float32)}
    return x, y, w


def _dataset(x, data: Data, mask: np.ndarray, batch: int, shuffle: bool, flipped: np.ndarray | None = None):
    """float32 batches of (x, labels, weights). With `flipped` (the same rows computed from the
    mirrored crops) each example takes one of the two at random every epoch: the trainer's
    random_flip, applied to the frozen outputs."""
    import tensorflow as tf

    xs, y, w = _xy(x[mask], data, mask)
    ds = tf.data.Dataset.from_tensor_slices((xs if flipped is None else (xs, flipped[mask]), y, w))
    if shuffle:
        ds = ds.shuffle(len(xs), seed=0, reshuffle_each_iteration=True)
    if flipped is not None:
        ds = ds.map(lambda pair, b, c: (tf.where(tf.random.uniform(()) < 0.5, pair[1], pair[0]), b, c))
    return ds.batch(batch).map(lambda a, b, c: (tf.cast(a, tf.float32), b, c)).prefetch(2)


def frozen_outputs(cfg: BenchConfig, model, backbone: str, crops: np.ndarray, cache: str, log) -> dict:
    """What never changes in training, computed once and cached: the inputs of the top blocks
    ("acts", when fine-tuning) and the backbone's outputs ("feats"), each also of the mirrored
    crops ("acts_flipped", "feats_flipped") when cfg.flip. Only acts are cached when there are
    any: the top blocks make feats from them in seconds."""
    import tensorflow as tf

    from deepattraction.trainer import finetune

    flips = (False, True) if cfg.flip else (False,)
    names = [f"{'acts' if cfg.fine_tune_epochs > 0 else 'feats'}{'_flipped' if f else ''}" for f in flips]
    out = {}
    if os.path.exists(cache):
        with np.load(cache) as z:
            out = {k: z[k] for k in names if k in z}
    if cfg.fine_tune_epochs > 0:
        frozen, top_backbone, _ = finetune.split_for_fine_tuning(model, backbone, cfg.fine_tune_blocks)
    else:
        frozen = finetune.backbone_of(model)
    missing = [(n, f) for n, f in zip(names, flips) if n not in out]
    for name, flip in missing:
        t1 = time.time()
        images = tf.data.Dataset.from_tensor_slices(crops).batch(64).map(lambda c: tf.cast(c, tf.float32))
        if flip:
            images = images.map(tf.image.flip_left_right)
        out[name] = frozen.predict(images, verbose=0).astype(np.float16 if cfg.fine_tune_epochs > 0 else np.float32)
        log(f"{backbone}: frozen outputs {name} {out[name].shape} in {time.time() - t1:.0f} s "
            f"({len(crops) / (time.time() - t1):.1f} photos/s)")
    if missing:
        np.savez(cache, **out)
    if cfg.fine_tune_epochs > 0:
        for name in list(out):
            out[name.replace("acts", "feats")] = top_backbone.predict(out[name].astype(np.float32), batch_size=64,
                                                                      verbose=0)
    return out


def run_backbone(cfg: BenchConfig, data: Data, backbone: str, log) -> list[dict]:
    import tensorflow as tf

    from deepattraction.trainer import features, finetune
    from deepattraction.trainer.model import ModelConfig, build_model
    from deepattraction.trainer.train import Phase, TrainConfig, fit_phase

    t0 = time.time()
    fetch_name, _ = WEIGHTS_FILES[backbone]
    weights = fetch(fetch_name, cfg.weights_dir)
    size = cfg.inception_size if backbone == "inception_v3" else features.BACKBONES[backbone].image_size
    crops, face_count = face_crops(data, size, backbone, cfg.out_dir)
    crops_key = crop_cache_path(data, size, backbone, cfg.out_dir)
    log(f"{backbone}: {len(crops)} face crops at {size} px in {time.time() - t0:.0f} s; starred "
        f"{np.mean(face_count == 1):.3f}")
    tcfg = TrainConfig(
        model=ModelConfig(backbone=backbone, weights=weights, task="both", head_layers=cfg.head_layers,
                          head_width=cfg.head_width, dropout=cfg.dropout, facenet_features=cfg.facenet_features),
        learning_rate=cfg.learning_rate, head_epochs=cfg.head_epochs, epochs=cfg.fine_tune_epochs,
        fine_tune_learning_rate=cfg.fine_tune_learning_rate, trainable_blocks=cfg.fine_tune_blocks,
        early_stopping_patience=cfg.patience, gender_loss_weight=cfg.gender_loss_weight, batch_size=cfg.batch_size,
        flip=cfg.flip)
    rows = []
    frozen = None
    for fold in range(cfg.folds):
        for starred in (False, True):
            use = face_count == 1 if starred else np.ones(len(crops), bool)
            train, evl, test = (m & use for m in split(data, fold))
            tf.keras.utils.set_random_seed(cfg.seed)
            model = build_model(tcfg.model, size, metrics.best_constant(data.ratio[train], data.swipes[train]),
                                float(data.male[train].mean()))
            if frozen is None:  # the same for every fold and variant
                # what the cache holds
                cut = cfg.fine_tune_blocks if cfg.fine_tune_epochs > 0 else f"0{cfg.facenet_features}"
                cache = os.path.join(cfg.out_dir,
                                     f"frozen_{backbone}_{size}_{cut}_{os.path.basename(crops_key)}_{sha256(weights)[:8]}.npz")
                frozen = frozen_outputs(cfg, model, backbone, crops, cache, log)
            t1 = time.time()
            head = finetune.head_on_features(model)
            finetune.set_trainable(model, backbone, 0, batch_norm=False)
            h = fit_phase(head,
                          _dataset(frozen["feats"], data, train, cfg.batch_size, True, frozen.get("feats_flipped")),
                          _dataset(frozen["feats"], data, evl, 256, False), tcfg,
                          Phase("head", cfg.head_epochs, cfg.learning_rate, 0))
            name = WEIGHTS_NAMES[backbone] + ("*" if starred else "")
            p = head.predict(frozen["feats"][test], verbose=0)
            rows.append(score(f"{name}, head only", data, test, p[features.RATIO_LABEL][:, 0],
                              p[features.GENDER_LABEL][:, 0],
                              train, fold))
            log(f"{name}: fold {fold}: head phase {len(h.epoch)} epochs in {time.time() - t1:.0f} s: "
                f"{json.dumps(rows[-1])}")
            if cfg.fine_tune_epochs > 0:
                t1 = time.time()
                trainable = finetune.set_trainable(model, backbone, cfg.fine_tune_blocks, batch_norm=False)
                _, _, top = finetune.split_for_fine_tuning(model, backbone, cfg.fine_tune_blocks)
                h = fit_phase(top, _dataset(frozen["acts"], data, train, cfg.batch_size, True,
                                            frozen.get("acts_flipped")),
                              _dataset(frozen["acts"], data, evl, 64, False), tcfg,
                              Phase("fine_tune", cfg.fine_tune_epochs, cfg.fine_tune_learning_rate,
                                    cfg.fine_tune_blocks))
                p = top.predict(frozen["acts"][test].astype(np.float32), verbose=0)
                rows.append(score(f"{name}, fine-tuned", data, test, p[features.RATIO_LABEL][:, 0],
                                  p[features.GENDER_LABEL][:, 0],
                                  train, fold))
                log(f"{name}: fold {fold}: fine-tuning {len(h.epoch)} epochs of the top {cfg.fine_tune_blocks} blocks "
                    f"({trainable} layers with weights) in {time.time() - t1:.0f} s: {json.dumps(rows[-1])}")
    return rows


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


CORRELATIONS = ("pearson", "spearman")  # the figures whose spread across folds the table shows
FIGURES = ("weighted_mse", "mse_over_constant", "mse_over_gender_constant", *CORRELATIONS, "gender_accuracy")


def summarize(rows: list[dict]) -> list[dict]:
    """One row per model, in first-seen order: each figure's mean over the folds it was tested
    on, the photos tested in all, and the correlations' standard deviation across folds."""
    by_model: dict = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    out = []
    for name, rs in by_model.items():
        s = {"model": name, "folds": len(rs), "photos": sum(r["photos"] for r in rs)}
        for c in FIGURES:
            v = [r[c] for r in rs if r[c] is not None]
            s[c] = float(np.mean(v)) if v else None
            if c in CORRELATIONS:
                s[f"{c}_sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else None
        out.append(s)
    return out


def table(summary: list[dict]) -> str:
    cols = ["model", "folds", "photos", "weighted_mse", "mse_over_constant", "mse_over_gender_constant", "pearson",
            "pearson_sd",
            "spearman", "spearman_sd", "gender_accuracy"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in summary]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(BenchConfig):
        if f.name == "backbones":
            p.add_argument("--backbones", nargs="+", default=list(f.default))
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    a = vars(p.parse_args(argv))
    cfg = BenchConfig(**{**a, "backbones": tuple(a["backbones"])})
    os.makedirs(cfg.out_dir, exist_ok=True)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    data = load(cfg)
    log(f"SCUT: {len(data.ids)} photos, {int(data.swipes.sum())} swipes "
        f"({data.swipes.min():.0f}-{data.swipes.max():.0f} per photo), "
        f"like rule {cfg.like_rule}; photos per fold {np.bincount(data.fold, minlength=FOLDS).tolist()}, "
        f"{cfg.folds} of them tested")
    from scipy import stats

    rows, observed = [], []
    for fold in range(cfg.folds):
        train, _, test = split(data, fold)
        rows += baseline_rows(data, test, train, fold)
        observed.append(float(stats.pearsonr(data.ratio[test], data.mean_score[test])[0]))
    log(f"Pearson of the observed like ratio itself (3-60 swipes) with the mean score on the test photos = "
        f"{np.mean(observed):.4f} (per fold {', '.join(f'{c:.4f}' for c in observed)})")
    for b in cfg.backbones:
        rows += run_backbone(cfg, data, b, log)
    summary = summarize(rows)
    text = table(summary)
    print(text)
    with open(os.path.join(cfg.out_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(cfg.out_dir, "results.json"), "w") as f:
        json.dump({"config": dataclasses.asdict(cfg), "observed_ratio_pearson": observed, "summary": summary,
                   "rows": rows,
                   "seconds": time.time() - t0}, f, indent=1)
    log(f"done in {time.time() - t0:.0f} s")
    fn = [r for r in summary if r["model"].startswith(WEIGHTS_NAMES["facenet"] + ",")]
    if fn:
        best = fn[-1]
        print(f"quality: facenet pearson {_fmt(best['pearson'])}, mse/constant {best['mse_over_constant']:.4f}, "
              f"mse/gender-constant {best['mse_over_gender_constant']:.4f}, gender accuracy "
              f"{best['gender_accuracy']:.4f}")


if __name__ == "__main__":
    main()
