"""DataGate on real TFX statistics and ExampleValidator anomalies: what blocks the Trainer under
each policy, and drift measured against the statistics a blessing kept."""
import json
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import executor as stats_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import standard_artifacts

from deepattraction.components.data_gate import executor, policy, validation
from deepattraction.components.data_gate.component import DataValidation
from deepattraction.pipeline import transform_only as transform
from deepattraction.pipeline.configs import SCHEMA_FILE
from deepattraction.trainer import features

SPLITS = ("train", "eval")


def _examples(root: str, rows) -> standard_artifacts.Examples:
    """The same rows, (image, gender, ratio, swipes, user id), in both splits."""
    serialized = [transform.raw_example(uid, image, ratio, swipes, gender)
                  for image, gender, ratio, swipes, uid in rows]
    return transform.write_examples(os.path.join(root, "examples"), {split: serialized for split in SPLITS})


def _schema(root: str) -> standard_artifacts.Schema:
    art = standard_artifacts.Schema()
    art.uri = os.path.join(root, "schema")
    os.makedirs(art.uri)
    tf.io.gfile.copy(SCHEMA_FILE, os.path.join(art.uri, "schema.pbtxt"))
    return art


def validate(root: str, rows) -> tuple:
    """Runs TFX's StatisticsGen and ExampleValidator executors; returns (statistics, schema, anomalies)."""
    examples, schema = _examples(root, rows), _schema(root)
    stats, anomalies = standard_artifacts.ExampleStatistics(), standard_artifacts.ExampleAnomalies()
    stats.uri, anomalies.uri = os.path.join(root, "statistics"), os.path.join(root, "anomalies")
    stats_executor.Executor().Do({"examples": [examples], "schema": [schema]}, {"statistics": [stats]},
                                 {"exclude_splits": "[]"})
    validator_executor.Executor().Do({"statistics": [stats], "schema": [schema]}, {"anomalies": [anomalies]},
                                     {"exclude_splits": "[]"})
    return stats, schema, anomalies


def gate(root: str, inputs: tuple, block_on: str, baseline_uri: str | None = None) -> tuple[dict, Exception | None]:
    stats, schema, anomalies = inputs
    out = DataValidation()
    out.uri = tempfile.mkdtemp(dir=root, prefix=f"gate-{block_on}-")
    blessings = []
    if baseline_uri:
        blessing = standard_artifacts.ModelBlessing()
        blessing.uri = baseline_uri
        blessings = [blessing]
    error = None
    try:
        executor.Executor().Do({"statistics": [stats], "schema": [schema], "anomalies": [anomalies],
                                "baseline_blessing": blessings}, {"data_validation": [out]},
                               {executor.POLICY: block_on})
    except executor.DataValidationBlocked as e:
        error = e
    with open(os.path.join(out.uri, validation.VERDICT_FILE)) as f:
        return json.load(f), error


def _photo(i: int) -> bytes:
    return tf.io.encode_jpeg(np.full((8, 8, 3), i % 255, np.uint8)).numpy()


GOOD = [(_photo(i), features.GENDERS[i % 2], 0.2 + 0.6 * (i % 10) / 10, 3 + i % 5, f"u{i}") for i in range(60)]
# Each value breaks one schema rule: a gender outside the domain, a ratio above 1, no swipes, an empty photo.
BAD = GOOD[:56] + [(_photo(1), "unknown", 0.5, 3, "b1"), (_photo(2), "male", 1.5, 3, "b2"),
                   (_photo(3), "female", 0.5, 0, "b3"), (b"", "male", 0.5, 3, "b4")]
