"""Compiles the pipeline into a Kubeflow Pipelines v2 spec (KubeflowV2DagRunner) and submits runs.

Data URIs and the tunable hyperparameters are runtime parameters of the compiled pipeline, so
one spec serves every run; the pipeline root is the spec's default and each KFP run may override
it. Backbone, image size and the serving base are compiled in. Where each step runs (resources,
GPU node pool, Beam runner) comes from a ClusterConfig (pipeline/cluster.py).
"""
from __future__ import annotations

import dataclasses
import json
import os

from tfx import v1 as tfx
from tfx.orchestration import data_types

from deepattraction.components.hparams_gen.component import HPARAM_TYPES
from deepattraction.pipeline import pipeline
from deepattraction.pipeline.cluster import BEAM_STEPS, DEFAULT_IMAGE, BeamConfig, ClusterConfig, NodePool, Toleration
from deepattraction.pipeline.configs import IMAGE_SCHEMA_FILE, PipelineConfig

GOLDEN_SPEC = os.path.join(os.path.dirname(__file__), "golden", "pipeline_spec.json")
# Settable per KFP run without recompiling; backbone and image size shape the Transform graph,
# so they are compile-time (`deepattraction compile --backbone --image-size`).
RUNTIME_HPARAMS = ("weights", "task", "head_layers", "head_width", "dropout", "learning_rate", "epochs", "head_epochs",
                   "fine_tune_learning_rate", "trainable_blocks", "early_stopping_patience", "starred_only",
                   "batch_size", "gender_loss_weight", "facenet_features", "flip")
KFP_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
__all__ = ["DEFAULT_IMAGE", "ClusterConfig", "BeamConfig", "compile_pipeline", "kfp_config", "submit"]


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


def cluster_components(cfg: PipelineConfig, cluster: ClusterConfig) -> list:
    """The pipeline's components with the cluster's resources and Beam runner attached."""
    params = runtime_parameters(cfg)
    hparams = {**cfg.trainer_hparams, **{k: params[k] for k in RUNTIME_HPARAMS}}
    components = pipeline.create_components(cfg, users_uri=params["users_uri"], swipes_uri=params["swipes_uri"],
                                            hparams=hparams)
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
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=cluster.image, use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    # TFX's v2 compiler drops RuntimeParameter defaults unless they are given again here.
    defaults = {name: p.default for name, p in runtime_parameters(cfg).items()}
    runner.run(pipeline.create_pipeline(cfg, components), parameter_values=defaults, write_out=True)
    if kfp_package:
        write_kfp_package(output, kfp_package, cluster, [c.id for c in components])
    return output


def write_kfp_package(job_spec: str, package: str, cluster: ClusterConfig, step_ids: list[str]) -> str:
    from google.protobuf import json_format
    from kfp.compiler.pipeline_spec_builder import write_pipeline_spec_to_file
    from kfp.pipeline_spec import pipeline_spec_pb2

    with open(job_spec) as f:
        job = json.load(f)
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    spec.default_pipeline_root = job["runtimeConfig"]["gcsOutputDirectory"]
    # A package has no runtime config: the job's parameter values become the inputs' defaults.
    for name, value in job["runtimeConfig"].get("parameterValues", {}).items():
        json_format.ParseDict(value, spec.root.input_definitions.parameters[name].default_value)
    os.makedirs(os.path.dirname(os.path.abspath(package)), exist_ok=True)
    write_pipeline_spec_to_file(spec, "DeepAttraction: like ratio and gender from a profile photo.",
                                cluster.platform_spec(step_ids), package)
    return package


def kfp_config(pipeline_root: str, backbone: str = "inception_v3", image_size: int = 0, hparams: dict | None = None,
               serving_base: str | None = None) -> PipelineConfig:
    """The cluster's configuration: data and models under the pipeline root (gs:// in production)."""
    return PipelineConfig(
        pipeline_root=pipeline_root, users_uri=f"{pipeline_root}/data/users.csv",
        swipes_uri=f"{pipeline_root}/data/swipes.csv", serving_base=serving_base or f"{pipeline_root}/serving",
        backbone=backbone, image_size=image_size, hparams=dict(hparams or {}), schema_file=IMAGE_SCHEMA_FILE,
        beam_pipeline_args=KFP_BEAM_ARGS)


def _pairs(items: list[str], what: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what} {item!r}: expected KEY=VALUE")
        out.append(tuple(item.split("=", 1)))
    return tuple(out)


