"""Reads a finished run's outputs from the pipeline root: metrics, data report, pushed versions."""
from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from deepattraction.components.evaluator.executor import METRICS_FILE, PREDICTIONS_FILE
from deepattraction.components.report import model_card
from deepattraction.components.report.executor import REPORT_FILE
from deepattraction.components.swipe_example_gen.executor import GENDER_TABLE_FILE, REJECTS_FILE, SUMMARY_FILE
from deepattraction.pipeline.configs import PipelineConfig
from deepattraction.serving import model_dir

MLMD_FILE = "metadata.sqlite"  # local_runner.metadata_path's default: the local runs' MLMD store


def published(root: str, base: str) -> set[int] | None:
    """Execution ids of the outputs under `base` that MLMD records as published (LIVE), from the
    root's local MLMD store; None where the root has none (KFP, gs://). A run killed mid-step leaves
    a folder that no step published, and a later cached run reuses an earlier one."""
    path = os.path.join(root, MLMD_FILE)
    if "://" in root or not os.path.exists(path):
        return None
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    base = os.path.abspath(base)
    uris = [os.path.abspath(a.uri.rstrip("/")) for a in metadata_store.MetadataStore(cfg).get_artifacts()
            if a.state == metadata_store_pb2.Artifact.LIVE]
    return {int(os.path.basename(u)) for u in uris if os.path.dirname(u) == base and os.path.basename(u).isdigit()}


def latest_output(root: str, component: str, output: str) -> str:
    """<root>/<component>/<output>/<execution id>/ with the highest id among published outputs:
    the latest execution that finished."""
    base = os.path.join(root, component, output)
    ids = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(base)
           if n.rstrip("/").isdigit()] if tf.io.gfile.isdir(base) else []
    live = published(root, base)
    if live is not None:
        ids = [i for i in ids if i in live]
    if not ids:
        raise FileNotFoundError(f"no published outputs under {base}")
    return os.path.join(base, str(max(ids)))


def _read(path: str) -> str:
    with tf.io.gfile.GFile(path) as f:
        return f.read()


@dataclasses.dataclass
class RunResults:
    metrics: dict
    data_summary: dict
    gender_table: str
    rejects_path: str
    pushed_versions: list[int]
    push_dir: str
    report_path: str  # the run's self-contained HTML report
    predictions_path: str  # the Evaluator's predictions.csv: the test split, one row per photo

    def summary_line(self) -> str:
        state = "blessed" if self.metrics.get("blessed") else "NOT blessed"
        pushed = "nothing pushed"
        if self.pushed_versions and self.metrics.get("blessed"):
            pushed = f"pushed version {self.pushed_versions[-1]} to {self.push_dir}"
        return f"model {state}, {pushed}"

    def report_lines(self) -> str:
        s = self.data_summary
        return "\n".join([
            f"data: {s['users_in']} users in, {sum(s['users_in_splits'].values())} in splits {s['users_in_splits']}, "
            f"{s['users_rejected']} rejected, {s.get('users_swipe_only', 0)} swipe only; {s['swipes_in']} swipes in, "
            f"{s.get('swipes_counted', '?')} counted, {s['swipes_before_update']} before a photo update "
            f"(not counted), {s['swipes_rejected']} rejected; rejects: {self.rejects_path}",
            "mean like ratio by source x target gender:",
            self.gender_table.rstrip(),
        ])

    def write_model_card(self, pipeline_root: str) -> str:
        """The run's model card, as its RunReport wrote it (recipe included), copied to the root."""
        path = os.path.join(pipeline_root, model_card.MODEL_CARD_FILE)
        tf.io.gfile.copy(os.path.join(os.path.dirname(self.report_path), model_card.MODEL_CARD_FILE), path,
                         overwrite=True)
        return path

    def demo_line(self) -> str:
        """The demo's last line; it says first when the model was not blessed, so no one takes a
        failed demo for a working one."""
        m = self.metrics
        state = "" if m.get("blessed") else f"model NOT blessed ({'; '.join(m.get('not_blessed_because', []))}): "
        return (f"demo: {state}like-ratio weighted MSE {m['ratio_weighted_mse']:.4f} vs constant "
                f"{m['constant_weighted_mse']:.4f} "
                f"(ratio {m['mse_ratio']:.3f}), gender accuracy {m['gender_accuracy']:.3f} vs majority "
                f"{m['majority_accuracy']:.3f}")


def latest(cfg: PipelineConfig) -> RunResults:
    report = latest_output(cfg.pipeline_root, "SwipeExampleGen", "report")
    evaluation = latest_output(cfg.pipeline_root, "Evaluator", "evaluation")
    return RunResults(
        metrics=json.loads(_read(os.path.join(evaluation, METRICS_FILE))),
        data_summary=json.loads(_read(os.path.join(report, SUMMARY_FILE))),
        gender_table=_read(os.path.join(report, GENDER_TABLE_FILE)),
        rejects_path=os.path.join(report, REJECTS_FILE),
        pushed_versions=model_dir.versions(cfg.push_dir), push_dir=cfg.push_dir,
        report_path=os.path.join(latest_output(cfg.pipeline_root, "RunReport", "report"), REPORT_FILE),
        predictions_path=os.path.join(evaluation, PREDICTIONS_FILE))
