"""HParamsGen: the Trainer's hyperparameters as typed pipeline parameters.

Each one can be a RuntimeParameter, so a KFP run sets it without recompiling; the Trainer reads
the resulting artifact (TFX's `hyperparameters` input) as a plain dict.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from deepattraction.components.hparams_gen import executor
from deepattraction.trainer.model import ModelConfig
from deepattraction.trainer.train import TrainConfig

_TYPES = {str: str, int: int, float: float}


def _fields() -> dict[str, type]:
    fields = [f for f in dataclasses.fields(ModelConfig)] + [f for f in dataclasses.fields(TrainConfig)
                                                             if f.name != "model"]
    return {f.name: _TYPES[type(f.default)] for f in fields}


HPARAM_TYPES = _fields()


class HParamsGenSpec(ComponentSpec):
    PARAMETERS = {name: ExecutionParameter(type=t, optional=True) for name, t in HPARAM_TYPES.items()}
    INPUTS = {}
    OUTPUTS = {"hyperparameters": ChannelParameter(type=standard_artifacts.HyperParameters)}


class HParamsGen(base_component.BaseComponent):
    SPEC_CLASS = HParamsGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, **hparams: Any):
        unknown = set(hparams) - set(HPARAM_TYPES)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {sorted(HPARAM_TYPES)}")
        # A whole number where a float is declared (`--hparam learning_rate=0` parses as an int)
        # is that float; anything else of the wrong type still fails in the spec.
        hparams = {k: float(v) if HPARAM_TYPES[k] is float and type(v) is int else v for k, v in hparams.items()}
        super().__init__(HParamsGenSpec(hyperparameters=types.Channel(type=standard_artifacts.HyperParameters),
                                        **hparams))
