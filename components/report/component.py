"""RunReport: one self-contained HTML page per run (metrics, slices, plots, galleries, model card)."""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from deepattraction.components.data_gate.component import DataValidation
from deepattraction.components.report import executor
from deepattraction.components.report.report import ReportConfig
from deepattraction.components.swipe_example_gen.component import SwipeReport


class HtmlReport(artifact.Artifact):
    """report.html (self-contained) and model_card.md of one run."""

    TYPE_NAME = "deepattraction.HtmlReport"  # KFP v2 wants <namespace>.<Name>


class RunReportSpec(ComponentSpec):
    PARAMETERS = {executor.REPORT_CONFIG: ExecutionParameter(type=str),
                  "code_version": ExecutionParameter(type=str, optional=True),
                  # the recipe the run was configured from, and its crop size: the report names
                  # the recipe and every value the run's hyperparameters and gate set apart from it
                  executor.RECIPE: ExecutionParameter(type=str, optional=True),
                  executor.IMAGE_SIZE: ExecutionParameter(type=int, optional=True)}
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "data_report": ChannelParameter(type=SwipeReport),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        "data_validation": ChannelParameter(type=DataValidation, optional=True),
        "hyperparameters": ChannelParameter(type=standard_artifacts.HyperParameters, optional=True),
    }
    OUTPUTS = {"report": ChannelParameter(type=HtmlReport)}


class RunReport(base_component.BaseComponent):
    """Reads the Evaluator's metrics and predictions, the data report, the Trainer's history and
    the evaluated split's photos; writes report.html and model_card.md."""

    SPEC_CLASS = RunReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, data_report: types.BaseChannel, evaluation: types.BaseChannel,
                 model_run: Optional[types.BaseChannel] = None, config: Optional[ReportConfig] = None,
                 code_version: Optional[str] = None, data_validation: Optional[types.BaseChannel] = None,
                 hyperparameters: Optional[types.BaseChannel] = None, recipe: Optional[str] = None,
                 image_size: Optional[int] = None):
        super().__init__(RunReportSpec(
            examples=examples, data_report=data_report, evaluation=evaluation, model_run=model_run,
            data_validation=data_validation, hyperparameters=hyperparameters, recipe=recipe or None,
            image_size=image_size,
            report_config=json.dumps(dataclasses.asdict(config or ReportConfig()), sort_keys=True),
            code_version=code_version, report=types.Channel(type=HtmlReport)))
