"""Compiles the pipeline into a Kubeflow Pipelines v2 spec (KubeflowV2DagRunner): a thin layer over
create_pipeline. The KFP package (kfp_package.py), the golden spec (golden.py) and starting runs
(submission.py, also this module's command line) live beside it.

Data URIs and the tunable hyperparameters are runtime parameters of the compiled pipeline, so
one spec serves every run; the pipeline root is the spec's default and each KFP run may override
it. The recipe (recipes.py; `--recipe`, FaceNet by default) gives every default: its Trainer
hyperparameters and gate become the runtime parameters' defaults, its weights the file the image
carries. Backbone, image size and the serving base are compiled in. Where each step runs (resources,
GPU node pool, Beam runner) comes from a ClusterConfig (pipeline/cluster.py).
"""
from __future__ import annotations

import dataclasses
import os
import sys

from tfx import v1 as tfx
from tfx.orchestration import data_types

from deepattraction import recipes
from deepattraction.components.evaluator.component import GATE_PARAMETERS
from deepattraction.components.evaluator.evaluation import GATE_SPLIT_FIELDS
from deepattraction.components.hparams_gen.component import HPARAM_TYPES
from deepattraction.pipeline import pipeline
from deepattraction.pipeline.cluster import BEAM_STEPS, DEFAULT_IMAGE, BeamConfig, ClusterConfig, cluster_from_args
from deepattraction.pipeline.configs import IMAGE_SCHEMA_FILE, PipelineConfig, from_recipe
from deepattraction.pipeline.kfp_package import write_kfp_package
from deepattraction.pipeline.params import parse_hparams
from deepattraction.trainer.train import TrainConfig

# Fixed per compiled pipeline (`deepattraction compile --hparam`): the backbone shapes the Transform
# graph; the others are engineering settings. Every other TrainConfig / ModelConfig field is settable
# per KFP run without recompiling, so a new hyperparameter is a runtime parameter by default.
COMPILE_TIME_HPARAMS = frozenset({"backbone", "precision", "shuffle_buffer", "bn_recalibration_batches",
                                  "frozen_cache", "deterministic", "seed"})
RUNTIME_HPARAMS = tuple(name for name in HPARAM_TYPES if name not in COMPILE_TIME_HPARAMS)
# The blessing rule's values are runtime parameters too; which splits it scores on is compiled in.
RUNTIME_GATE = tuple(name for name in GATE_PARAMETERS if name not in GATE_SPLIT_FIELDS)
KFP_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
__all__ = ["DEFAULT_IMAGE", "ClusterConfig", "BeamConfig", "compile_pipeline", "kfp_config"]


def runtime_parameters(cfg: PipelineConfig) -> dict:
    """URIs, hyperparameters and the data validation policy a KFP run can set without recompiling."""
    defaults = {**dataclasses.asdict(TrainConfig()), **dataclasses.asdict(TrainConfig().model), **cfg.hparams}
    params = {name: data_types.RuntimeParameter(name=name, ptype=HPARAM_TYPES[name], default=defaults[name])
              for name in RUNTIME_HPARAMS}
    params["users_uri"] = data_types.RuntimeParameter(name="users_uri", ptype=str, default=cfg.users_uri)
    params["swipes_uri"] = data_types.RuntimeParameter(name="swipes_uri", ptype=str, default=cfg.swipes_uri)
    params["block_on"] = data_types.RuntimeParameter(name="block_on", ptype=str, default=cfg.block_on)
    gate = dataclasses.asdict(cfg.gate)
    for name in RUNTIME_GATE:
        params[name] = data_types.RuntimeParameter(name=name, ptype=GATE_PARAMETERS[name], default=gate[name])
    return params


def cluster_components(cfg: PipelineConfig, cluster: ClusterConfig) -> list:
    """The pipeline's components with the cluster's resources and Beam runner attached."""
    params = runtime_parameters(cfg)
    hparams = {**cfg.trainer_hparams, **{k: params[k] for k in RUNTIME_HPARAMS}}
    components = pipeline.create_components(cfg, users_uri=params["users_uri"], swipes_uri=params["swipes_uri"],
                                            hparams=hparams, block_on=params["block_on"],
                                            gate={k: params[k] for k in RUNTIME_GATE})
    beam_args = list(cluster.beam.step_args(cluster.image, cfg.pipeline_root))
    for c in components:
        if not hasattr(c, "with_platform_config"):  # resolver nodes run in the KFP backend, not in a pod
            continue
        c.with_platform_config(cluster.resources(c.id).spec())
        if c.id in BEAM_STEPS and beam_args:
            c.with_beam_pipeline_args(beam_args)
    return components


def compile_pipeline(cfg: PipelineConfig, output: str, cluster: ClusterConfig | None = None,
                     kfp_package: str | None = None) -> str:
    """Writes TFX's KFP v2 job spec to `output` and, if asked, the package `kfp_package` (YAML:
    the PipelineSpec, then the PlatformSpec with node selectors and tolerations) that KFP uploads."""
    cluster = cluster or ClusterConfig()
    components = cluster_components(cfg, cluster)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=cluster.image,
                                                                        use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    # TFX's v2 compiler drops RuntimeParameter defaults unless they are given again here.
    defaults = {name: p.default for name, p in runtime_parameters(cfg).items()}
    runner.run(pipeline.create_pipeline(cfg, components), parameter_values=defaults, write_out=True)
    if kfp_package:
        write_kfp_package(output, kfp_package, cluster, [c.id for c in components])
    return output


def kfp_config(pipeline_root: str, recipe: str = recipes.DEFAULT_RECIPE, hparams: dict | None = None,
               serving_base: str | None = None, gate: dict | None = None, image_size: int | None = None,
               weights_dir: str = recipes.IMAGE_WEIGHTS_DIR, block_on: str | None = None,
               photo_buckets: tuple[str, ...] = ()) -> PipelineConfig:
    """The cluster's configuration: data and models under the pipeline root (gs:// in production),
    the recipe's weights where the container image keeps them (a URI in `hparams` overrides)."""
    hparams = dict(hparams or {})
    weights = hparams.pop("weights", None) or recipes.weights_file(recipes.get(recipe).weights, weights_dir)
    return from_recipe(
        recipe, pipeline_root=pipeline_root, users_uri=f"{pipeline_root}/data/users.csv",
        swipes_uri=f"{pipeline_root}/data/swipes.csv", serving_base=serving_base or f"{pipeline_root}/serving",
        weights_file=weights, hparams=hparams, gate=gate, image_size=image_size, block_on=block_on,
        schema_file=IMAGE_SCHEMA_FILE, beam_pipeline_args=KFP_BEAM_ARGS, photo_buckets=tuple(photo_buckets))


def compile_from_args(a) -> str:
    cfg = kfp_config(a.pipeline_root, a.recipe, parse_hparams(a.hparam), a.serving_base,
                     gate={name: getattr(a, name, None) for name in GATE_PARAMETERS}, image_size=a.image_size,
                     weights_dir=a.weights_dir, block_on=a.block_on,
                     photo_buckets=tuple(getattr(a, "photo_bucket", ()) or ()))
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    return compile_pipeline(cfg, a.output, cluster_from_args(a), a.kfp_package)


if __name__ == "__main__":
    from deepattraction.pipeline import submission  # the command line sits above this module (it imports it)

    sys.exit(submission.main())
