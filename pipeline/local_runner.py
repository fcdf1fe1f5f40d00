"""Runs the pipeline on this machine: LocalDagRunner, sqlite MLMD, Beam's DirectRunner."""
from __future__ import annotations

import os

from tfx import v1 as tfx

from deepattraction.pipeline import pipeline, progress
from deepattraction.pipeline.configs import PipelineConfig, input_fingerprint, step_code_versions, with_absolute_paths
from deepattraction.pipeline.results import MLMD_FILE
from deepattraction.pipeline.run_lock import root_lock


def metadata_path(cfg: PipelineConfig) -> str:
    return cfg.metadata_path or os.path.join(cfg.pipeline_root, MLMD_FILE)


def run(cfg: PipelineConfig, show_progress: bool = True, only: tuple[str, ...] | None = None) -> None:
    """`only`: the ids of the components to run (a sub-DAG closed under its inputs, such as the
    example-making steps); all of them by default. Relative paths are taken from the working
    directory."""
    cfg = with_absolute_paths(cfg)
    with root_lock(cfg.pipeline_root):
        _run(cfg, show_progress, only)


def _run(cfg: PipelineConfig, show_progress: bool, only: tuple[str, ...] | None) -> None:
    if show_progress:
        progress.enable()
    components = pipeline.create_components(
        cfg, fingerprint=input_fingerprint(cfg.users_uri, cfg.swipes_uri), code=step_code_versions())
    if only is not None:
        components = [c for c in components if c.id in only]
    p = pipeline.create_pipeline(
        cfg, components, tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path(cfg)))
    tfx.orchestration.LocalDagRunner().run(p)
