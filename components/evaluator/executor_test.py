"""The evaluator on real examples with stand-in SavedModels: a label-reading (perfect) one is
blessed, a constant one is not, and the outputs are what the Pusher and the report read."""
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.util import model_utils
from tfx.types import standard_artifacts

from deepattraction.components.evaluator import executor
from deepattraction.components.evaluator.evaluation import GateConfig, baselines
from deepattraction.trainer import features
from deepattraction.trainer.features import EXAMPLES_INPUT, OUT_FACE_COUNT, OUT_MALE, OUT_RATIO, SERVING_EXAMPLES


def _save_model(path: str, perfect: bool, constant: float = 0.5) -> None:
    """perfect: reads the labels. Else 3y - 2c, four times the best constant c's squared error on
    every photo, and the wrong gender: worse than both baselines on any split."""
    spec = features.label_feature_spec()

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        def serve(self, examples):
            p = tf.io.parse_example(examples, spec)
            n = tf.shape(examples)[0]
            y = p[features.LIKE_RATIO_KEY]
            ratio = y if perfect else 3 * y - 2 * constant
            truth = tf.cast(tf.equal(p[features.GENDER_KEY], features.GENDERS[1].encode()), tf.float32)
            male = truth if perfect else 1 - truth
            return {OUT_RATIO: ratio, OUT_MALE: male, OUT_FACE_COUNT: tf.fill([n], tf.constant(-1, tf.int64))}

    m = M()
    tf.saved_model.save(m, path, signatures={SERVING_EXAMPLES: m.serve})


