"""`make demo`'s recipe at reduced size, through the same command: blessed, pushed, served over gRPC
by `deepattraction serve` and asked for a photo, for three seeds. The seeds run with 2 intra-op
threads and one with 1, so a recipe that only learns on some machines fails here first."""
import os
import re
import subprocess
import sys

import pytest

from conftest import WEIGHTS_DIR
from deepattraction.serving import model_dir
from deepattraction.serving.predict import LocalModel

pytestmark = pytest.mark.e2e
USERS = 500  # the demo has 1000; 500 still gives test and eval splits of about 50 photos
RUNS = ((1, 2), (2, 2), (3, 1))  # (seed, intra-op threads)
SERVED = re.compile(r"served: (\S+) like ratio ([\d.]+), P\(male\) ([\d.]+), faces (\d+) \(gRPC, version (\d+)\)$")
DEMO = re.compile(r"demo: like-ratio weighted MSE ([\d.]+) vs constant ([\d.]+) \(ratio ([\d.]+)\), "
                  r"gender accuracy ([\d.]+) vs majority ([\d.]+)$")


def demo(workdir, seed: int, threads: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepattraction.cli", "demo", "--workdir", str(workdir),
                           "--num-users", str(USERS), "--seed", str(seed), "--threads", str(threads),
                           "--weights-dir", WEIGHTS_DIR, *extra], capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, facenet_weights):
    out = {}
    for seed, threads in RUNS:
        workdir = tmp_path_factory.mktemp(f"demo-seed{seed}")
        out[seed] = (workdir, demo(workdir, seed, threads))
    return out


@pytest.mark.parametrize("seed", [s for s, _ in RUNS])
def test_the_demo_ends_in_a_blessed_model_served_over_grpc(runs, seed):
    workdir, proc = runs[seed]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report, served, last = proc.stdout.strip().splitlines()[-3:]
    assert report.startswith("report: ") and os.path.getsize(report[len("report: "):]) > 50_000
    m = DEMO.match(last)
    assert m, last
    mse, constant, ratio, accuracy, majority = map(float, m.groups())
    assert ratio <= 0.7 and mse < constant and accuracy > majority + 0.2, last
    s = SERVED.match(served)
    assert s, served
    photo, like_ratio, p_male, faces, version = s.groups()
    push_dir = os.path.join(workdir, "pipeline", "serving", "deepattraction")
    assert int(version) == model_dir.versions(push_dir)[-1]
    # The served answer is the pushed model's own answer for that photo.
    local = LocalModel(push_dir).predict_files([photo])[0]
    assert float(like_ratio) == pytest.approx(local.like_ratio, abs=5e-4)
    assert float(p_male) == pytest.approx(local.male_probability, abs=5e-4) and int(faces) == local.face_count == 1


def test_a_model_that_learns_nothing_is_not_blessed_and_the_demo_fails_saying_so(runs):
    """Learning rate 0 leaves the training priors: no better than the constant, so not blessed,
    nothing new pushed, no served line, and a non-zero exit."""
    workdir, _ = runs[RUNS[0][0]]
    push_dir = os.path.join(workdir, "pipeline", "serving", "deepattraction")
    before = model_dir.versions(push_dir)
    proc = demo(workdir, RUNS[0][0], RUNS[0][1], "--hparam", "learning_rate=0")
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("demo: model NOT blessed (") and "like-ratio weighted MSE" in lines[-1]
    assert not any(line.startswith("served: ") for line in lines)
    assert model_dir.versions(push_dir) == before
