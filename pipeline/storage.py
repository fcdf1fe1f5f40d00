"""gs:// checks and staging for a cluster run, through google-cloud-storage.

The pipeline's steps read and write gs:// through tf.io.gfile, whose GCS client has a fixed
endpoint (storage.googleapis.com); these helpers use google-cloud-storage, whose endpoint can be
set, so they are tested against a local GCS emulator. `preflight` runs in the training CronJob
before a run is submitted: it names the missing object or permission instead of letting a step
fail an hour in.
"""
from __future__ import annotations

import dataclasses
import os
import uuid

PROBE = ".deepattraction-preflight"


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """endpoint: None for Google Cloud Storage itself, or an emulator's http://host:port."""

    endpoint: str | None = None
    project: str | None = None

    def client(self):
        from google.cloud import storage

        if self.endpoint:
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(project=self.project or "local", credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": self.endpoint})
        return storage.Client(project=self.project)


def split_gs(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri}: expected a gs:// URI")
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket")
    return bucket, name.rstrip("/")


@dataclasses.dataclass(frozen=True)
class RunLocations:
    """The gs:// locations one run reads (inputs) and writes (pipeline root, serving base)."""

    users_uri: str
    swipes_uri: str
    pipeline_root: str
    serving_base: str


def preflight(loc: RunLocations, cfg: StorageConfig = StorageConfig()) -> list[str]:
    """Problems that would stop the run, each naming the URI and the permission; [] if none.

    Reads each input (storage.objects.get) and writes then deletes a probe object under the
    pipeline root and the serving base (storage.objects.create, storage.objects.delete)."""
    from google.api_core import exceptions

    client = cfg.client()
    problems = []
    for uri in (loc.users_uri, loc.swipes_uri):
        bucket, name = split_gs(uri)
        try:
            if not client.bucket(bucket).blob(name).exists():
                problems.append(f"{uri}: no such object")
        except exceptions.Forbidden:
            problems.append(f"{uri}: not readable (needs storage.objects.get)")
        except exceptions.NotFound:
            problems.append(f"{uri}: no such bucket")
    for uri in (loc.pipeline_root, loc.serving_base):
        bucket, name = split_gs(uri)
        blob = client.bucket(bucket).blob(f"{name}/{PROBE}-{uuid.uuid4().hex}".lstrip("/"))
        try:
            blob.upload_from_string(b"")
            blob.delete()
        except exceptions.Forbidden:
            problems.append(f"{uri}: not writable (needs storage.objects.create and storage.objects.delete)")
        except exceptions.NotFound:
            problems.append(f"{uri}: no such bucket")
    return problems


def stage(local_dir: str, data_uri: str, cfg: StorageConfig = StorageConfig()) -> list[str]:
    """Uploads a dataset folder (users.csv, swipes.csv, photos/) under data_uri, keeping the
    relative layout so the users table's relative photo_uri values still resolve."""
    bucket_name, prefix = split_gs(data_uri)
    bucket = cfg.client().bucket(bucket_name)
    written = []
    for dirpath, _, files in sorted(os.walk(local_dir)):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            name = f"{prefix}/{rel}" if prefix else rel
            bucket.blob(name).upload_from_filename(path)
            written.append(f"gs://{bucket_name}/{name}")
    return written
