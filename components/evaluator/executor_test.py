"""The evaluator on real examples with stand-in SavedModels: a label-reading (perfect) one is
blessed, a constant one is not, and the outputs are what the Pusher and the report read."""
import csv
import json
import os

import pytest
import tensorflow as tf
from tfx.components.util import model_utils
from tfx.types import standard_artifacts

from deepattraction.components.evaluator import executor
from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.trainer import features
from deepattraction.trainer.train import EXAMPLES_INPUT, OUT_FACE_COUNT, OUT_MALE, OUT_RATIO, SERVING_EXAMPLES


def _save_model(path: str, perfect: bool) -> None:
    spec = features.label_feature_spec()

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        def serve(self, examples):
            p = tf.io.parse_example(examples, spec)
            n = tf.shape(examples)[0]
            ratio = p[features.LIKE_RATIO_KEY] if perfect else tf.fill([n], 0.05)
            male = tf.cast(tf.equal(p[features.GENDER_KEY], b"male"), tf.float32) if perfect else tf.fill([n], 0.9)
            return {OUT_RATIO: ratio, OUT_MALE: male, OUT_FACE_COUNT: tf.fill([n], tf.constant(-1, tf.int64))}

    m = M()
    tf.saved_model.save(m, path, signatures={SERVING_EXAMPLES: m.serve})


@pytest.mark.parametrize("perfect", [True, False])
def test_blessing_follows_the_baselines(tmp_path, tiny_examples, perfect):
    examples, _ = tiny_examples
    model, evaluation, blessing = standard_artifacts.Model(), standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    model.uri, evaluation.uri, blessing.uri = (str(tmp_path / n) for n in ("model", "evaluation", "blessing"))
    for a in (evaluation, blessing):
        os.makedirs(a.uri)
    _save_model(os.path.join(model.uri, "Format-Serving"), perfect)
    executor.Executor().Do({"examples": [examples], "model": [model]}, {"evaluation": [evaluation], "blessing": [blessing]},
                           {executor.GATE_CONFIG: GateConfig().to_json()})
    assert model_utils.is_model_blessed(blessing) == perfect
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED" if perfect else "NOT_BLESSED"))
    with open(os.path.join(evaluation.uri, executor.METRICS_FILE)) as f:
        m = json.load(f)
    assert m["blessed"] == perfect and m["count"] > 0 and m["train_count"] > m["count"]
    if perfect:
        assert m["ratio_weighted_mse"] == pytest.approx(0, abs=1e-10) and m["gender_accuracy"] == 1.0
    else:
        assert m["mse_ratio"] > 1 and len(m["not_blessed_because"]) == 2
    with open(os.path.join(evaluation.uri, executor.PREDICTIONS_FILE), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == m["count"] and {"user_id", "like_ratio", f"pred_{OUT_RATIO}", f"pred_{OUT_MALE}"} <= set(rows[0])
    assert sum(m["slices"].get(g, {}).get("count", 0) for g in ("female", "male")) == m["count"]
    assert m["slices"]["unstarred"]["count"] == m["count"]  # the stand-in model reports no faces
