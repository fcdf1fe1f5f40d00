"""`python -m bench.experiments` end to end: real pipeline runs per variant, the study's tables."""
import json
import os

import pytest
import tensorflow as tf

from bench.experiments import main
from deepattraction.demo_data import DemoDataConfig, make_demo_data
from deepattraction.pipeline.results import latest_output
from deepattraction.trainer.train import HISTORY_FILE

pytestmark = pytest.mark.e2e


def test_experiments_train_a_starred_variant_and_write_both_tables(tmp_path, inception_weights, capsys):
    """One variant (Inception*: the demo's e2e runs already cover FaceNet pipelines), to keep the
    test tier's time; the table code for several variants is the same loop."""
    data = str(tmp_path / "data")
    make_demo_data(DemoDataConfig(out_dir=data, num_users=100, seed=5, bad_rows=False))
    work = str(tmp_path / "exp")
    main(["--data", data, "--workdir", work, "--weights-dir", os.path.dirname(inception_weights),
          "--variant", "Inception*", "--image-size", "inception_v3=75",
          "--hparam", "head_epochs=1", "--hparam", "epochs=1", "--hparam", "trainable_blocks=1"])
    out = capsys.readouterr().out
    saved = json.load(open(os.path.join(work, "experiments.json")))
    ratio, gender = saved["tables"]["like_ratio"], saved["tables"]["gender"]
    assert [r["model"] for r in ratio] == ["Baseline (best constant)", "Inception*"]
    assert [r["model"] for r in gender] == ["Baseline (majority)", "Inception*"]
    assert "## Like ratio" in out and "| Inception* |" in out and "experiments: wrote" in out
    for name, backbone, weights in (("Inception*", "inception_v3", inception_weights),):
        run = saved["runs"][name]["both"]
        evaluation = json.load(open(os.path.join(latest_output(run["pipeline_root"], "Evaluator", "evaluation"),
                                                 "metrics.json")))
        row = next(r for r in ratio if r["model"] == name)
        # Starred variants are judged on the starred slice, never on all photos.
        assert row["weighted_mse"] == evaluation["slices"]["starred"]["ratio_weighted_mse"]
        assert row["photos"] == evaluation["slices"]["starred"]["count"] <= evaluation["count"]
        assert 0 <= next(r for r in gender if r["model"] == name)["accuracy"] <= 1
        hp = json.load(open(os.path.join(latest_output(run["pipeline_root"], "HParamsGen", "hyperparameters"),
                                         "hyperparameters.json")))
        assert hp["backbone"] == backbone and hp["starred_only"] == 1
        assert hp["weights"] == weights and hp["trainable_blocks"] == 1
        # The fine-tuning schedule ran in the pipeline, and TensorBoard logs live in the pipeline root.
        model_run = latest_output(run["pipeline_root"], "Trainer", "model_run")
        history = json.load(open(os.path.join(model_run, HISTORY_FILE)))
        assert [p["name"] for p in history["phases"]] == ["head", "fine_tune"]
        head, fine_tune = history["phases"]
        assert head["trainable_backbone_layers"] == 0 < fine_tune["trainable_backbone_layers"]
        assert tf.io.gfile.glob(os.path.join(model_run, "*", "events.out.tfevents.*"))
        assert os.path.getsize(run["report"]) > 10_000
