"""The quality benchmark: each photo is tested exactly once under cross-validation, fold 0 is the
fixed fifth that earlier runs held out, the pipeline's examples are filtered into folds by user id,
the table's figures are the folds' means with their spread, and (e2e) a small run of the whole
thing: make_scut's data, the pipeline's ExampleGen and Transform, the Trainer's train() and
export(), the Evaluator's scoring."""
import glob
import json
import math
import os

import numpy as np
import pytest

from bench import quality
from conftest import SCUT_DIR
from deepattraction import demo_data, recipes
from deepattraction.components.evaluator import evaluation

NAMES = [f"{g}{i}" for g in ("AF", "AM", "CF", "CM") for i in range(1, 401)]


def test_cross_validation_tests_every_photo_once_and_never_trains_or_stops_early_on_it():
    tested = np.zeros(len(NAMES), int)
    for fold in range(quality.FOLDS):
        train, evl, test = quality.split(NAMES, fold)
        assert (train.astype(int) + evl + test == 1).all()  # a partition
        assert 0.15 < test.mean() < 0.25 and 0.05 < evl.mean() < 0.12
        tested += test
    assert (tested == 1).all()


def test_fold_0_is_the_fixed_fifth_of_earlier_runs():
    fifth = np.array([quality._bucket(i, "test") < 20 for i in NAMES])
    _, _, test = quality.split(NAMES, 0)
    assert (test == fifth).all()


def test_folds_go_by_user_id_whatever_the_order_of_the_examples():
    shuffled = list(np.random.default_rng(0).permutation(NAMES))
    for fold in (0, 3):
        by_name = dict(zip(NAMES, zip(*quality.split(NAMES, fold))))
        assert dict(zip(shuffled, zip(*quality.split(shuffled, fold)))) == by_name


def _example(uid: str, value: float):
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[uid.encode()])),
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[value]))})).SerializeToString()


def _read(path):
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]


def test_a_fold_s_files_hold_exactly_its_users_examples_unchanged(tmp_path):
    import tensorflow as tf

    ids = NAMES[::7]
    records = {uid: _example(uid, i) for i, uid in enumerate(ids)}
    inputs = []
    for part in range(3):  # as ExampleGen's train, eval and test files
        inputs.append(str(tmp_path / f"in{part}.gz"))
        with tf.io.TFRecordWriter(inputs[-1], options="GZIP") as w:
            for uid in ids[part::3]:
                w.write(records[uid])
    train, evl, _ = quality.split(ids, 2)
    want = {str(tmp_path / "fold" / "train.gz"): {u for u, m in zip(ids, train) if m},
            str(tmp_path / "fold" / "eval.gz"): {u for u, m in zip(ids, evl) if m}}
    counts = quality.write_subsets(inputs, "user_id", want)
    assert counts == {path: len(who) for path, who in want.items()}
    for path, who in want.items():
        assert sorted(_read(path)) == sorted(records[u] for u in who)


