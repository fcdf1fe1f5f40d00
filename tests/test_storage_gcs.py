"""gs:// staging and the pre-submit check against a real local GCS API (gcp-storage-emulator)
on loopback, through google-cloud-storage. The pipeline's steps read gs:// through tf.io.gfile,
whose GCS endpoint is fixed to storage.googleapis.com, so they cannot be pointed at an emulator:
their access is documented (README, Deploy) with the exact permissions the service accounts need."""
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from deepattraction.cli import main as cli_main
from deepattraction.pipeline import submission
from deepattraction.pipeline.kfp_package import run_locations
from deepattraction.pipeline.storage import StorageConfig, preflight, split_gs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATOR = os.path.join(ROOT, "build", "tools-venv", "bin", "gcp-storage-emulator")
BUCKET = "deepattraction-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    port = free_port()
    proc = subprocess.Popen([EMULATOR, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                             "--default-bucket", BUCKET, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/storage/v1/b/{BUCKET}", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gcp-storage-emulator did not start")
        yield StorageConfig(endpoint=endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The package the training CronJob compiles, rooted in the emulator's bucket."""
    tmp = tmp_path_factory.mktemp("pkg")
    cli_main(["compile", "--output", str(tmp / "spec.json"), "--kfp-package", str(tmp / "pipeline.yaml"),
              "--pipeline-root", f"gs://{BUCKET}/root"])
    return str(tmp / "pipeline.yaml")


def make_dataset(d):
    (d / "photos").mkdir(parents=True)
    (d / "users.csv").write_text("user_id,gender,photo_uri,photo_updated_at\nu1,female,photos/u1.jpg,0\n")
    (d / "swipes.csv").write_text("swiper_id,target_id,liked,swiped_at\nu2,u1,1,10\n")
    (d / "photos" / "u1.jpg").write_bytes(b"\xff\xd8\xff\xe0jpeg")
    return d


def test_staged_data_lands_where_the_compiled_defaults_read_it(gcs, package, tmp_path):
    data = make_dataset(tmp_path / "data")
    submission.main(["stage", "--data", str(data), "--to", f"gs://{BUCKET}/root/data", "--storage-endpoint",
                     gcs.endpoint])
    loc = run_locations(package, {})
    assert (loc.users_uri, loc.swipes_uri) == (f"gs://{BUCKET}/root/data/users.csv",
                                               f"gs://{BUCKET}/root/data/swipes.csv")
    assert loc.pipeline_root == f"gs://{BUCKET}/root" and loc.serving_base == f"gs://{BUCKET}/root/serving/deepattraction"
    bucket = gcs.client().bucket(BUCKET)
    _, users_name = split_gs(loc.users_uri)
    assert bucket.blob(users_name).download_as_bytes() == (data / "users.csv").read_bytes()
    # photo_uri is relative to the users table: the photo sits beside it as in the local folder.
    photo = os.path.join(os.path.dirname(users_name), "photos/u1.jpg")
    assert bucket.blob(photo).download_as_bytes() == b"\xff\xd8\xff\xe0jpeg"
    assert preflight(loc, gcs) == []
    leftovers = [b.name for b in gcs.client().list_blobs(BUCKET) if ".deepattraction-preflight" in b.name]
    assert leftovers == []  # the write probes are deleted again


def test_preflight_names_missing_inputs_and_buckets(gcs, package):
    loc = run_locations(package, {"users_uri": f"gs://{BUCKET}/elsewhere/users.csv"},
                        pipeline_root="gs://no-such-bucket/root")
    problems = preflight(loc, gcs)
    assert f"gs://{BUCKET}/elsewhere/users.csv: no such object" in problems
    assert "gs://no-such-bucket/root: no such bucket" in problems


def test_submit_stops_before_contacting_kfp_when_preflight_fails(gcs, package):
    """--host names a port nothing listens on: the run is refused by the preflight first."""
    with pytest.raises(SystemExit, match="preflight: .*missing.csv: no such object"):
        submission.main(["submit", "--host", f"http://127.0.0.1:{free_port()}", "--package", package, "--preflight",
                "--storage-endpoint", gcs.endpoint, "--param", f"swipes_uri=gs://{BUCKET}/missing.csv"])


def test_split_gs_rejects_local_paths():
    with pytest.raises(ValueError, match="gs://"):
        split_gs("/data/users.csv")
