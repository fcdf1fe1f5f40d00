"""Pushes a SavedModel into a TF Serving model base path: each version complete or absent, each
version number taken by one push only.

TF Serving (and the local server) treat every numeric folder under the base as a version, so a
version is never written where it will be served:

1. The model, then the warmup file, then saved_model.pb are written under `<base>/.staging-<id>`,
   a name no server takes for a version (not a number).
2. It is published in one step. On a local or mounted file system that is `os.rename` to
   `<base>/<version>`: atomic, and it fails when the version exists (rename onto a non-empty
   folder is refused), so two pushes that pick one number cannot share it; the loser takes the
   next number.
3. A push killed before step 2 leaves only its staging folder: never served, and removed by the
   next push to the base (which holds the base's lock, so no live push owns it).

GCS has no rename: an object store lists objects, and `<base>/<version>/` exists as soon as any
object under it does. There the staged objects are copied server-side into `<base>/<version>/`
with saved_model.pb LAST, then the staging prefix is deleted. Every object a loader reads is
visible before saved_model.pb (GCS lists and reads are strongly consistent), and neither server
loads a version without saved_model.pb: TF Serving's loader fails on it and retries
(--max_num_load_retries, --load_retry_interval_micros), the local server does not list it. So a
version that can be loaded is always complete; what a kill mid-copy leaves (a numeric prefix
without saved_model.pb) can never load, and is named by the next push. Version numbers stay
exclusive: the copy refuses a version prefix that exists, and on GCS only the orchestrator
serializes runs (there is no lock file); `flock` serializes local pushes."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable

import tensorflow as tf

from deepattraction.pipeline.run_lock import serving_base_lock
from deepattraction.serving import model_dir, warmup

STAGING_PREFIX = ".staging-"
SAVED_MODEL = "saved_model.pb"
log = logging.getLogger(__name__)


def _remote(path: str) -> bool:
    return "://" in path


def _copy_tree(src: str, dst: str, exclude: str = "") -> None:
    """Every file of src into dst but `exclude` (a name directly under src)."""
    for dirpath, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = dst if rel == "." else os.path.join(dst, rel)
        tf.io.gfile.makedirs(out)
        for f in files:
            if not (rel == "." and f == exclude):
                tf.io.gfile.copy(os.path.join(dirpath, f), os.path.join(out, f), overwrite=True)


def stage(model_path: str, base: str, model_name: str) -> str:
    """The model with TF Serving's warmup file under a fresh staging name in base; saved_model.pb
    last, so that a staged folder that has it is complete."""
    staging = os.path.join(base, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    _copy_tree(model_path, staging, exclude=SAVED_MODEL)
    warmup.write(staging, warmup.warmup_logs(model_name, warmup.demo_photos(warmup.WARMUP_PHOTOS)))
    tf.io.gfile.copy(os.path.join(model_path, SAVED_MODEL), os.path.join(staging, SAVED_MODEL), overwrite=True)
    return staging


def publish(staging: str, serving_path: str) -> None:
    """Makes a staged version visible at serving_path in one step (see the module docstring);
    FileExistsError, with staging left as it was, when serving_path is taken."""
    if _remote(serving_path):
        if tf.io.gfile.exists(serving_path):
            raise FileExistsError(serving_path)
        _copy_tree(staging, serving_path, exclude=SAVED_MODEL)
        tf.io.gfile.copy(os.path.join(staging, SAVED_MODEL), os.path.join(serving_path, SAVED_MODEL))
        tf.io.gfile.rmtree(staging)
        return
    if os.path.lexists(serving_path):  # an empty folder would be replaced by rename, not refused
        raise FileExistsError(serving_path)
    try:
        os.rename(staging, serving_path)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(serving_path) from None
        raise


def _discard(staging: str) -> None:
    try:
        tf.io.gfile.rmtree(staging)
    except tf.errors.NotFoundError:
        pass


def push_version(model_path: str, serving_path: str, model_name: str) -> str:
    """The model as version serving_path (<base>/<number>), complete or not at all;
    FileExistsError when that version exists."""
    base = os.path.dirname(serving_path.rstrip("/"))
    staging = stage(model_path, base, model_name)
    try:
        publish(staging, serving_path)
    except BaseException:
        _discard(staging)
        raise
    return serving_path


def push_new_version(model_path: str, base: str, model_name: str, first: int) -> int:
    """The model as a new version numbered `first` or, when another push has it, the next free one."""
    staging = stage(model_path, base, model_name)
    version = first
    try:
        while True:
            try:
                publish(staging, os.path.join(base, str(version)))
                return version
            except FileExistsError:
                version += 1
    except BaseException:
        _discard(staging)
        raise


def leftovers(base: str) -> list[str]:
    """Staging folders in base (pushes that died before publishing), and numeric folders without
    saved_model.pb (on gs://, a copy that died; locally, a push by an older, non-atomic pusher):
    never loaded by the local server, never loadable by TF Serving."""
    if not tf.io.gfile.isdir(base):
        return []
    out = []
    for name in sorted(n.rstrip("/") for n in tf.io.gfile.listdir(base)):
        if name.startswith(STAGING_PREFIX) or (name.isascii() and name.isdigit() and
                                               not tf.io.gfile.exists(os.path.join(base, name, SAVED_MODEL))):
            out.append(name)
    return out


def push_model(model_path: str, base: str, model_name: str, first: int,
               reuse: Callable[[str], bool] = lambda path: False) -> tuple[int, bool]:
    """(version, pushed) under the base's lock: leftover staging folders of killed pushes are
    removed locally (no live push owns one while the lock is held) and named in the log (on
    gs://, where there is no lock, and for incomplete numeric folders, which may be someone's);
    then the newest version is kept when reuse(its path), else the model is pushed as a new
    version above every existing one, numbered `first` at least."""
    with serving_base_lock(base):
        for name in leftovers(base):
            if name.startswith(STAGING_PREFIX) and not _remote(base):
                log.warning("%s/%s: left over by a push that died; removed", base, name)
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            else:
                log.warning("%s/%s: incomplete, left over by a push that died; never served; delete it", base, name)
        versions = model_dir.versions(base)
        if versions and reuse(os.path.join(base, str(versions[-1]))):
            return versions[-1], False
        # above every numeric folder, complete or not: TF Serving's latest policy aspires the highest
        taken = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(base) if n.rstrip("/").isascii()
                 and n.rstrip("/").isdigit()] if tf.io.gfile.isdir(base) else []
        return push_new_version(model_path, base, model_name, max([first] + [v + 1 for v in taken])), True