def test_the_table_gives_each_figure_s_mean_over_folds_and_the_spread_of_the_correlations():
    def row(model, fold, pearson, mse):
        return {"model": model, "fold": fold, "photos": 10, "weighted_mse": mse, "mse_over_constant": mse,
                "mse_over_gender_constant": mse,
                "pearson": pearson, "spearman": pearson, "gender_accuracy": 0.5}
    rows = [row("constant", 0, None, 0.1), row("net", 0, 0.8, 0.02), row("constant", 1, None, 0.3),
            row("net", 1, 0.9, 0.04)]
    summary = quality.summarize(rows)
    assert [s["model"] for s in summary] == ["constant", "net"]
    const, net = summary
    assert const["pearson"] is None and const["pearson_sd"] is None and const["weighted_mse"] == pytest.approx(0.2)
    assert net["folds"] == 2 and net["photos"] == 20
    assert net["pearson"] == pytest.approx(0.85) and net["pearson_sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert "| net | 2 | 20 | 0.0300 |" in quality.table(summary)


def test_folds_outside_one_to_five_unknown_like_rules_and_backbones_are_refused():
    with pytest.raises(ValueError, match="folds must be 1 to 5"):
        quality.BenchConfig(folds=0)
    with pytest.raises(ValueError, match="like_rule must be one of"):
        quality.BenchConfig(like_rule="score>=3")
    with pytest.raises(ValueError, match="unknown backbones"):
        quality.BenchConfig(backbones=("resnet",))


def test_the_schedule_is_the_products_recipe_with_the_weights_task_and_variant():
    cfg = quality.BenchConfig(hparams={"head_layers": 1})
    hp = quality.schedule(cfg, "facenet", "/w.h5", quality.Variant("facenet", starred=True, head_only=True))
    assert cfg.recipe == recipes.DEFAULT_RECIPE == "facenet"
    assert hp == {**recipes.get("facenet").hparams, "head_layers": 1, "backbone": "facenet", "weights": "/w.h5",
                  "task": "both", "starred_only": 1, "epochs": 0}
    names = [v.name(quality.schedule(cfg, "facenet", "w", v))
             for v in quality.variants(quality.BenchConfig(head_only=1), "facenet")]
    assert names == ["FaceNet (MS-Celeb), fine-tuned", "FaceNet (MS-Celeb), head only",
                     "FaceNet (MS-Celeb)*, fine-tuned", "FaceNet (MS-Celeb)*, head only"]
    assert len(quality.variants(quality.BenchConfig(starred=0), "facenet")) == 1
    demo = quality.schedule(quality.BenchConfig(recipe="demo"), "facenet", "/w.h5")
    assert demo["head_epochs"] == recipes.get("demo").hparams["head_epochs"] and demo["weights"] == "/w.h5"


@pytest.mark.parametrize("rule", demo_data.LIKE_RULES)
def test_the_ceiling_row_predicts_the_rule_s_expected_ratio_over_all_60_ratings(rule):
    """Graded, the expected ratio is (mean score - 1) / 4, so the ceiling's Pearson is 1; by
    threshold it is the share of 4s and 5s, which saturates (about 0.94 on the whole set). Labels:
    3-60 swipes per photo drawn around the expected ratio, as make_scut draws them."""
    cfg = quality.BenchConfig(like_rule=rule, scut_dir=SCUT_DIR)
    ids = sorted(demo_data.scut_photos(SCUT_DIR, rule))[::5]
    mean_score, expected = quality.scut_arrays(cfg, ids)
    rng = np.random.default_rng(0)
    swipes = rng.integers(3, 61, len(ids))
    labels = evaluation.Labels(rng.binomial(swipes, expected) / swipes, swipes.astype(float),
                               np.array([int(i[1] == "M") for i in ids]))
    train, _, test = quality.split(ids, 0)
    base = evaluation.baselines(evaluation.subset(labels, train))
    rows = quality.baseline_rows(evaluation.subset(labels, test), base, mean_score[test], expected[test], 0)
    const, gender, ceiling = rows
    assert [r["model"].split(":")[0] for r in rows] == ["Baseline", "Baseline", "Ceiling"]
    assert ceiling["gender_accuracy"] is None and ceiling["weighted_mse"] < 0.5 * const["weighted_mse"]
    assert const["mse_over_constant"] == 1 and const["pearson"] is None and gender["mse_over_gender_constant"] == 1
    assert const["gender_accuracy"] == gender["gender_accuracy"] == pytest.approx(
        max(labels.male[test].mean(), 1 - labels.male[test].mean()))
    if rule == "graded":
        assert ceiling["pearson"] > 0.999
    else:
        assert 0.85 < ceiling["pearson"] < 0.98


@pytest.mark.e2e
def test_a_small_run_trains_with_the_trainer_and_scores_with_the_evaluator(tmp_path, facenet_weights, capsys):
    """50 SCUT photos, fold 0, FaceNet at 80 px, one head and one fine-tuning epoch: a row per
    model with finite figures (the schedule's model, and the same model unmirrored at serving),
    the Trainer's phases, a SavedModel per fold, and the quality line."""
    out = str(tmp_path / "bench")
    result = quality.main(["--photos", "50", "--folds", "1", "--backbones", "facenet", "--image-size", "facenet=80",
                           "--hparam", "head_epochs=1", "--hparam", "epochs=1", "--starred", "0",
                           "--out-dir", out, "--weights-dir", os.path.dirname(facenet_weights),
                           "--scut-dir", SCUT_DIR])
    printed = capsys.readouterr().out
    models = ["Baseline: best constant", "Baseline: gender-conditional constant",
              "Ceiling: expected like ratio over all 60 ratings", "FaceNet (MS-Celeb), fine-tuned",
              "FaceNet (MS-Celeb), fine-tuned, unmirrored at serving"]
    assert [r["model"] for r in result["summary"]] == models
    saved = json.load(open(os.path.join(out, "results.json")))
    assert [r["model"] for r in saved["rows"]] == models and saved["hparams"]["facenet"]["weights"] == facenet_weights
    # The schedule mirrors at serving; the same trained model is also scored without, and the two differ.
    net, plain = saved["rows"][-2:]
    assert saved["hparams"]["facenet"]["serve_mirrored"] == 1 and net["model_dir"] != plain["model_dir"]
    assert net["photos"] == plain["photos"] and net["weighted_mse"] != plain["weighted_mse"]
    assert net["photos"] == saved["rows"][0]["photos"] > 0  # every test photo scored
    for k in ("weighted_mse", "mse_over_constant", "mse_over_gender_constant", "pearson", "spearman",
              "gender_accuracy"):
        assert math.isfinite(net[k]), k
    # The Trainer's own schedule ran (trainer.train.fit_phases' history), and export() wrote a SavedModel.
    assert [(p["name"], p["epochs"]) for p in net["phases"]] == [("head", 1), ("fine_tune", 1)]
    assert net["phases"][1]["trainable_backbone_layers"] > 0
    assert os.path.exists(os.path.join(net["model_dir"], "saved_model.pb"))
    # The pipeline's own steps made the examples, in the backbone's pipeline root.
    root = os.path.join(out, "pipelines", "scut-50-graded-seed0-facenet-80")
    assert all(os.path.isdir(os.path.join(root, step)) for step in quality.EXAMPLE_STEPS)
    transformed = glob.glob(os.path.join(root, "Transform", "transformed_examples", "*", "Split-*"))
    assert sorted(os.path.basename(s) for s in transformed) == [f"Split-{s}" for s in sorted(quality.SPLITS)]
    assert "| FaceNet (MS-Celeb), fine-tuned | 1 | " in printed
    assert printed.strip().splitlines()[-1].startswith("quality: facenet pearson ")
