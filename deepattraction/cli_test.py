import os

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
