"""The golden KFP spec (`make golden` rewrites it): the compiled golden configuration, with the
fields that change between compilations (SDK versions, times) taken out."""
from __future__ import annotations

import json
import os
import tempfile

from deepattraction.pipeline.configs import PipelineConfig
from deepattraction.pipeline.kubeflow_v2_runner import compile_pipeline, kfp_config

GOLDEN_SPEC = os.path.join(os.path.dirname(__file__), "golden", "pipeline_spec.json")


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
    with tempfile.TemporaryDirectory() as tmp:
        compiled = compile_pipeline(golden_config(), os.path.join(tmp, "spec.json"))
        spec = normalized_spec(compiled)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(spec, f, indent=2, sort_keys=True)
        f.write("\n")
    return path
