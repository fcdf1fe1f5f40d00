"""DataGate executor: reads ExampleValidator's anomalies per split and adds the rules the schema
cannot state, measures drift of the training split against the last blessed run's statistics,
writes the verdict, and fails when it blocks."""
from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from deepattraction.components.data_gate import policy, validation

POLICY = "block_on"
ANOMALIES_FILE = "SchemaDiff.pb"  # what TFX's ExampleValidator writes in each split's folder


class DataValidationBlocked(RuntimeError):
    """The data breaks the schema (or drifted, if the policy says so): the Trainer must not run."""


def read_anomalies(anomalies_artifact) -> dict[str, list[dict]]:
    """{split: rows} for every split ExampleValidator checked."""
    out = {}
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        anomalies = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split),
                                            ANOMALIES_FILE), "rb") as f:
            anomalies.ParseFromString(f.read())
        out[split] = validation.anomaly_rows(anomalies)
    return out


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        block_on = policy.check_policy(exec_properties.get(POLICY) or policy.BLOCK_SCHEMA)
        stats = artifact_utils.get_single_instance(input_dict["statistics"])
        schema_dir = artifact_utils.get_single_uri(input_dict["schema"])
        schema = validation.read_schema(os.path.join(schema_dir, "schema.pbtxt"))
        found = read_anomalies(artifact_utils.get_single_instance(input_dict["anomalies"]))
        split_stats = {split: stats_artifact_utils.load_statistics(stats, split).proto()
                       for split in {*found, validation.DRIFT_SPLIT}}
        for split in found:
            found[split] += validation.custom_anomalies(split_stats[split], schema)
        current = split_stats[validation.DRIFT_SPLIT]
        blessings = input_dict.get("baseline_blessing") or []
        baseline = validation.load_baseline(blessings[0].uri) if blessings else None
        drifted = validation.drift(current, baseline, schema) if baseline is not None else None
        verdict = {**validation.verdict(found, drifted, block_on),
                   "baseline": blessings[0].uri if baseline is not None else None}

        out = artifact_utils.get_single_uri(output_dict["data_validation"])
        with tf.io.gfile.GFile(os.path.join(out, validation.VERDICT_FILE), "w") as f:
            json.dump(verdict, f, indent=2, sort_keys=True)
        logging.info("DataGate: %s", json.dumps(verdict, sort_keys=True))
        if verdict["blocked"]:
            raise DataValidationBlocked(validation.blocking_message(verdict))
