import os
import subprocess
import sys

import pytest

from deepattraction import cli, logs
from deepattraction.serving.sample_model import export_model
from deepattraction.serving.warmup import demo_photos


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
    """A real prediction (decode, MTCNN's crops, the backbone) through `python -m deepattraction`:
    its output and nothing of the libraries' chatter, though grappler logs a PredictCost() error
    for every CropAndResize past TensorFlow's log threshold. --verbose lowers that threshold for
    the process and its children."""
    base = export_model(str(tmp_path / "base"), 1)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(demo_photos(1, size=96, seed=3)[0])
    done = subprocess.run([sys.executable, "-m", "deepattraction", "predict", "--model", base, str(photo)],
                          capture_output=True, text=True, env=_env_without_tf_logs())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"{photo}: like_ratio ") and len(done.stdout.splitlines()) == 1
    assert not any(n in done.stderr + done.stdout for n in NOISE), done.stderr[-3000:]
    assert logs.NOISE_LINES.search("W0000 00:00:1.2 1 op_level_cost_estimator.cc:699] Error in PredictCost() for")
    code = ("import os, sys; from deepattraction import entry; sys.argv = ['x', 'schema', '--verbose']; "
            "entry.main(); print('LEVEL', os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    verbose = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env_without_tf_logs())
    assert verbose.stdout.strip().splitlines()[-1] == "LEVEL 0" and "feature" in verbose.stdout


def test_the_stderr_filter_drops_only_noise_and_keeps_the_order(tmp_path):
    code = ("import os, re, sys; from deepattraction import logs; logs.filter_stderr(re.compile('noise'));"
            "print('one', file=sys.stderr); os.write(2, b'noise from C++\\ntwo\\n'); print('three', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.splitlines() == ["one", "two", "three"]


def _env_without_tf_logs() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
