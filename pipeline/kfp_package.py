"""The package KFP uploads (the PipelineSpec, then the PlatformSpec with node selectors and
tolerations, in one YAML file), written from TFX's job spec, and what a package's run will touch."""
from __future__ import annotations

import json
import os

from google.protobuf import json_format
from kfp.client.client import _extract_pipeline_yaml
from kfp.compiler.pipeline_spec_builder import write_pipeline_spec_to_file
from kfp.pipeline_spec import pipeline_spec_pb2

from deepattraction.pipeline.cluster import ClusterConfig
from deepattraction.pipeline.storage import RunLocations


def write_kfp_package(job_spec: str, package: str, cluster: ClusterConfig, step_ids: list[str]) -> str:
    """TFX's KFP v2 job spec `job_spec` as the package `package`; the job's parameter values
    become the inputs' defaults."""
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


def run_locations(package: str, params: dict, pipeline_root: str | None = None):
    """The gs:// locations a run of `package` reads and writes: the given parameters or the
    package's defaults, its pipeline root, and the serving base compiled into its Pusher."""
    spec = _extract_pipeline_yaml(package).pipeline_spec
    defaults = {k: v.default_value.string_value for k, v in spec.root.input_definitions.parameters.items()}
    pusher = spec.root.dag.tasks["Pusher"].inputs.parameters
    push = json.loads(pusher["push_destination"].runtime_value.constant.string_value)
    return RunLocations(users_uri=params.get("users_uri") or defaults["users_uri"],
                        swipes_uri=params.get("swipes_uri") or defaults["swipes_uri"],
                        pipeline_root=pipeline_root or spec.default_pipeline_root,
                        serving_base=push["filesystem"]["base_directory"])
