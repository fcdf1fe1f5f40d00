"""Evaluator executor: scores the exported model through its serving_examples signature (the
same graph TF Serving runs) against baselines from the training split, then blesses or not."""
from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from deepattraction.components.data_gate import validation
from deepattraction.components.evaluator.evaluation import (
    GateConfig,
    Labels,
    baselines,
    bless,
    evaluate,
    evaluate_slices,
    group_gap_reason,
)
from deepattraction.components.evaluator.fairness import add_group_figures, group_figures
from deepattraction.trainer import features
from deepattraction.trainer.features import EXAMPLES_INPUT, OUT_FACE_COUNT, OUT_MALE, OUT_RATIO, SERVING_EXAMPLES

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
BATCH = 64


def gate_properties(gate: GateConfig) -> dict:
    """The gate as the Evaluator's execution properties: one per GateConfig field, so each is a
    pipeline parameter of its own (a KFP run can set any of them without recompiling)."""
    return dataclasses.asdict(gate)


def gate_from_properties(exec_properties: dict) -> GateConfig:
    """The GateConfig the properties give; a field they leave out keeps its default."""
    fields = {f.name: type(f.default) for f in dataclasses.fields(GateConfig)}
    return GateConfig(**{k: fields[k](v) for k, v in exec_properties.items() if k in fields and v is not None})


def split_files(examples, split: str) -> list[str]:
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    if not files:
        raise FileNotFoundError(f"split {split!r} of {examples.uri} has no files")
    return files


def _records(files: list[str], keys: dict):
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH)
    for serialized in ds:
        yield serialized, tf.io.parse_example(serialized, keys)


def read_labels(files: list[str]) -> tuple[Labels, list[str]]:
    raw = features.raw_feature_spec()
    spec = {**features.label_feature_spec(),
            **{k: raw[k] for k in (features.USER_ID_KEY, features.GROUP_KEY, *features.SOURCE_COUNT_KEYS)}}
    cols = {k: [] for k in spec}
    for _, parsed in _records(files, spec):
        for k in spec:
            cols[k].append(parsed[k].numpy())
    cols = {k: np.concatenate(v) if v else np.array([]) for k, v in cols.items()}
    def per_source(key):
        return np.stack([cols[key(g)] for g in features.GENDERS], axis=1).astype(np.int64)

    labels = Labels(cols[features.LIKE_RATIO_KEY].astype(np.float64), cols[features.SWIPE_COUNT_KEY].astype(np.float64),
                    (cols[features.GENDER_KEY] == features.GENDERS[1].encode()).astype(np.int64),
                    per_source(features.likes_from_key), per_source(features.swipes_from_key),
                    np.array([g.decode() for g in cols[features.GROUP_KEY]], dtype=object))
    return labels, [u.decode() for u in cols[features.USER_ID_KEY]]


def predict(model_dir: str, files: list[str]) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(model_dir).signatures[SERVING_EXAMPLES]
    outs: dict[str, list] = {}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH)
    for serialized in ds:
        for k, v in fn(**{EXAMPLES_INPUT: serialized}).items():
            outs.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def write_predictions(path: str, user_ids: list[str], labels: Labels, preds: dict) -> None:
    """One row per photo: labels, the model's outputs, then the slice columns (group and the
    likes and swipes from each swiper gender)."""
    with tf.io.gfile.GFile(path, "w") as f:
        w = csv.writer(f)
        cols = sorted(preds)
        w.writerow(["user_id", "like_ratio", "swipe_count", "male"] + [f"pred_{c}" for c in cols]
                   + [features.GROUP_KEY, *features.SOURCE_COUNT_KEYS])

        def fmt(v):  # vectors (a face box) as space-separated numbers in one cell
            return " ".join(f"{x:.2f}" for x in v) if np.ndim(v) else f"{float(v):.6g}"

        for i, uid in enumerate(user_ids):
            by_source = [int(a[i, j]) for j in range(len(features.GENDERS))
                         for a in (labels.source_likes, labels.source_swipes)]
            w.writerow([uid, f"{labels.like_ratio[i]:.6f}", int(labels.swipe_count[i]), int(labels.male[i])]
                       + [fmt(preds[c][i]) for c in cols] + [labels.group[i], *by_source])


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        gate = gate_from_properties(exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        train_labels, _ = read_labels(split_files(examples, gate.baseline_split))
        eval_files = split_files(examples, gate.eval_split)
        labels, user_ids = read_labels(eval_files)
        preds = predict(model_dir, eval_files)
        base = baselines(train_labels)
        result = evaluate(labels, base, preds.get(OUT_RATIO), preds.get(OUT_MALE))
        last = input_dict.get("baseline_model") or []
        last_preds = {}
        if last:  # the last blessed model, scored on the same photos
            last_dir = path_utils.serving_model_path(last[0].uri, path_utils.is_old_model_artifact(last[0]))
            last_preds = predict(last_dir, eval_files)
            result["baseline_model"] = {"uri": last[0].uri,
                                        **evaluate(labels, base, last_preds.get(OUT_RATIO), last_preds.get(OUT_MALE))}
        result["slices"] = evaluate_slices(labels, base, preds.get(OUT_RATIO), preds.get(OUT_MALE),
                                           preds.get(OUT_FACE_COUNT))
        add_group_figures(result, group_figures(labels, gate, preds.get(OUT_RATIO), preds.get(OUT_MALE),
                                                preds.get(OUT_FACE_COUNT), last_preds.get(OUT_RATIO)))
        blessed, reasons = bless(result, gate)
        if "group_gap" in result:  # None: nothing to compare with (no blessed model yet, or no group judged)
            result["group_gap"]["passed"] = (None if "growth_ci" not in result["group_gap"]
                                             else group_gap_reason(result["group_gap"], gate) is None)
        result.update(blessed=blessed, not_blessed_because=reasons, gate=json.loads(gate.to_json()),
                      baselines=base, train_count=int(len(train_labels.like_ratio)))

        evaluation = artifact_utils.get_single_uri(output_dict["evaluation"])
        with tf.io.gfile.GFile(os.path.join(evaluation, METRICS_FILE), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True, allow_nan=False)
        write_predictions(os.path.join(evaluation, PREDICTIONS_FILE), user_ids, labels, preds)

        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        blessing.set_int_custom_property("blessed", int(blessed))
        blessing.set_string_custom_property("current_model", model.uri)
        blessing.set_int_custom_property("current_model_id", model.id)
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as f:
            f.write("\n".join(reasons))
        stats = input_dict.get("statistics") or []
        if blessed and stats:
            validation.save_baseline(stats_artifact_utils.load_statistics(stats[0], validation.DRIFT_SPLIT).proto(),
                                     blessing.uri)
        logging.info("Evaluator: %s; %s", "BLESSED" if blessed else "NOT BLESSED", json.dumps(result, sort_keys=True))
