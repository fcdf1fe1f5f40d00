"""Quality benchmark on the 3,300 real SCUT-FBP5500 faces in ../shared: the study's table, made by
the product's own code from end to end, so its figures are the product's figures.

- Data: `deepattraction.demo_data.make_scut`, what `deepattraction demo-data --source` writes
  (users and swipes tables, photos): each photo keeps a random 3-60 of its 60 ratings as swipes,
  each rating a like by --like-rule (graded, the default: a rating s is a like with probability
  (s - 1) / 4; threshold: ratings of 4 or 5; demo_data.like_probability says why).
- Examples: the pipeline's own SwipeExampleGen, ImportSchemaGen and Transform
  (pipeline.create_components), run by LocalDagRunner once per backbone, whose crop size and
  margin shape the Transform graph; Transform materialises every split (transform_splits), so
  MTCNN runs once per photo and backbone. Each backbone's steps have their own pipeline root
  under <out-dir>/pipelines and are cached in its MLMD: a second run on the same data and code
  reuses them.
- Folds: photos fall into five folds by a hash of the user id (the SCUT file name); with --folds
  5 (the default) each fold is the test set once, and a fixed tenth of all photos, less the test
  fold, is the eval set that early stopping watches; --folds 1 tests on fold 0 alone, the fixed
  fifth that earlier figures came from. ExampleGen's own train/eval/test split is pooled, and each
  fold's training and eval photos are filtered by user id out of the transformed examples, its
  test photos out of the raw ones.
- Training: `trainer.train.train()` and `export()` per fold and variant, as the Trainer's run_fn
  calls them, with the schedule of the product's recipe `--recipe` (recipes.py; `facenet`, the
  published one, by default) plus the backbone's weights file and task "both"; `--hparam NAME=VALUE`
  changes it. Rows marked *
  train with starred_only=1 and are scored on the Evaluator's starred slice (exactly one face counts).
- Scoring: the exported SavedModel's serving signature on the fold's raw test examples
  (the Evaluator's read_labels and predict), and every figure from
  components/evaluator/evaluation.py: errors against the baselines fitted on the fold's training
  photos, Pearson and Spearman of the predicted like ratio against the photo's mean score over all
  60 raters (read from ../shared's ratings.csv by user id: demo_data.scut_photos). The "Ceiling"
  row predicts each photo's expected like ratio over all 60 of its ratings: the best any model can do.

    python -m bench.quality [--recipe facenet] [--folds 5] [--photos 0] [--like-rule graded]
        [--backbones facenet inception_v3]
        [--image-size facenet=160] [--hparam NAME=VALUE] [--starred 1] [--head-only 0]

Prints the table (also written to build/bench/quality/results.md and .json) and ends with
`quality: facenet pearson <x>, mse/constant <y>, mse/gender-constant <z>, gender accuracy <a>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time

import numpy as np

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from deepattraction import recipes
from deepattraction.components.evaluator import evaluation
from deepattraction.demo_data import LIKE_RULES, DemoDataConfig, data_tables, like_probability, make_demo_data
from deepattraction.pipeline.params import parse_hparams

# TensorFlow, TFX and our modules that load them are imported inside the functions that run the
# pipeline's steps, train and score: the folds and tables (tests/test_bench_quality.py) need none.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCUT = os.path.join(ROOT, "..", "shared", "data", "scut-fbp5500-train")
# `deepattraction weights fetch` names
WEIGHTS_FILES = {"inception_v3": "inception", "facenet": "facenet", "faceres": "faceres"}
WEIGHTS_NAMES = {"inception_v3": "Inception v3 (nsfwjs: ImageNet lower layers)", "facenet": "FaceNet (MS-Celeb)",
                 "faceres": "FaceRes (VGGFace2, then age and gender)"}
FOLDS = 5
# The pipeline's steps that make the examples, and the ExampleGen splits pooled before the folds.
EXAMPLE_STEPS = ("SwipeExampleGen", "ImportSchemaGen", "Transform")
SPLITS = ("train", "eval", "test")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    scut_dir: str = DEFAULT_SCUT
    out_dir: str = os.path.join(ROOT, "build", "bench", "quality")
    weights_dir: str = os.path.join(ROOT, "build", "weights")
    photos: int = 0  # 0: all 3,300
    folds: int = FOLDS  # how many of the FOLDS folds are test sets in turn: FOLDS is cross-validation, 1 a fixed fifth
    seed: int = 0  # make_scut's: which photos (with --photos), which ratings become swipes
    backbones: tuple = ("facenet", "inception_v3")
    image_sizes: dict = dataclasses.field(default_factory=dict)  # backbone -> px; absent or 0: its native size
    recipe: str = recipes.DEFAULT_RECIPE  # whose schedule every variant trains with
    hparams: dict = dataclasses.field(default_factory=dict)  # over the recipe's schedule
    starred: int = 1  # 1: also the starred rows (trained with starred_only=1, scored on the starred slice)
    head_only: int = 0  # 1: also the head phase alone (a second training per fold with epochs=0)
    like_rule: str = LIKE_RULES[0]  # see deepattraction.demo_data.like_probability

    def __post_init__(self):
        if not 1 <= self.folds <= FOLDS:
            raise ValueError(f"folds must be 1 to {FOLDS}, got {self.folds}")
        like_probability(self.like_rule)  # refuses an unknown rule
        unknown = set(self.backbones) - set(WEIGHTS_FILES)
        if unknown:
            raise ValueError(f"unknown backbones {sorted(unknown)}; known: {sorted(WEIGHTS_FILES)}")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model per fold: a backbone, trained on all photos or the starred ones, with the
    schedule or with its head phase alone."""

    backbone: str
    starred: bool
    head_only: bool

    def name(self, schedule: dict) -> str:
        fine_tunes = not self.head_only and schedule.get("epochs", 0) > 0
        return f"{WEIGHTS_NAMES[self.backbone]}{'*' if self.starred else ''}, " \
               f"{'fine-tuned' if fine_tunes else 'head only'}"


