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
