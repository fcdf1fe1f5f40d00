"""Evaluator: weighted MSE and gender accuracy against training-split baselines; a blessing."""
from __future__ import annotations

import dataclasses
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from deepattraction.components.evaluator import executor
from deepattraction.components.evaluator.evaluation import GateConfig

# One parameter per GateConfig field: the blessing rule is settable per KFP run (runtime parameters).
GATE_PARAMETERS = {f.name: type(f.default) for f in dataclasses.fields(GateConfig)}


class EvaluatorSpec(ComponentSpec):
    PARAMETERS = {**{name: ExecutionParameter(type=t) for name, t in GATE_PARAMETERS.items()},
                  "code_version": ExecutionParameter(type=str, optional=True)}
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        # Kept in a positive blessing, so the next run measures its data's drift against it.
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class Evaluator(base_component.BaseComponent):
    """Writes metrics.json and predictions.csv; blesses only a model that beats its baselines."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, gate: Optional[GateConfig] = None,
                 code_version: Optional[str] = None, baseline_model: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None, gate_parameters: Optional[dict] = None):
        """`gate_parameters`: GateConfig field -> RuntimeParameter (or value) over `gate`'s."""
        values = {**executor.gate_properties(gate or GateConfig()), **(gate_parameters or {})}
        super().__init__(EvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, statistics=statistics,
            code_version=code_version, **values,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