def variants(cfg: BenchConfig, backbone: str) -> list[Variant]:
    return [Variant(backbone, starred, head_only) for starred in ((False, True) if cfg.starred else (False,))
            for head_only in ((False, True) if cfg.head_only else (False,))]


def schedule(cfg: BenchConfig, backbone: str, weights: str, variant: Variant | None = None) -> dict:
    """The hyperparameters of one variant: the recipe's schedule, --hparam, then what the bench fixes."""
    out = {**recipes.get(cfg.recipe).hparams, **cfg.hparams, "backbone": backbone, "weights": weights, "task": "both"}
    if variant is not None:
        out["starred_only"] = int(variant.starred)
        if variant.head_only:
            out["epochs"] = 0
    return out


def _bucket(name: str, salt: str) -> int:
    return int(hashlib.sha1(f"{salt}:{name}".encode()).hexdigest(), 16) % 100


def assign_folds(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(fold, eval_pool) per user id, from hashes of it: the fold whose test set holds the photo,
    and whether it is an eval photo whenever it is not a test photo. Fold 0 is the fixed fifth
    that earlier runs held out."""
    return (np.array([_bucket(i, "test") * FOLDS // 100 for i in ids], np.int64),
            np.array([_bucket(i, "eval") < 10 for i in ids], bool))


def split(ids: list[str], fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, eval, test) masks over ids with `fold` as the test set; they partition the photos."""
    fold_of, eval_pool = assign_folds(ids)
    test = fold_of == fold
    evl = ~test & eval_pool
    return ~test & ~evl, evl, test


def score(name: str, labels: evaluation.Labels, base: dict, mean_score: np.ndarray, ratio_pred,
          male_prob=None, fold: int = 0) -> dict:
    """One row: the Evaluator's metrics of a like-ratio prediction (and P(male)) against the
    baselines `base`, and its correlations with the photos' mean score over all 60 raters."""
    m = evaluation.evaluate(labels, base, ratio_pred, male_prob)
    c = evaluation.correlations("score", mean_score, ratio_pred)
    return {"model": name, "fold": fold, "photos": m["count"], "weighted_mse": m["ratio_weighted_mse"],
            "mse_over_constant": m["mse_ratio"],
            "mse_over_gender_constant": m["ratio_weighted_mse"] / max(m["gender_constant_weighted_mse"], 1e-12),
            "pearson": c["score_pearson"], "spearman": c["score_spearman"], "gender_accuracy": m.get("gender_accuracy")}


def baseline_rows(labels: evaluation.Labels, base: dict, mean_score: np.ndarray, expected_ratio: np.ndarray,
                  fold: int) -> list[dict]:
    """Both constants of the training photos (evaluation.baselines), and the ceiling: the like
    rule's expected ratio over all 60 ratings, whose weighted MSE is the labels' own noise (a
    perfect model's) and whose Pearson is the most a like-ratio prediction can reach."""
    n = len(labels.like_ratio)
    majority = np.full(n, float(base["majority_male"]))
    gender_constant = np.array([base["gender_constants"].get(int(m), base["constant"]) for m in labels.male])
    return [score("Baseline: best constant", labels, base, mean_score, np.full(n, base["constant"]), majority, fold),
            score("Baseline: gender-conditional constant", labels, base, mean_score, gender_constant, majority, fold),
            score("Ceiling: expected like ratio over all 60 ratings", labels, base, mean_score, expected_ratio,
                  None, fold)]


def scut_arrays(cfg: BenchConfig, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mean score, expected like ratio) of each user id, from ../shared's ratings."""
    from deepattraction.demo_data import scut_photos

    photos = scut_photos(cfg.scut_dir, cfg.like_rule)
    return (np.array([photos[i].mean_score for i in ids]), np.array([photos[i].expected_ratio for i in ids]))


def write_subsets(files: list[str], id_key: str, subsets: dict[str, set]) -> dict[str, int]:
    """One pass over gzip TFRecords of tf.Examples: each record whose `id_key` is in a subset's
    ids goes, unchanged, to that subset's file (gzip TFRecords). Returns the records per file."""
    import tensorflow as tf

    spec = {id_key: tf.io.FixedLenFeature([], tf.string)}
    counts = dict.fromkeys(subsets, 0)
    writers = {}
    try:
        for path in subsets:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            writers[path] = tf.io.TFRecordWriter(path, options="GZIP")
        for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(256):
            ids = tf.io.parse_example(batch, spec)[id_key].numpy()
            for record, uid in zip(batch.numpy(), ids):
                uid = uid.decode()
                for path, keep in subsets.items():
                    if uid in keep:
                        writers[path].write(record)
                        counts[path] += 1
    finally:
        for w in writers.values():
            w.close()
    return counts


@dataclasses.dataclass(frozen=True)
class Examples:
    """What the pipeline's first steps made for one backbone."""

    pipeline_root: str
    raw_files: list  # SwipeExampleGen's examples, every split: what the served model is scored on
    transform_graph: str  # Transform's transform_graph folder
    train_files: list  # Transform's transformed examples, every split: what train() reads
    train_id_key: str  # their user id feature (features.USER_ID_XF)


def prepare_data(cfg: BenchConfig, log=print) -> str:
    """make_scut's dataset in <out-dir>/data/<its settings>, made once (ExampleGen's cache key
    includes the tables' modification times, so remaking it would rerun every step)."""
    folder = os.path.join(cfg.out_dir, "data", f"scut-{cfg.photos or 'all'}-{cfg.like_rule}-seed{cfg.seed}")
    done = os.path.join(folder, "made.json")
    if not os.path.exists(done):
        s = make_demo_data(DemoDataConfig(out_dir=folder, source=cfg.scut_dir, num_users=cfg.photos, bad_rows=False,
                                          seed=cfg.seed, like_rule=cfg.like_rule))
        log(s.line(folder))
        with open(done, "w") as f:
            json.dump(dataclasses.asdict(s), f)
    return folder


def image_size(cfg: BenchConfig, backbone: str) -> int:
    from deepattraction.trainer import features

    return cfg.image_sizes.get(backbone) or features.BACKBONES[backbone].image_size


def make_examples(cfg: BenchConfig, data_dir: str, backbone: str) -> Examples:
    """Runs the pipeline's SwipeExampleGen, ImportSchemaGen and Transform for one backbone."""
    from deepattraction.pipeline import local_runner, results
    from deepattraction.pipeline.configs import PipelineConfig
    from deepattraction.trainer import features

    users, swipes = data_tables(data_dir)
    size = image_size(cfg, backbone)
    root = os.path.join(cfg.out_dir, "pipelines", f"{os.path.basename(data_dir)}-{backbone}-{size}")
    pc = PipelineConfig(pipeline_root=root, users_uri=users, swipes_uri=swipes,
                        serving_base=os.path.join(root, "serving"), backbone=backbone, image_size=size,
                        transform_splits=SPLITS)
    local_runner.run(pc, show_progress=False, only=EXAMPLE_STEPS)

    def files(step, output):
        folder = results.latest_output(root, step, output)
        return sorted(f for s in SPLITS for f in glob.glob(os.path.join(folder, f"Split-{s}", "*")))

    return Examples(root, files("SwipeExampleGen", "examples"),
                    results.latest_output(root, "Transform", "transform_graph"),
                    files("Transform", "transformed_examples"), features.USER_ID_XF)


def train_and_export(examples: Examples, hparams: dict, train_files: list[str], eval_files: list[str],
                     out: str) -> tuple[str, dict, str | None]:
    """The Trainer's run_fn, outside TFX: train() then export(). Returns the SavedModel folder, the
    training history (its phases) and, when the schedule mirrors at serving, the same model
    exported without mirroring, so the table shows what test-time mirroring adds."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from deepattraction.trainer import train

    tft_output = tft.TFTransformOutput(examples.transform_graph)
    log_dir, work_dir, serving = (os.path.join(out, n) for n in ("model_run", "frozen", "serving"))
    cfg = train.TrainConfig.from_dict(hparams)
    model = train.train(train_files, eval_files, tft_output, cfg, log_dir=log_dir, work_dir=work_dir)
    train.export(model, tft_output, serving, mirrored=bool(cfg.serve_mirrored))
    plain = train.export(model, tft_output, os.path.join(out, "serving_unmirrored")) if cfg.serve_mirrored else None
    shutil.rmtree(work_dir, ignore_errors=True)  # the frozen outputs: the largest files of a fold
    tf.keras.backend.clear_session()
    with open(os.path.join(log_dir, train.HISTORY_FILE)) as f:
        return serving, json.load(f), plain


def score_model(name: str, serving_dir: str, test_file: str, base: dict, scut: dict, starred: bool,
                fold: int) -> dict:
    """The Evaluator's scoring: the model's serving_examples signature on the raw test examples;
    a starred variant on the Evaluator's starred slice."""
    from deepattraction.components.evaluator.executor import predict, read_labels
    from deepattraction.trainer import features

    labels, ids = read_labels([test_file])
    preds = predict(serving_dir, [test_file])
    ratio, male = preds[features.OUT_RATIO], preds[features.OUT_MALE]
    mean_score = np.array([scut[i] for i in ids])
    if starred:
        keep = evaluation.slice_masks(labels, preds[features.OUT_FACE_COUNT])["starred"]
        labels, ratio, male, mean_score = evaluation.subset(labels, keep), ratio[keep], male[keep], mean_score[keep]
    return score(name, labels, base, mean_score, ratio, male, fold)


def run_backbone(cfg: BenchConfig, backbone: str, weights: str, examples: Examples, labels: evaluation.Labels,
                 ids: list[str], mean_score: np.ndarray, log) -> list[dict]:
    """Every variant of one backbone on every fold tested: train, export, score."""
    from deepattraction.trainer import features

    scut = dict(zip(ids, mean_score))
    rows = []
    for fold in range(cfg.folds):
        t0 = time.time()
        masks = split(ids, fold)
        base = evaluation.baselines(evaluation.subset(labels, masks[0]))
        fold_dir = os.path.join(examples.pipeline_root, "folds", str(fold))
        who = {name: {i for i, m in zip(ids, mask) if m} for name, mask in zip(SPLITS, masks)}
        train_file, eval_file, test_file = (os.path.join(fold_dir, f"{s}.tfrecord.gz") for s in SPLITS)
        write_subsets(examples.train_files, examples.train_id_key, {train_file: who["train"], eval_file: who["eval"]})
        write_subsets(examples.raw_files, features.USER_ID_KEY, {test_file: who["test"]})
        log(f"{backbone}: fold {fold}: {len(who['train'])} training, {len(who['eval'])} eval, {len(who['test'])} test "
            f"photos written in {time.time() - t0:.0f} s")
        for v in variants(cfg, backbone):
            t1 = time.time()
            hp = schedule(cfg, backbone, weights, v)
            name = v.name(hp)
            out = os.path.join(fold_dir, f"{backbone}{'_starred' * v.starred}{'_head' * v.head_only}")
            serving, history, plain = train_and_export(examples, hp, [train_file], [eval_file], out)
            t2 = time.time()
            for model_name, model_dir in ((name, serving), (f"{name}, unmirrored at serving", plain)):
                if model_dir is None:
                    continue
                t3 = time.time()
                row = score_model(model_name, model_dir, test_file, base, scut, v.starred, fold)
                row.update(phases=[{k: p[k] for k in ("name", "epochs", "trainable_backbone_layers")}
                                   for p in history["phases"]],
                           train_seconds=round(t2 - t1, 1), score_seconds=round(time.time() - t3, 1),
                           model_dir=model_dir)
                rows.append(row)
                log(f"{model_name}: fold {fold}: trained in {t2 - t1:.0f} s, scored in {time.time() - t3:.0f} s: "
                    f"{json.dumps({k: row[k] for k in ('photos', 'phases', *FIGURES)})}")
        for path in (train_file, eval_file):  # copies of the examples; the test file stays beside the models
            os.remove(path)
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
            "pearson_sd", "spearman", "spearman_sd", "gender_accuracy"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in summary]
    return "\n".join(lines)


