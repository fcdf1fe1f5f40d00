"""A real run's artifacts for the report tests: SwipeExampleGen's examples and report on the tiny
dataset, an evaluation (of its train split, the largest) made by the evaluator's own metric code from predictions
fabricated for the
test split's photos (test input, not a model), and a Trainer-style training history."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest
from tfx.types import standard_artifacts

from deepattraction import recipes
from deepattraction.components.evaluator.evaluation import GateConfig, baselines, bless, evaluate, evaluate_slices
from deepattraction.components.evaluator.executor import METRICS_FILE, PREDICTIONS_FILE, read_labels, split_files
from deepattraction.components.evaluator.fairness import add_group_figures, group_figures
from deepattraction.components.hparams_gen.executor import HPARAMS_FILE
from deepattraction.components.report import component, executor
from deepattraction.components.report.report import ReportConfig
from deepattraction.trainer.train import HISTORY_FILE

GALLERY = 3
RUN_CHANGES = {"head_epochs": 3}  # what the report's run set apart from its recipe (demo)
HISTORY = {"phases": [{"name": "head", "first_epoch": 0, "epochs": 3, "learning_rate": 1e-3},
                      {"name": "fine_tune", "first_epoch": 3, "epochs": 2, "learning_rate": 1e-5}],
           "history": {"loss": [0.9, 0.7, 0.6, 0.5, 0.45], "val_loss": [1.0, 0.8, 0.7, 0.65, 0.66],
                       "like_ratio_wmse": [0.05, 0.04, 0.03, 0.028, 0.027]}}


def write_evaluation(uri: str, examples) -> tuple[dict, list[dict]]:
    # The tiny set's test split has 2 photos: too few for galleries; its groups are small.
    gate = GateConfig(eval_split="train", min_group_photos=10, bootstrap_resamples=200)
    labels, user_ids = read_labels(split_files(examples, gate.eval_split))
    train, _ = read_labels(split_files(examples, gate.baseline_split))
    n = len(user_ids)
    rng = np.random.default_rng(0)
    ratio = np.clip(labels.like_ratio + rng.normal(0, 0.1, n), 0.01, 0.99)
    male = np.clip(np.where(labels.male == 1, 0.8, 0.3) + rng.normal(0, 0.15, n), 0.01, 0.99)
    faces = np.arange(n) % 3  # 0, 1 and 2 faces
    last = np.clip(labels.like_ratio + rng.normal(0, 0.1, n), 0.01, 0.99)  # the last blessed model's
    base = baselines(train)
    metrics = {**evaluate(labels, base, ratio, male), "slices": evaluate_slices(labels, base, ratio, male, faces),
               "baseline_model": {"uri": "last", **evaluate(labels, base, last, male)},
               "gate": json.loads(gate.to_json()), "baselines": base}
    add_group_figures(metrics, group_figures(labels, gate, ratio, male, faces, last))
    blessed, reasons = bless(metrics, gate)
    metrics["group_gap"]["passed"] = not any("group gap" in r for r in reasons)
    metrics.update(blessed=blessed, not_blessed_because=reasons)
    rows = [{"user_id": u, "like_ratio": f"{labels.like_ratio[i]:.6f}", "swipe_count": int(labels.swipe_count[i]),
             "male": int(labels.male[i]),
             "pred_face_box": "8.00 10.00 40.00 50.00" if faces[i] else "0.00 0.00 0.00 0.00",
             "pred_face_confidence": "0.99", "pred_face_count": int(faces[i]), "pred_like_ratio": f"{ratio[i]:.6g}",
             "pred_male_probability": f"{male[i]:.6g}"} for i, u in enumerate(user_ids)]
    os.makedirs(uri, exist_ok=True)
    with open(os.path.join(uri, METRICS_FILE), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(uri, PREDICTIONS_FILE), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return metrics, rows


def raw_keys(v) -> set[str]:
    """The metrics' keys at every depth that are spelt as code (with an underscore): the report and
    the card show labels, and these stay in metrics.json."""
    if isinstance(v, dict):
        return {k for k in v if "_" in str(k)} | set().union(*(raw_keys(x) for x in v.values()))
    if isinstance(v, list):
        return set().union(*(raw_keys(x) for x in v))
    return set()


def run_report(out_dir: str, examples, data_report, evaluation, history: dict | None):
    model_run = standard_artifacts.ModelRun()
    model_run.uri = os.path.join(out_dir, "model_run")
    os.makedirs(model_run.uri, exist_ok=True)
    if history is not None:
        with open(os.path.join(model_run.uri, HISTORY_FILE), "w") as f:
            json.dump(history, f)
    # The HParamsGen artifact of a run of the demo recipe with one value changed.
    hparams = standard_artifacts.HyperParameters()
    hparams.uri = os.path.join(out_dir, "hyperparameters")
    os.makedirs(hparams.uri, exist_ok=True)
    with open(os.path.join(hparams.uri, HPARAMS_FILE), "w") as f:
        json.dump({**recipes.get("demo").trainer_hparams("/w/facenet_inception_resnet_v1.h5"), **RUN_CHANGES}, f)
    report = component.HtmlReport()
    report.uri = os.path.join(out_dir, "report")
    os.makedirs(report.uri, exist_ok=True)
    executor.Executor().Do(
        {"examples": [examples], "data_report": [data_report], "evaluation": [evaluation], "model_run": [model_run],
         "hyperparameters": [hparams]},
        {"report": [report]},
        {executor.REPORT_CONFIG: json.dumps(dataclasses.asdict(ReportConfig(gallery_size=GALLERY))),
         executor.RECIPE: "demo"})
    return report.uri


@pytest.fixture(scope="session")
def report_run(tmp_path_factory, tiny_examples):
    """(report folder, metrics, prediction rows) of one RunReport execution on real artifacts."""
    examples, data_report = tiny_examples
    out = tmp_path_factory.mktemp("report_run")
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(out / "evaluation")
    metrics, rows = write_evaluation(evaluation.uri, examples)
    return run_report(str(out), examples, data_report, evaluation, HISTORY), metrics, rows
