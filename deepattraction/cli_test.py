import os
import subprocess
import sys

import pytest

from deepattraction import cli


def test_hparams_parse_numbers_and_strings():
    assert cli._parse_hparams(["epochs=3", "learning_rate=1e-4", "weights=gs://b/w.h5", "task=ratio"]) == {
        "epochs": 3, "learning_rate": 1e-4, "weights": "gs://b/w.h5", "task": "ratio"}
    with pytest.raises(SystemExit):
        cli._parse_hparams(["epochs"])


def test_run_needs_data_tables(tmp_path):
    with pytest.raises(SystemExit, match="--data"):
        cli.main(["run", "--pipeline-root", str(tmp_path)])


def test_predict_with_a_model_path_that_holds_no_model_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=rf"^predict: {tmp_path / 'nope'}: neither a SavedModel nor a model base path"):
        cli.main(["predict", "--model", str(tmp_path / "nope"), str(tmp_path / "a.jpg")])


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_root_another_run_holds_is_a_one_line_error(tmp_path, facenet_weights, command):
    """Whichever command runs the pipeline; the demo writes its data first, then meets the lock."""
    from deepattraction.pipeline import run_lock

    (tmp_path / "users.csv").write_text("user_id\n")
    (tmp_path / "swipes.csv").write_text("swiper_id\n")
    root = tmp_path / "root"
    args = {"run": ["--pipeline-root", str(root), "--users", str(tmp_path / "users.csv"),
                    "--swipes", str(tmp_path / "swipes.csv")],
            "demo": ["--workdir", str(tmp_path), "--num-users", "5", "--weights-dir", os.path.dirname(facenet_weights)]}
    if command == "demo":
        root = tmp_path / "pipeline"
    with run_lock.root_lock(str(root)):
        with pytest.raises(SystemExit, match=rf"^{command}: pipeline root .*{root.name} is in use by another run "
                                             r"\(pid \d+\)"):
            cli.main([command, *args[command]])


NOISE = ("cuda_blas", "cuda_fft", "cuda_dnn", "Unable to register", "oneDNN", "op_level_cost_estimator",
         "FutureWarning", "DeprecationWarning", "warnings.warn")


def test_the_command_is_quiet_by_default_and_verbose_on_request(tmp_path):
    """Loading TensorFlow, TFX and Beam prints no library chatter: a failing command's stderr is
    its own one-line error. --verbose lowers TensorFlow's C++ log threshold for the process and
    its children."""
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"x")
    done = subprocess.run([sys.executable, "-m", "deepattraction", "predict", "--model", str(tmp_path / "nope"),
                           str(photo)], capture_output=True, text=True, env=_env_without_tf_logs())
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("predict: "), done.stderr[-3000:]
    assert not any(n in done.stderr + done.stdout for n in NOISE)
    code = ("import os, sys; from deepattraction import entry; sys.argv = ['x', 'schema', '--verbose']; "
            "entry.main(); print('LEVEL', os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    verbose = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env_without_tf_logs())
    assert verbose.stdout.strip().splitlines()[-1] == "LEVEL 0" and "feature" in verbose.stdout


def _env_without_tf_logs() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
