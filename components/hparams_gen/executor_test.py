import json
import os

import pytest
from tfx.types import standard_artifacts

from deepattraction.components.hparams_gen import executor


def _run(tmp_path, props):
    hp = standard_artifacts.HyperParameters()
    hp.uri = str(tmp_path)
    executor.Executor().Do({}, {"hyperparameters": [hp]}, props)
    with open(os.path.join(tmp_path, executor.HPARAMS_FILE)) as f:
        return json.load(f)


def test_writes_the_set_hyperparameters(tmp_path):
    assert _run(tmp_path, {"epochs": 3, "task": "ratio", "weights": None}) == {"epochs": 3, "task": "ratio"}


def test_rejects_bad_values_before_training(tmp_path):
    with pytest.raises(ValueError, match="head_layers"):
        _run(tmp_path, {"head_layers": 7})
