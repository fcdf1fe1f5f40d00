"""One local run per pipeline root. Free of TFX, so the command line can name a busy root
without loading it."""
from __future__ import annotations

import contextlib
import fcntl
import os

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
