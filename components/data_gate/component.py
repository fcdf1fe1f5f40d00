"""DataGate: stands between data validation and the Trainer. The Trainer runs after it, so a
blocking verdict (schema anomalies by default; drift too if asked) stops the run before training."""
from __future__ import annotations

from typing import Optional, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.types.system_artifacts import Statistics

from deepattraction.components.data_gate import executor, policy


class DataValidation(artifact.Artifact):
    """data_validation.json: the schema anomalies per split, the drift measurements, the verdict."""

    TYPE_NAME = "deepattraction.DataValidation"  # KFP v2 wants <namespace>.<Name>
    TYPE_ANNOTATION = Statistics


class DataGateSpec(ComponentSpec):
    PARAMETERS = {executor.POLICY: ExecutionParameter(type=str)}
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "baseline_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {"data_validation": ChannelParameter(type=DataValidation)}


class DataGate(base_component.BaseComponent):
    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel, anomalies: types.BaseChannel,
                 baseline_blessing: Optional[types.BaseChannel] = None,
                 block_on: Union[str, data_types.RuntimeParameter] = policy.BLOCK_SCHEMA):
        if isinstance(block_on, str):
            policy.check_policy(block_on)
        super().__init__(DataGateSpec(
            statistics=statistics, schema=schema, anomalies=anomalies, baseline_blessing=baseline_blessing,
            block_on=block_on, data_validation=types.Channel(type=DataValidation)))
