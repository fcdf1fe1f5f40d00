"""The container image recipe, up to what a Docker engine would do with it (none runs here).

The image must run the same pinned install as `make install` (one source of truth: the
Makefile's `stack` and `package` targets), carry TF_USE_LEGACY_KERAS, put the package where the
compiled spec looks for its schema, and pass a Dockerfile linter."""
import json
import os
import re
import subprocess

import pytest

from deepattraction import recipes
from deepattraction.pipeline import configs, golden
from deepattraction.weights import output_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "build", "tools-venv", "bin")
IMAGE_VENV = "/opt/venv"


def instructions(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if not current and (not stripped or stripped.startswith("#")):
                continue
            if stripped.startswith("#"):
                continue
            current += " " + stripped.rstrip("\\").strip()
            if not stripped.endswith("\\"):
                word, _, args = current.strip().partition(" ")
                out.append((word.upper(), args.strip()))
                current = ""
    return out


def make_dry_run(*args: str) -> list[str]:
    """The commands make would run, with pip's quiet flags normalised."""
    done = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return [" ".join(line.split()) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dockerfile():
    return instructions(os.path.join(ROOT, "Dockerfile"))


def image_make_calls(dockerfile) -> list[list[str]]:
    return [args.split()[1:] for word, args in dockerfile if word == "RUN" and args.startswith("make ")]


def test_image_runs_the_same_pinned_install_as_make(dockerfile):
    calls = image_make_calls(dockerfile)
    assert [c[0] for c in calls] == ["stack", "package"]
    assert all(f"VENV={IMAGE_VENV}" in c for c in calls)
    copied_before_stack = dockerfile.index(("COPY", "Makefile requirements.txt ./"))
    assert copied_before_stack < dockerfile.index(("RUN", " ".join(["make"] + calls[0])))
    image = make_dry_run("stack", "package", f"VENV={IMAGE_VENV}", "PYTHON=python3")
    local = [line for line in make_dry_run("-B", "install") if not line.startswith(("make ", "touch "))]
    assert [line.replace(IMAGE_VENV, ".venv") for line in image] == local
    assert any("PIP_IGNORE_REQUIRES_PYTHON=1" in line and "-r requirements.txt" in line for line in image)
    assert any(line.endswith("--no-deps --no-build-isolation -e .") for line in image)


def test_gpu_variant_adds_cuda_wheels_of_the_pinned_tensorflow(dockerfile):
    assert ("ARG", "VARIANT=cpu") in dockerfile
    assert "VARIANT=${VARIANT}" in image_make_calls(dockerfile)[0]
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        tf_pin = re.search(r"^tensorflow==(\S+)$", f.read(), re.M).group(1)
    gpu = " ".join(make_dry_run("stack", "VARIANT=gpu"))
    assert f'"tensorflow[and-cuda]=={tf_pin}"' in gpu
    assert "and-cuda" not in " ".join(make_dry_run("stack"))


def test_image_sets_legacy_keras_and_the_venv_on_path(dockerfile):
    env = " ".join(args for word, args in dockerfile if word == "ENV")
    assert "TF_USE_LEGACY_KERAS=1" in env.split()
    assert f"PATH={IMAGE_VENV}/bin:" in env  # the spec's `python -m tfx...` must find the venv


def test_schema_path_in_image_is_the_one_compiled_into_the_spec(dockerfile):
    """The image installs the source tree editable at WORKDIR, so the package's own SCHEMA_FILE
    there is IMAGE_SCHEMA_FILE; this venv is installed the same way from the repository."""
    workdir = [args for word, args in dockerfile if word == "WORKDIR"][-1]
    assert ("COPY", ". .") in dockerfile
    rel = os.path.relpath(configs.SCHEMA_FILE, ROOT)
    assert not rel.startswith("..")  # editable: the schema is read from the source tree
    assert os.path.join(workdir, rel) == configs.IMAGE_SCHEMA_FILE
    assert not dockerignored(rel) and not dockerignored("setup.py") and not dockerignored("Makefile")


def dockerignored(rel: str) -> bool:
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        patterns = [p.strip() for p in f if p.strip() and not p.startswith("#")]
    parts = rel.split("/")
    return any(p == parts[0] or (p.startswith("**/") and p[3:] in parts) for p in patterns)


def test_build_context_leaves_out_venvs_and_outputs():
    for heavy in (".venv", "build", ".git"):
        assert dockerignored(heavy), heavy


def test_dockerfile_passes_hadolint():
    done = subprocess.run([os.path.join(TOOLS, "hadolint"), "--failure-threshold", "info", "Dockerfile"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dataflow_workers_can_boot_the_image(dockerfile):
    assert ("COPY", "--from=beam /opt/apache/beam /opt/apache/beam") in dockerfile
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in dockerfile
    beam_pin = [args for word, args in dockerfile if word == "ARG" and args.startswith("BEAM_SDK_IMAGE=")][0]
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        beam_version = re.search(r"^apache-beam\[gcp\]==(\S+)$", f.read(), re.M).group(1)
    assert beam_pin.endswith(f"_sdk:{beam_version}")  # the boot must match the installed SDK


def test_image_carries_every_recipes_weights_where_the_compiled_spec_loads_them(dockerfile):
    """The Dockerfile fetches each pretrained recipe's weights (with the same `weights fetch`, whose
    sha256 checks run at build time) into recipes.IMAGE_WEIGHTS_DIR, the final stage keeps them,
    and the golden spec (`deepattraction compile` with no flags) trains FaceNet from that file."""
    fetches = [cmd.split()[3:5] for word, args in dockerfile if word == "RUN"
               for cmd in args.split("&&") if cmd.split()[:3] == ["deepattraction", "weights", "fetch"]]
    assert {name for name, _ in fetches} == {r.weights for r in recipes.RECIPES.values() if r.pretrained}
    assert {folder for _, folder in fetches} == {recipes.IMAGE_WEIGHTS_DIR}
    final = max(i for i, (word, _) in enumerate(dockerfile) if word == "FROM")
    assert ("COPY", f"--from=weights {recipes.IMAGE_WEIGHTS_DIR} {recipes.IMAGE_WEIGHTS_DIR}") in dockerfile[final:]
    with open(golden.GOLDEN_SPEC) as f:
        values = json.load(f)["runtimeConfig"]["parameterValues"]
    default = recipes.get(recipes.DEFAULT_RECIPE)
    assert default.backbone == "facenet"
    assert values["weights"] == os.path.join(recipes.IMAGE_WEIGHTS_DIR, output_file(default.weights))


def stages(dockerfile) -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions by its name, in file order (the last is the default target)."""
    out: dict[str, list] = {}
    for word, args in dockerfile:
        if word == "FROM":
            name = args.split(" AS ")[-1] if " AS " in args else args
            out[name] = [(word, args)]
        elif out:
            out[list(out)[-1]].append((word, args))
    return out


def test_default_image_runs_as_a_fixed_non_root_user_that_cannot_write_the_code(dockerfile):
    """Pod Security "restricted" needs a non-root user; a numeric USER lets Kubernetes check
    runAsNonRoot, and the code and venv stay root's, readable by the user and not writable."""
    built = stages(dockerfile)
    default = list(built)[-1]
    assert built[default][0] == ("FROM", f"base AS {default}")  # everything else comes from `base`
    users = [args for word, args in built[default] if word == "USER"]
    assert users and re.fullmatch(r"\d+:\d+", users[-1]), users
    uid, gid = (int(x) for x in users[-1].split(":"))
    assert uid >= 10000 and gid >= 10000  # clear of host users' UIDs
    assert not [w for w, _ in built[default] if w == "RUN"]  # nothing after the USER runs as root
    runs = " ".join(args for word, args in built["base"] if word == "RUN")
    assert f"groupadd --gid {gid} " in runs and f"useradd --uid {uid} --gid {gid} " in runs
    assert "chmod -R a+rX,go-w /opt/deepattraction /opt/venv" in runs
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in built["base"] and "USER" not in dict(built["base"])


def test_dataflow_worker_target_is_the_same_image_as_root(dockerfile):
    """Dataflow's VMs mount /var/opt/google owned by root for Beam's boot: that target adds nothing."""
    assert stages(dockerfile)["dataflow-worker"] == [("FROM", "base AS dataflow-worker")]


CHECKOV = os.path.join(ROOT, "build", "checkov-venv", "bin", "checkov")  # `make checkov`


def checkov(dockerfile: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([CHECKOV, "--config-file", os.path.join(ROOT, ".checkov.yaml"), "--framework", "dockerfile",
                           "-f", dockerfile], capture_output=True, text=True, cwd=cwd)


def test_dockerfile_passes_checkov(tmp_path):
    done = checkov(os.path.join(ROOT, "Dockerfile"), tmp_path)
    assert done.returncode == 0 and re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", done.stdout), (
        done.stdout + done.stderr)


def test_checkov_refuses_an_image_without_a_user(tmp_path):
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    rootful = tmp_path / "Dockerfile"
    rootful.write_text(re.sub(r"^USER .*\n", "", text, flags=re.M))
    done = checkov(str(rootful), tmp_path)
    assert done.returncode != 0 and "CKV_DOCKER_3" in done.stdout, done.stdout