# Valid values, other distributions: nearly all men, all liked.
SHIFTED = [(_photo(i), "male" if i % 10 else "female", 0.95, 4, f"s{i}") for i in range(60)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, rows in (("good", GOOD), ("bad", BAD), ("shifted", SHIFTED)):
        root = str(tmp_path_factory.mktemp(name))
        out[name] = (root, validate(root, rows))
    blessing = str(tmp_path_factory.mktemp("blessing"))
    validation.save_baseline(stats_artifact_utils.load_statistics(out["good"][1][0], "train").proto(), blessing)
    out["blessing"] = blessing
    return out


def test_clean_data_passes_and_without_a_blessing_no_drift_is_measured(runs):
    root, inputs = runs["good"]
    verdict, error = gate(root, inputs, policy.BLOCK_SCHEMA_AND_DRIFT)
    assert error is None and not verdict["blocked"]
    assert verdict["schema_anomalies"] == {"train": [], "eval": []}
    assert verdict["drift"] is None and verdict["baseline"] is None


def test_schema_anomalies_block_by_default_naming_each_feature(runs):
    root, inputs = runs["bad"]
    verdict, error = gate(root, inputs, policy.BLOCK_SCHEMA)
    assert verdict["blocked"] and error is not None
    for split in SPLITS:
        found = {r["feature"]: " ".join(r["reasons"]) for r in verdict["schema_anomalies"][split]}
        assert set(found) == {features.GENDER_KEY, features.LIKE_RATIO_KEY, features.SWIPE_COUNT_KEY,
                              features.IMAGE_KEY}
        assert "unknown" in found[features.GENDER_KEY] and "1.5" in found[features.LIKE_RATIO_KEY]
        assert "empty image" in found[features.IMAGE_KEY]
    message = str(error)
    assert all(k in message for k in (features.GENDER_KEY, features.LIKE_RATIO_KEY, features.SWIPE_COUNT_KEY))
    assert "--block-on nothing" in message


def test_policy_nothing_records_the_anomalies_and_lets_training_run(runs):
    root, inputs = runs["bad"]
    verdict, error = gate(root, inputs, policy.BLOCK_NOTHING)
    assert error is None and not verdict["blocked"]
    assert len(verdict["schema_anomalies"]["train"]) == 4


def test_drift_against_the_blessed_statistics_warns_by_default_and_blocks_when_asked(runs):
    root, inputs = runs["shifted"]
    verdict, error = gate(root, inputs, policy.BLOCK_SCHEMA, runs["blessing"])
    assert error is None and not verdict["blocked"] and verdict["baseline"] == runs["blessing"]
    assert verdict["schema_anomalies"] == {"train": [], "eval": []}
    measured = {m["feature"]: m for m in verdict["drift"]["measurements"]}
    assert measured[features.GENDER_KEY]["value"] == pytest.approx(0.4, abs=1e-6)  # men 50% -> 90%
    assert measured[features.LIKE_RATIO_KEY]["value"] > features.LIKE_RATIO_DRIFT_JSD
    assert {r["feature"] for r in verdict["drift"]["anomalies"]} == {features.GENDER_KEY, features.LIKE_RATIO_KEY}
    verdict, error = gate(root, inputs, policy.BLOCK_SCHEMA_AND_DRIFT, runs["blessing"])
    assert verdict["blocked"] and "drift: gender" in str(error)


def test_the_same_data_as_the_blessed_run_has_no_drift(runs):
    root, inputs = runs["good"]
    verdict, error = gate(root, inputs, policy.BLOCK_SCHEMA_AND_DRIFT, runs["blessing"])
    assert error is None and verdict["drift"]["anomalies"] == []
    assert {m["feature"] for m in verdict["drift"]["measurements"]} == {features.GENDER_KEY, features.LIKE_RATIO_KEY}
    assert all(m["value"] == pytest.approx(0.0, abs=1e-6) for m in verdict["drift"]["measurements"])


def test_a_blessing_without_statistics_is_no_baseline(runs, tmp_path):
    root, inputs = runs["shifted"]
    verdict, error = gate(root, inputs, policy.BLOCK_SCHEMA_AND_DRIFT, str(tmp_path))
    assert error is None and verdict["drift"] is None


def test_photo_statistics_are_byte_sizes_not_a_top_k_of_photos(runs):
    """76k distinct photos must not become 76k top-k entries: the image domain keeps byte sizes."""
    stats = stats_artifact_utils.load_statistics(runs["good"][1][0], "train").proto()
    image = next(f for f in stats.datasets[0].features if f.path.step == [features.IMAGE_KEY])
    assert image.WhichOneof("stats") == "bytes_stats" and image.bytes_stats.max_num_bytes > 0
