"""Runs the pipeline on this machine: LocalDagRunner, sqlite MLMD, Beam's DirectRunner."""
from __future__ import annotations

import contextlib
import fcntl
import os

from tfx import v1 as tfx

from deepattraction.pipeline import pipeline, progress
from deepattraction.pipeline.configs import PipelineConfig, input_fingerprint, step_code_versions
from deepattraction.pipeline.results import MLMD_FILE


def metadata_path(cfg: PipelineConfig) -> str:
    return cfg.metadata_path or os.path.join(cfg.pipeline_root, MLMD_FILE)


LOCK_FILE = ".run.lock"


class PipelineRootBusy(RuntimeError):
    """Another local run holds the pipeline root."""


@contextlib.contextmanager
def root_lock(root: str):
    """Holds <root>/.run.lock for one run. Two local runs on one root would both execute the same
    uncached steps into one MLMD store, and a killed one leaves RUNNING executions behind; the
    second run fails at once instead, naming the holder. The OS drops the lock when its process
    dies, so a killed run never leaves the root locked. Remote roots (gs://) are not locked:
    there the orchestrator (Kubeflow) owns the runs."""
    if "://" in root:
        yield
        return
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise PipelineRootBusy(f"pipeline root {root} is in use by another run (pid {holder}); wait for it "
                                   f"to end, or give this run its own --pipeline-root") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def run(cfg: PipelineConfig, show_progress: bool = True, only: tuple[str, ...] | None = None) -> None:
    """`only`: the ids of the components to run (a sub-DAG closed under its inputs, such as the
    example-making steps); all of them by default."""
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
