"""create_pipeline(): the one DAG that every orchestrator runs."""
from __future__ import annotations

from tfx import v1 as tfx

from deepattraction.components.data_gate.component import DataGate
from deepattraction.components.evaluator.component import Evaluator
from deepattraction.components.hparams_gen.component import HParamsGen
from deepattraction.components.pusher.component import Pusher
from deepattraction.components.report.component import RunReport
from deepattraction.components.swipe_example_gen.component import SwipeExampleGen
from deepattraction.pipeline.configs import PipelineConfig

PREPROCESSING_FN = "deepattraction.trainer.preprocessing.preprocessing_fn"
RUN_FN = "deepattraction.trainer.task.run_fn"


def create_components(cfg: PipelineConfig, users_uri=None, swipes_uri=None, fingerprint: str | None = None,
                      hparams: dict | None = None, code: str | dict[str, str] = "", block_on=None,
                      gate: dict | None = None) -> list:
    """The components in order. Runners may pass RuntimeParameters for URIs, hyperparameters, the
    data validation policy (`block_on`) and the gate's values (`gate`: GateConfig field -> value).

    `fingerprint` identifies the input data and `code` the code each step runs (one string for
    all, or configs.step_code_versions' step id -> version): both go into the steps whose cache
    keys would otherwise miss them, `code` always as `code_version` (a parameter of ours, a
    custom_config entry of TFX's steps). On Kubeflow the image digest plays the part of `code`."""

    def version(step: str) -> dict:
        v = code.get(step, "") if isinstance(code, dict) else code
        return {"code_version": v} if v else {}

    example_gen = SwipeExampleGen(users_uri=users_uri or cfg.users_uri, swipes_uri=swipes_uri or cfg.swipes_uri,
                                  input_fingerprint=fingerprint, photo_buckets=cfg.photo_buckets,
                                  **version("SwipeExampleGen"))
    schema_gen = tfx.components.ImportSchemaGen(schema_file=cfg.schema_file)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  schema=schema_gen.outputs["schema"])
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    hparams_gen = HParamsGen(**(hparams if hparams is not None else cfg.trainer_hparams))
    # Transform materialises the face crops on Beam's workers and the Trainer streams them. The
    # graph has no analyzers, so the analysis never runs it: MTCNN runs once per photo.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config={**cfg.transform_config, **version("Transform")},
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=list(cfg.transform_splits)),
        materialize=True, disable_statistics=True)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN, examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        hyperparameters=hparams_gen.outputs["hyperparameters"], custom_config=version("Trainer") or None)
    # Continuous training: the candidate must also not regress against the last blessed model, and
    # the data's drift is measured against the statistics that model's blessing kept.
    last_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)).with_id("LatestBlessedModel")
    data_gate = DataGate(statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
                         anomalies=example_validator.outputs["anomalies"],
                         baseline_blessing=last_blessed.outputs["model_blessing"],
                         block_on=block_on if block_on is not None else cfg.block_on)
    trainer.add_upstream_node(data_gate)
    evaluator = Evaluator(examples=example_gen.outputs["examples"], model=trainer.outputs["model"], gate=cfg.gate,
                          gate_parameters=gate,
                          baseline_model=last_blessed.outputs["model"], statistics=statistics_gen.outputs["statistics"],
                          **version("Evaluator"))
    report = RunReport(examples=example_gen.outputs["examples"], data_report=example_gen.outputs["report"],
                       evaluation=evaluator.outputs["evaluation"], model_run=trainer.outputs["model_run"],
                       data_validation=data_gate.outputs["data_validation"],
                       hyperparameters=hparams_gen.outputs["hyperparameters"], recipe=cfg.recipe,
                       image_size=cfg.image_size, **version("RunReport"))
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=cfg.push_dir)))
    return [example_gen, schema_gen, statistics_gen, example_validator, hparams_gen, transform, last_blessed,
            data_gate, trainer, evaluator, report, pusher]


def create_pipeline(cfg: PipelineConfig, components: list | None = None,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.name, pipeline_root=cfg.pipeline_root,
        components=components if components is not None else create_components(cfg),
        enable_cache=cfg.enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(cfg.beam_pipeline_args))
