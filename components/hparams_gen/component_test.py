import pytest

from deepattraction.components.hparams_gen.component import HPARAM_TYPES, HParamsGen


def test_typed_parameters_and_unknown_names():
    assert HPARAM_TYPES["epochs"] is int and HPARAM_TYPES["learning_rate"] is float and HPARAM_TYPES["weights"] is str
    c = HParamsGen(epochs=2, learning_rate=0.01)
    assert c.exec_properties["epochs"] == 2 and "hyperparameters" in c.outputs
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        HParamsGen(epoch=2)
