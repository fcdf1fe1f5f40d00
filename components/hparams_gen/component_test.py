import dataclasses

import pytest

from deepattraction.components.hparams_gen.component import HPARAM_TYPES, HParamsGen
from deepattraction.trainer.model import ModelConfig
from deepattraction.trainer.train import TrainConfig


def test_every_training_field_is_a_typed_parameter_the_trainer_reads_back():
    fields = [*dataclasses.fields(ModelConfig), *(f for f in dataclasses.fields(TrainConfig) if f.name != "model")]
    assert HPARAM_TYPES == {f.name: type(f.default) for f in fields}
    c = HParamsGen(epochs=2, learning_rate=0.01, task="ratio")
    cfg = TrainConfig.from_dict({k: v for k, v in c.exec_properties.items() if v is not None})
    assert (cfg.epochs, cfg.learning_rate, cfg.model.task) == (2, 0.01, "ratio")
    assert cfg.batch_size == TrainConfig().batch_size  # unset: the trainer's default
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        HParamsGen(epoch=2)


def test_a_whole_number_for_a_float_hyperparameter_is_that_float_and_other_types_still_fail():
    """`--hparam learning_rate=0` parses as the int 0; it means 0.0, as the demo's tests use it."""
    c = HParamsGen(learning_rate=0, dropout=1)
    assert c.exec_properties["learning_rate"] == 0.0 and type(c.exec_properties["learning_rate"]) is float
    assert type(c.exec_properties["dropout"]) is float
    with pytest.raises(TypeError, match="epochs"):
        HParamsGen(epochs=2.5)
