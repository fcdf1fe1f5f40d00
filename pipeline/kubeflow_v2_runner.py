"""Compiles the pipeline into a Kubeflow Pipelines v2 spec (KubeflowV2DagRunner).

Data URIs and the tunable hyperparameters are runtime parameters of the compiled pipeline, so
one spec serves every run; backbone and image size shape the Transform graph and are compiled in.
"""
from __future__ import annotations

import dataclasses
import json
import os

from tfx import v1 as tfx
from tfx.orchestration import data_types

from deepattraction.components.hparams_gen.component import HPARAM_TYPES
from deepattraction.pipeline import pipeline
from deepattraction.pipeline.configs import IMAGE_SCHEMA_FILE, PipelineConfig

DEFAULT_IMAGE = "ghcr.io/deepattraction/deepattraction:0.1.0"
GOLDEN_SPEC = os.path.join(os.path.dirname(__file__), "golden", "pipeline_spec.json")
RUNTIME_HPARAMS = ("weights", "task", "head_layers", "learning_rate", "epochs", "batch_size")
KFP_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")


def runtime_parameters(cfg: PipelineConfig) -> dict:
    """URIs and hyperparameters a KFP run can set without recompiling."""
    from deepattraction.trainer.train import TrainConfig

    defaults = {**dataclasses.asdict(TrainConfig().model), **{k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "model"}}
    defaults.update(cfg.hparams)
    params = {name: data_types.RuntimeParameter(name=name, ptype=HPARAM_TYPES[name], default=defaults[name])
              for name in RUNTIME_HPARAMS}
    params["users_uri"] = data_types.RuntimeParameter(name="users_uri", ptype=str, default=cfg.users_uri)
    params["swipes_uri"] = data_types.RuntimeParameter(name="swipes_uri", ptype=str, default=cfg.swipes_uri)
    return params


def compile_pipeline(cfg: PipelineConfig, output: str, image: str = DEFAULT_IMAGE) -> str:
    params = runtime_parameters(cfg)
    hparams = {**cfg.trainer_hparams, **{k: params[k] for k in RUNTIME_HPARAMS}}
    components = pipeline.create_components(cfg, users_uri=params["users_uri"], swipes_uri=params["swipes_uri"],
                                            hparams=hparams)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    runner.run(pipeline.create_pipeline(cfg, components), write_out=True)
    return output


def kfp_config(pipeline_root: str, backbone: str = "inception_v3", image_size: int = 0, hparams: dict | None = None) -> PipelineConfig:
    """The cluster's configuration: data and models under the pipeline root (gs:// in production)."""
    return PipelineConfig(
        pipeline_root=pipeline_root, users_uri=f"{pipeline_root}/data/users.csv",
        swipes_uri=f"{pipeline_root}/data/swipes.csv", serving_base=f"{pipeline_root}/serving",
        backbone=backbone, image_size=image_size, hparams=dict(hparams or {}), schema_file=IMAGE_SCHEMA_FILE,
        beam_pipeline_args=KFP_BEAM_ARGS)


def compile_from_args(a) -> str:
    from deepattraction.cli import _parse_hparams

    cfg = kfp_config(a.pipeline_root, a.backbone, a.image_size, _parse_hparams(a.hparam))
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    return compile_pipeline(cfg, a.output, a.image or DEFAULT_IMAGE)


def normalized_spec(path: str) -> dict:
    """The compiled spec without fields that change between compilations (SDK versions, times)."""
    with open(path) as f:
        spec = json.load(f)
    spec.get("pipelineSpec", spec).pop("sdkVersion", None)
    spec.pop("createTime", None)
    spec.get("labels", {}).pop("tfx_version", None)
    return spec


def golden_config() -> PipelineConfig:
    return kfp_config("gs://YOUR_BUCKET/deepattraction/root")


def write_golden(path: str = GOLDEN_SPEC) -> str:
    """Compiles the golden configuration and stores it normalised, sorted and indented."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        compiled = compile_pipeline(golden_config(), os.path.join(tmp, "spec.json"))
        spec = normalized_spec(compiled)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(spec, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write-golden"]:
        sys.exit("usage: python -m deepattraction.pipeline.kubeflow_v2_runner --write-golden")
    print(f"golden: wrote {write_golden()}")