def cluster_from_args(a) -> ClusterConfig:
    """The compile subcommand's cluster options as a ClusterConfig."""
    base = ClusterConfig()
    pool = NodePool(labels=_pairs(a.gpu_node_label, "--gpu-node-label") or base.gpu_pool.labels,
                    tolerations=tuple(Toleration(key=k) for k in a.gpu_toleration) or base.gpu_pool.tolerations)
    steps = dict(base.steps)
    steps["Trainer"] = dataclasses.replace(steps["Trainer"], accelerator_type=a.accelerator_type,
                                          accelerator_count=a.accelerator_count)
    try:
        beam = BeamConfig(runner=a.beam_runner, args=tuple(a.beam_arg))
    except ValueError as e:
        raise SystemExit(f"compile: {e}") from e
    return ClusterConfig(image=a.image or DEFAULT_IMAGE, steps=steps, gpu_pool=pool, beam=beam)


def compile_from_args(a) -> str:
    from deepattraction.pipeline.params import parse_hparams as _parse_hparams

    cfg = kfp_config(a.pipeline_root, a.backbone, a.image_size, _parse_hparams(a.hparam), a.serving_base)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    return compile_pipeline(cfg, a.output, cluster_from_args(a), a.kfp_package)


def submit(host: str, package: str, params: dict, experiment: str = "deepattraction", run_name: str | None = None,
           pipeline_root: str | None = None, service_account: str | None = None, namespace: str | None = None) -> str:
    """Starts one run of a compiled package on the KFP API at `host`; returns the run id."""
    import kfp

    client = kfp.Client(host=host, namespace=namespace)
    result = client.create_run_from_pipeline_package(
        package, arguments=params, run_name=run_name, experiment_name=experiment, namespace=namespace,
        pipeline_root=pipeline_root, service_account=service_account)
    return result.run_id


def run_locations(package: str, params: dict, pipeline_root: str | None = None):
    """The gs:// locations a run of `package` reads and writes: the given parameters or the
    package's defaults, its pipeline root, and the serving base compiled into its Pusher."""
    from kfp.client.client import _extract_pipeline_yaml

    from deepattraction.pipeline.storage import RunLocations

    spec = _extract_pipeline_yaml(package).pipeline_spec
    defaults = {k: v.default_value.string_value for k, v in spec.root.input_definitions.parameters.items()}
    push = json.loads(spec.root.dag.tasks["Pusher"].inputs.parameters["push_destination"].runtime_value.constant.string_value)
    return RunLocations(users_uri=params.get("users_uri") or defaults["users_uri"],
                        swipes_uri=params.get("swipes_uri") or defaults["swipes_uri"],
                        pipeline_root=pipeline_root or spec.default_pipeline_root,
                        serving_base=push["filesystem"]["base_directory"])


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


def parser():
    """`--write-golden`; `stage` (data to gs://); `submit`: the training CronJob's entry point."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m deepattraction.pipeline.kubeflow_v2_runner")
    p.add_argument("--write-golden", action="store_true")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("submit", help="start a run of a compiled package (deepattraction compile --kfp-package)")
    s.add_argument("--host", required=True, help="KFP API, e.g. http://ml-pipeline.kubeflow:8888")
    s.add_argument("--package", required=True)
    s.add_argument("--experiment", default="deepattraction")
    s.add_argument("--run-name")
    s.add_argument("--pipeline-root", help="overrides the package's default pipeline root")
    s.add_argument("--service-account", help="Kubernetes service account of the run's pods")
    s.add_argument("--namespace")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    s.add_argument("--preflight", action="store_true",
                   help="first check that the inputs exist and the pipeline root and serving base are writable")
    s.add_argument("--storage-endpoint", help="a GCS emulator's http://host:port (tests)")
    st = sub.add_parser("stage", help="upload a dataset folder (users.csv, swipes.csv, photos/) to gs://")
    st.add_argument("--data", required=True)
    st.add_argument("--to", required=True, help="e.g. gs://BUCKET/deepattraction/data")
    st.add_argument("--storage-endpoint")
    return p


def main(argv=None) -> int:
    from deepattraction.pipeline.params import parse_hparams as _parse_hparams

    p = parser()
    a = p.parse_args(argv)
    if a.write_golden:
        print(f"golden: wrote {write_golden()}")
    elif a.command == "stage":
        from deepattraction.pipeline.storage import StorageConfig, stage

        print(f"stage: wrote {len(stage(a.data, a.to, StorageConfig(a.storage_endpoint)))} objects under {a.to}")
    elif a.command == "submit":
        params = _parse_hparams(a.param)
        if a.preflight:
            from deepattraction.pipeline.storage import StorageConfig, preflight

            problems = preflight(run_locations(a.package, params, a.pipeline_root), StorageConfig(a.storage_endpoint))
            if problems:
                raise SystemExit("preflight: " + "; ".join(problems))
        run_id = submit(a.host, a.package, params, a.experiment, a.run_name, a.pipeline_root,
                        a.service_account, a.namespace)
        print(f"submit: run {run_id}")
    else:
        p.error("give --write-golden or submit")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
