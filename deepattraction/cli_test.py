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


def test_run_on_a_root_another_run_holds_is_a_one_line_error(tmp_path):
    from deepattraction.pipeline import local_runner

    (tmp_path / "users.csv").write_text("user_id\n")
    (tmp_path / "swipes.csv").write_text("swiper_id\n")
    root = tmp_path / "root"
    with local_runner.root_lock(str(root)):
        with pytest.raises(SystemExit, match=r"^run: pipeline root .*root is in use by another run \(pid \d+\)"):
            cli.main(["run", "--pipeline-root", str(root), "--users", str(tmp_path / "users.csv"),
                      "--swipes", str(tmp_path / "swipes.csv")])