@pytest.mark.parametrize("perfect", [True, False])
def test_blessing_follows_the_baselines(tmp_path, tiny_examples, perfect):
    examples, _ = tiny_examples
    model, evaluation, blessing = (standard_artifacts.Model(), standard_artifacts.ModelEvaluation(),
                                   standard_artifacts.ModelBlessing())
    model.uri, evaluation.uri, blessing.uri = (str(tmp_path / n) for n in ("model", "evaluation", "blessing"))
    for a in (evaluation, blessing):
        os.makedirs(a.uri)
    constant = baselines(executor.read_labels(executor.split_files(examples, "train"))[0])["constant"]
    _save_model(os.path.join(model.uri, "Format-Serving"), perfect, constant)
    executor.Executor().Do({"examples": [examples], "model": [model]},
                           {"evaluation": [evaluation], "blessing": [blessing]},
                           executor.gate_properties(GateConfig()))
    assert model_utils.is_model_blessed(blessing) == perfect
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED" if perfect else "NOT_BLESSED"))
    with open(os.path.join(evaluation.uri, executor.METRICS_FILE)) as f:
        m = json.load(f)
    assert m["blessed"] == perfect and m["count"] > 0 and m["train_count"] > m["count"]
    if perfect:
        assert m["ratio_weighted_mse"] == pytest.approx(0, abs=1e-10) and m["gender_accuracy"] == 1.0
    else:
        assert m["mse_ratio"] == pytest.approx(4, rel=1e-4) and len(m["not_blessed_because"]) == 2
    with open(os.path.join(evaluation.uri, executor.PREDICTIONS_FILE), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == m["count"] and {"user_id", "like_ratio", f"pred_{OUT_RATIO}",
                                        f"pred_{OUT_MALE}"} <= set(rows[0])
    assert sum(m["slices"].get(g, {}).get("count", 0) for g in ("female", "male")) == m["count"]
    assert m["slices"]["unstarred"]["count"] == m["count"]  # the stand-in model reports no faces
    assert list(rows[0])[:4] == ["user_id", "like_ratio", "swipe_count", "male"]
    assert list(rows[0])[-5:] == [features.GROUP_KEY, *features.SOURCE_COUNT_KEYS]
    for r in rows:
        by_gender = int(r[features.swipes_from_key("female")]) + int(r[features.swipes_from_key("male")])
        assert by_gender == int(r["swipe_count"])
        assert r[features.GROUP_KEY] == ""  # the synthetic users table has no group column
    s = m["slices"]
    assert sum(s[b]["count"] for b in ("swipe_count=1-9", "swipe_count=10-29", "swipe_count=30+")
               if b in s) == m["count"]
    assert not any(k.startswith("group=") for k in s)
    for g in features.GENDERS:
        seen = [r for r in rows if int(r[features.swipes_from_key(g)]) > 0]
        assert s[f"source_gender={g}"]["count"] == len(seen)
        if perfect:  # the model predicts the all-swiper ratio: off for each swiper gender alone
            y = np.array([int(r[features.likes_from_key(g)]) / int(r[features.swipes_from_key(g)]) for r in seen])
            w = np.array([int(r[features.swipes_from_key(g)]) for r in seen])
            pred = np.array([float(r[f"pred_{OUT_RATIO}"]) for r in seen])
            assert s[f"source_gender={g}"]["ratio_weighted_mse"] == pytest.approx(np.average((y - pred) ** 2,
                                                                                             weights=w), rel=1e-4)
    assert {"ratio_mae", "ratio_spearman", "ratio_ece", "gender_auc", "constant_mae"} <= set(m)


def test_examples_written_before_the_slice_features_still_read(tmp_path):
    old = tf.train.Example(features=tf.train.Features(feature={
        features.USER_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"u1"])),
        features.GENDER_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"female"])),
        features.LIKE_RATIO_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=[0.25])),
        features.SWIPE_COUNT_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[8])),
    }))
    path = str(tmp_path / "old.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        w.write(old.SerializeToString())
    labels, ids = executor.read_labels([path])
    assert ids == ["u1"] and labels.group.tolist() == [""] and labels.source_swipes.tolist() == [[0, 0]]
    assert labels.like_ratio.tolist() == [0.25] and labels.swipe_count.tolist() == [8]


def test_group_figures_and_the_gap_gate_score_the_last_blessed_model_on_the_same_photos(tmp_path, tiny_examples):
    """The last blessed model is the candidate itself: every group's gap is the same for both, so
    the growth is exactly 0 and the gap gate passes; each group slice carries its intervals."""
    examples, _ = tiny_examples
    model, last, evaluation, blessing = (standard_artifacts.Model(), standard_artifacts.Model(),
                                         standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing())
    for a, n in ((model, "model"), (last, "last"), (evaluation, "evaluation"), (blessing, "blessing")):
        a.uri = str(tmp_path / n)
        os.makedirs(a.uri)
    for a in (model, last):
        _save_model(os.path.join(a.uri, "Format-Serving"), perfect=False, constant=0.4)
    gate = GateConfig(min_group_photos=1, bootstrap_resamples=200, eval_split="train")  # test: 2 photos
    executor.Executor().Do({"examples": [examples], "model": [model], "baseline_model": [last]},
                           {"evaluation": [evaluation], "blessing": [blessing]},
                           executor.gate_properties(gate))
    with open(os.path.join(evaluation.uri, executor.METRICS_FILE)) as f:
        m = json.load(f)
    gap = m["group_gap"]
    assert gap["gated"] == ["female", "male"] and gap["worst_group"] in ("female", "male")
    assert gap["growth"] == 0 and gap["growth_ci"] == [0, 0] and gap["passed"] is True
    assert gap["baseline_model"]["gaps"] == {g: m["slices"][g]["gap"] for g in ("female", "male")}
    assert not any("group gap" in r for r in m["not_blessed_because"])
    assert m["ratio_weighted_mse_ci"][0] <= m["ratio_weighted_mse"] <= m["ratio_weighted_mse_ci"][1]
    for name in ("female", "male", "unstarred", "source_gender=female"):
        s = m["slices"][name]
        assert {"ratio_weighted_mse_ci", "ratio_ece_ci", "gender_accuracy_ci", "gap", "gap_ci"} <= set(s)
        assert s["gap"] == pytest.approx(s["ratio_weighted_mse"] / m["ratio_weighted_mse"])
        assert len(s["ratio_calibration"]) > 1  # each group's own calibration curve
