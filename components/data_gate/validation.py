"""Data validation: what the schema's anomalies and the drift against the last blessed run mean for
the Trainer, and where a blessed run keeps its statistics for the next run to compare.

TFX's ExampleValidator finds the schema anomalies (domains, ranges, presence); the empty-image rule
below is checked beside them. ExampleValidator has no baseline, so drift is measured here with
TFDV's own comparators, whose thresholds live in the schema (trainer/features.py, `raw_schema`)."""
from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_data_validation.anomalies.proto import custom_validation_config_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from deepattraction.components.data_gate.policy import BLOCK_NOTHING, BLOCK_SCHEMA_AND_DRIFT, check_policy
from deepattraction.trainer import features

DRIFT_SPLIT = "train"
BASELINE_DIR = "data_statistics"  # inside a ModelBlessing: the statistics of the data it was trained on
STATS_FILE = "FeatureStats.pb"
VERDICT_FILE = "data_validation.json"
DRIFT_REASONS = frozenset({anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
                           anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
                           anomalies_pb2.AnomalyInfo.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH})


def custom_validation_config() -> custom_validation_config_pb2.CustomValidationConfig:
    """Rules the schema cannot state: an empty photo (SwipeExampleGen rejects them; this catches
    examples that reach the Trainer by another way). Checked here rather than by ExampleValidator,
    whose `custom_validation_config` TFX's KFP v2 compiler cannot compile."""
    return text_format.Parse(f"""
        feature_validations {{
          feature_path {{ step: "{features.IMAGE_KEY}" }}
          validations {{ sql_expression: "feature.bytes_stats.min_num_bytes > 0"
                         severity: ERROR description: "an example has an empty image" }}
        }}""", custom_validation_config_pb2.CustomValidationConfig())


def read_schema(path: str) -> schema_pb2.Schema:
    return tfdv.load_schema_text(path)


def _words(reason) -> str:
    """A custom rule's own words are its short description; TFDV's description is the SQL query."""
    custom = reason.type == anomalies_pb2.AnomalyInfo.CUSTOM_VALIDATION
    return reason.short_description if custom else reason.description


def anomaly_rows(anomalies: anomalies_pb2.Anomalies, keep=lambda reason: True) -> list[dict]:
    """One row per feature: its reasons in words (dataset-level anomalies under the name `*`)."""
    rows = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        reasons = [_words(r) for r in info.reason if keep(r.type)]
        if reasons:
            rows.append({"feature": name, "reasons": reasons})
    data = [_words(r) for r in anomalies.dataset_anomaly_info.reason if keep(r.type)]
    if data:
        rows.append({"feature": "*", "reasons": data})
    return rows


def custom_anomalies(stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema) -> list[dict]:
    anomalies = tfdv.validate_statistics(stats, schema, custom_validation_config=custom_validation_config())
    return anomaly_rows(anomalies, lambda t: t == anomalies_pb2.AnomalyInfo.CUSTOM_VALIDATION)


def drift(current: statistics_pb2.DatasetFeatureStatisticsList, baseline: statistics_pb2.DatasetFeatureStatisticsList,
          schema: schema_pb2.Schema) -> dict:
    """Each compared feature's distance to the baseline and its threshold, and the features past it."""
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=baseline)
    measured = [{"feature": ".".join(d.path.step), "measure": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                 "value": round(m.value, 6), "threshold": m.threshold}
                for d in anomalies.drift_skew_info for m in d.drift_measurements]
    return {"measurements": measured, "anomalies": anomaly_rows(anomalies, lambda t: t in DRIFT_REASONS)}


def verdict(schema_anomalies: dict[str, list[dict]], drifted: dict | None, policy: str) -> dict:
    """What was found and whether it blocks the Trainer under `policy`."""
    check_policy(policy)
    found_schema = any(schema_anomalies.values())
    found_drift = bool(drifted and drifted["anomalies"])
    blocks = (found_schema and policy != BLOCK_NOTHING) or (found_drift and policy == BLOCK_SCHEMA_AND_DRIFT)
    return {"policy": policy, "schema_anomalies": schema_anomalies, "drift": drifted, "blocked": blocks}


def blocking_message(v: dict) -> str:
    """Names every feature and reason that stopped the run."""
    parts = [f"{split}: {r['feature']}: {'; '.join(r['reasons'])}"
             for split, rows in sorted(v["schema_anomalies"].items()) for r in rows]
    if v["policy"] == BLOCK_SCHEMA_AND_DRIFT and v["drift"]:
        parts += [f"drift: {r['feature']}: {'; '.join(r['reasons'])}" for r in v["drift"]["anomalies"]]
    return (f"data validation blocks the Trainer (policy {v['policy']!r}): " + " | ".join(parts)
            + f". Fix the data, or rerun with --block-on {BLOCK_NOTHING} to train anyway.")


def save_baseline(stats: statistics_pb2.DatasetFeatureStatisticsList, blessing_uri: str) -> str:
    path = os.path.join(blessing_uri, BASELINE_DIR, STATS_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(stats.SerializeToString())
    return path


def load_baseline(blessing_uri: str) -> statistics_pb2.DatasetFeatureStatisticsList | None:
    """None for a blessing made before the statistics were kept (nothing to compare with)."""
    path = os.path.join(blessing_uri, BASELINE_DIR, STATS_FILE)
    return tfdv.load_stats_binary(path) if tf.io.gfile.exists(path) else None
