"""Writes the Trainer's hyperparameters as a HyperParameters artifact (one JSON file)."""
from __future__ import annotations

import json
import os

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from deepattraction.trainer.train import TrainConfig

HPARAMS_FILE = "hyperparameters.json"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        hp = {k: v for k, v in exec_properties.items() if v is not None and not k.startswith("_")}
        TrainConfig.from_dict(hp)  # fail here, naming the bad value, not hours later in training
        uri = artifact_utils.get_single_uri(output_dict["hyperparameters"])
        with tf.io.gfile.GFile(os.path.join(uri, HPARAMS_FILE), "w") as f:
            json.dump(hp, f, indent=2, sort_keys=True)
