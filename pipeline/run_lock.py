"""Locks for local runs and pushes: one run per pipeline root, one push at a time per serving
base. Free of TFX, so the command line can name a busy root without loading it."""
from __future__ import annotations

import contextlib
import fcntl
import os
import time

LOCK_FILE = ".run.lock"
PUSH_LOCK_FILE = ".push.lock"  # in the serving base: not a number, so no server takes it for a version
PUSH_LOCK_WAIT_SECONDS = 600.0  # a push copies one model; one waiting longer than this names the holder


class PipelineRootBusy(RuntimeError):
    """Another local run holds the pipeline root."""


class ServingBaseBusy(RuntimeError):
    """Another push held the serving base for longer than PUSH_LOCK_WAIT_SECONDS."""


def _holder(fd: int) -> str:
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"


def _take(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)


@contextlib.contextmanager
def _file_lock(folder: str, name: str, wait_s: float, busy):
    """Holds <folder>/<name> (flock: the OS drops it with its process), waiting up to wait_s for
    another holder; then raises busy(holder pid). Remote folders (gs://) have no lock to take."""
    if "://" in folder:
        yield
        return
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy(_holder(fd)) from None
                time.sleep(0.05)
        _take(fd)
        yield
    finally:
        os.close(fd)


def root_lock(root: str):
    """Holds <root>/.run.lock for one run. Two local runs on one root would both execute the same
    uncached steps into one MLMD store, and a killed one leaves RUNNING executions behind; the
    second run fails at once instead, naming the holder. The OS drops the lock when its process
    dies, so a killed run never leaves the root locked. Remote roots (gs://) are not locked:
    there the orchestrator (Kubeflow) owns the runs."""
    return _file_lock(root, LOCK_FILE, 0.0, lambda pid: PipelineRootBusy(
        f"pipeline root {root} is in use by another run (pid {pid}); wait for it to end, or give this run "
        f"its own --pipeline-root"))


def serving_base_lock(base: str, wait_s: float = PUSH_LOCK_WAIT_SECONDS):
    """Holds <base>/.push.lock while one push picks its version number, clears leftovers and
    publishes. Runs of different pipeline roots may push to one serving base, so the lock is the
    base's, not the root's; a second push waits for the first instead of failing. A killed push
    never leaves it held (the OS drops it with the process). On gs:// there is no lock to take: a
    version number is still never shared, because publishing refuses a version that exists (see
    serving.push), but the same-model check of two concurrent pushes may both push a copy."""
    return _file_lock(base, PUSH_LOCK_FILE, wait_s, lambda pid: ServingBaseBusy(
        f"serving base {base} is held by another push (pid {pid}) for over {wait_s:.0f} s"))
