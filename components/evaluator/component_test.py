"""The Evaluator's parameters: one per GateConfig field, so a KFP run can set each of them."""
import dataclasses

from tfx.orchestration import data_types
from tfx.types import channel_utils, standard_artifacts

from deepattraction.components.evaluator import executor
from deepattraction.components.evaluator.component import GATE_PARAMETERS, Evaluator
from deepattraction.components.evaluator.evaluation import GateConfig


def _evaluator(**kw) -> Evaluator:
    return Evaluator(examples=channel_utils.as_channel([standard_artifacts.Examples()]),
                     model=channel_utils.as_channel([standard_artifacts.Model()]), **kw)


def test_every_gate_field_is_a_parameter_of_its_own():
    assert set(GATE_PARAMETERS) == {f.name for f in dataclasses.fields(GateConfig)}
    gate = GateConfig(max_mse_ratio=0.7, min_accuracy_gain=0.05)
    props = _evaluator(gate=gate).exec_properties
    assert {k: props[k] for k in GATE_PARAMETERS} == dataclasses.asdict(gate)
    assert executor.gate_from_properties(props) == gate


def test_a_runtime_parameter_takes_a_gate_fields_place():
    p = data_types.RuntimeParameter(name="max_mse_ratio", ptype=float, default=0.9)
    props = _evaluator(gate=GateConfig(max_mse_ratio=0.5), gate_parameters={"max_mse_ratio": p}).exec_properties
    assert props["max_mse_ratio"] is p and props["min_accuracy_gain"] == GateConfig().min_accuracy_gain


def test_gate_from_properties_keeps_defaults_for_absent_fields_and_casts_values():
    gate = executor.gate_from_properties({"max_mse_ratio": 1, "eval_split": "eval", "code_version": "x"})
    assert gate == GateConfig(max_mse_ratio=1.0, eval_split="eval") and isinstance(gate.max_mse_ratio, float)
