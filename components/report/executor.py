"""RunReport executor: reads the run's artifacts into plain values and writes report.html and
model_card.md (the HTML is built by report.py)."""
from __future__ import annotations

import csv
import io
import json
import os

import tensorflow as tf
from absl import logging
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from deepattraction import recipes, weights
from deepattraction.components.data_gate.validation import VERDICT_FILE
from deepattraction.components.evaluator.executor import METRICS_FILE, PREDICTIONS_FILE, split_files
from deepattraction.components.hparams_gen.executor import HPARAMS_FILE
from deepattraction.components.report import model_card
from deepattraction.components.report.report import Photo, ReportConfig, RunInputs, build_html, gallery_ids
from deepattraction.components.swipe_example_gen.executor import GENDER_TABLE_FILE, SUMMARY_FILE
from deepattraction.trainer import features
from deepattraction.trainer.features import OUT_FACE_BOX, OUT_FACE_COUNT, OUT_MALE, OUT_RATIO
from deepattraction.trainer.train import HISTORY_FILE

REPORT_CONFIG = "report_config"
RECIPE, IMAGE_SIZE = "recipe", "image_size"
REPORT_FILE = "report.html"


def _read(path: str) -> str:
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def read_predictions(path: str) -> list[Photo]:
    """predictions.csv as Photos; a model without a task has no column for it."""
    photos = []
    for line, r in enumerate(csv.DictReader(io.StringIO(_read(path))), start=2):
        try:
            box = r.get(f"pred_{OUT_FACE_BOX}")
            photos.append(Photo(
                user_id=r["user_id"], like_ratio=float(r["like_ratio"]), swipe_count=float(r["swipe_count"]),
                male=int(r["male"]),
                pred_ratio=float(r[f"pred_{OUT_RATIO}"]) if r.get(f"pred_{OUT_RATIO}") else None,
                pred_male=float(r[f"pred_{OUT_MALE}"]) if r.get(f"pred_{OUT_MALE}") else None,
                face_box=tuple(float(v) for v in box.split()) if box else None,
                face_count=int(float(r[f"pred_{OUT_FACE_COUNT}"])) if r.get(f"pred_{OUT_FACE_COUNT}") else None))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} line {line}: {e!r}") from None
        if photos[-1].face_box is not None and len(photos[-1].face_box) != 4:
            raise ValueError(f"{path} line {line}: face box {box!r} is not x1 y1 x2 y2")
    return photos


def read_images(files: list[str], user_ids: set[str]) -> dict[str, bytes]:
    """The encoded photos of the given users, from the split's gzipped tf.Examples."""
    spec = {k: features.raw_feature_spec()[k] for k in (features.USER_ID_KEY, features.IMAGE_KEY)}
    out = {}
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(256):
        parsed = tf.io.parse_example(serialized, spec)
        for uid, image in zip(parsed[features.USER_ID_KEY].numpy(), parsed[features.IMAGE_KEY].numpy()):
            if uid.decode() in user_ids:
                out[uid.decode()] = image
    return out


def read_history(model_run_uri: str | None) -> dict | None:
    path = os.path.join(model_run_uri, HISTORY_FILE) if model_run_uri else None
    if not path or not tf.io.gfile.exists(path):
        return None
    try:
        return json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {e}") from None


def recipe_line(exec_properties: dict, hyperparameters_uri: str | None, metrics: dict) -> str | None:
    """The run's recipe, what the run's own hyperparameters and gate set apart from it, and the
    licence of its backbone weights (None when the run names no recipe)."""
    name = exec_properties.get(RECIPE)
    if not name:
        return None
    hparams = {}
    if hyperparameters_uri:
        hparams = json.loads(_read(os.path.join(hyperparameters_uri, HPARAMS_FILE)))
    try:
        recipe = recipes.get(name)
    except ValueError:
        return f"recipe {name} (unknown to this version of the code)"
    diffs = recipes.differences(recipe, hparams or recipe.trainer_hparams(), metrics.get("gate"),
                                exec_properties.get(IMAGE_SIZE))
    line = recipes.describe(name, diffs)
    terms = weights.licence(hparams.get("weights") or recipe.weights)
    return f"{line}. Backbone weights {terms}" if terms else line


def report_config(exec_properties: dict) -> ReportConfig:
    """The ReportConfig the component serialised into its execution properties."""
    return ReportConfig(**json.loads(exec_properties.get(REPORT_CONFIG) or "{}"))


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        cfg = report_config(exec_properties)
        evaluation = artifact_utils.get_single_uri(input_dict["evaluation"])
        data = artifact_utils.get_single_uri(input_dict["data_report"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        runs = input_dict.get("model_run") or []
        checks = input_dict.get("data_validation") or []
        metrics = json.loads(_read(os.path.join(evaluation, METRICS_FILE)))
        photos = read_predictions(os.path.join(evaluation, PREDICTIONS_FILE))
        summary = json.loads(_read(os.path.join(data, SUMMARY_FILE)))
        gender_table = _read(os.path.join(data, GENDER_TABLE_FILE))
        split = (metrics.get("gate") or {}).get("eval_split", "test")  # the split the Evaluator scored
        images = read_images(split_files(examples, split), gallery_ids(photos, cfg))

        out = artifact_utils.get_single_uri(output_dict["report"])
        hp = input_dict.get("hyperparameters") or []
        recipe = recipe_line(exec_properties, hp[0].uri if hp else None, metrics)
        card = model_card.write(os.path.join(out, model_card.MODEL_CARD_FILE), metrics, summary, gender_table,
                                recipe)
        page = build_html(RunInputs(
            metrics=metrics, photos=photos, images=images, data_summary=summary, gender_table=gender_table,
            history=read_history(runs[0].uri if runs else None),
            data_validation=json.loads(_read(os.path.join(checks[0].uri, VERDICT_FILE))) if checks else None,
            model_card_html=model_card.markdown_html(_read(card)), recipe_line=recipe), cfg)
        with tf.io.gfile.GFile(os.path.join(out, REPORT_FILE), "w") as f:
            f.write(page)
        logging.info("RunReport: wrote %s (%d bytes)", os.path.join(out, REPORT_FILE), len(page))