def quality_line(summary: list[dict]) -> str | None:
    """The last line: FaceNet on all photos with the whole schedule, over the folds tested."""
    fn = [r for r in summary if r["model"].startswith(WEIGHTS_NAMES["facenet"] + ",")]
    if not fn:
        return None
    best = next((r for r in fn if r["model"].endswith("fine-tuned")), fn[0])
    return (f"quality: facenet pearson {_fmt(best['pearson'])}, mse/constant {best['mse_over_constant']:.4f}, "
            f"mse/gender-constant {best['mse_over_gender_constant']:.4f}, gender accuracy "
            f"{best['gender_accuracy']:.4f}")


def run(cfg: BenchConfig, log=print) -> dict:
    """The whole benchmark; returns what results.json holds."""
    from deepattraction.components.evaluator.executor import read_labels
    from deepattraction.weights import fetch

    t0 = time.time()
    os.makedirs(cfg.out_dir, exist_ok=True)
    data_dir = prepare_data(cfg, log)
    rows, observed, schedules = [], [], {}
    for b in cfg.backbones:
        t1 = time.time()
        examples = make_examples(cfg, data_dir, b)
        labels, ids = read_labels(examples.raw_files)
        mean_score, expected_ratio = scut_arrays(cfg, ids)
        log(f"{b}: the pipeline's examples of {len(ids)} photos ({int(labels.swipe_count.sum())} counted swipes, "
            f"{labels.swipe_count.min():.0f}-{labels.swipe_count.max():.0f} per photo) at "
            f"{image_size(cfg, b)} px in {time.time() - t1:.0f} s: {examples.pipeline_root}")
        if not rows:  # the baselines and the ceiling need labels only: the same for every backbone
            for fold in range(cfg.folds):
                train, _, test = split(ids, fold)
                rows += baseline_rows(evaluation.subset(labels, test),
                                      evaluation.baselines(evaluation.subset(labels, train)), mean_score[test],
                                      expected_ratio[test], fold)
                observed.append(evaluation.correlations("observed", mean_score[test],
                                                        labels.like_ratio[test])["observed_pearson"])
            log(f"like rule {cfg.like_rule}; photos per fold {np.bincount(assign_folds(ids)[0], minlength=FOLDS)}, "
                f"{cfg.folds} of them tested; Pearson of the observed like ratio itself (3-60 swipes) with the mean "
                f"score on the test photos = {np.mean(observed):.4f} "
                f"(per fold {', '.join(f'{c:.4f}' for c in observed)})")
        weights = fetch(WEIGHTS_FILES[b], cfg.weights_dir)
        schedules[b] = schedule(cfg, b, weights)
        rows += run_backbone(cfg, b, weights, examples, labels, ids, mean_score, log)
    summary = summarize(rows)
    return {"config": dataclasses.asdict(cfg), "hparams": schedules, "observed_ratio_pearson": observed,
            "summary": summary, "rows": rows, "seconds": time.time() - t0}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = BenchConfig()
    p.add_argument("--scut-dir", default=d.scut_dir)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--weights-dir", default=d.weights_dir)
    p.add_argument("--photos", type=int, default=d.photos, help="0: all 3,300")
    p.add_argument("--folds", type=int, default=d.folds, help=f"1 to {FOLDS}: how many folds are test sets in turn")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backbones", nargs="+", default=list(d.backbones), choices=sorted(WEIGHTS_FILES))
    p.add_argument("--image-size", action="append", default=[], metavar="BACKBONE=PX", help="e.g. facenet=80")
    p.add_argument("--recipe", default=d.recipe, choices=tuple(recipes.RECIPES), help="whose schedule to train with")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="over the recipe's schedule")
    p.add_argument("--starred", type=int, default=d.starred, choices=(0, 1))
    p.add_argument("--head-only", type=int, default=d.head_only, choices=(0, 1))
    p.add_argument("--like-rule", default=d.like_rule, choices=LIKE_RULES)
    a = p.parse_args(argv)
    try:
        sizes, hparams = parse_hparams(a.image_size), parse_hparams(a.hparam)
    except ValueError as e:
        raise SystemExit(f"bench.quality: {e}") from None
    cfg = BenchConfig(scut_dir=a.scut_dir, out_dir=a.out_dir, weights_dir=a.weights_dir, photos=a.photos,
                      folds=a.folds, seed=a.seed, backbones=tuple(a.backbones), recipe=a.recipe,
                      image_sizes={k: int(v) for k, v in sizes.items()}, hparams=hparams, starred=a.starred,
                      head_only=a.head_only, like_rule=a.like_rule)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    result = run(cfg, log)
    text = table(result["summary"])
    print(text)
    with open(os.path.join(cfg.out_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(cfg.out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    log(f"done in {result['seconds']:.0f} s")
    line = quality_line(result["summary"])
    if line:
        print(line)
    return result


if __name__ == "__main__":
    main()
