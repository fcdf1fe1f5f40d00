"""The package's __init__ is the one owner of TF_USE_LEGACY_KERAS: any module of the package,
imported first in a process whose environment lacks it, makes TensorFlow's Keras tf-keras (Keras 2)."""
import os
import shutil
import subprocess
import sys
import zipfile


def test_importing_the_package_picks_keras_2_without_the_environment():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import deepattraction.trainer.features, tensorflow as tf; print(tf.keras.Model.__module__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1].startswith("tf_keras.")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("pipeline", "components", "trainer", "serving")
DATA = {"pipeline/schema.pbtxt", "pipeline/golden/pipeline_spec.json", "components/report/report.css"}


def _package_tree() -> set[str]:
    """What the wheel must hold, as paths inside it: every module of deepattraction/ and of the
    product's folders (installed as deepattraction.<folder>), and their data files."""
    out = set()
    for top, prefix in [("deepattraction", "deepattraction")] + [(p, f"deepattraction/{p}") for p in PARTS]:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            # Modules of packages only: a folder without __init__.py (test data and the script that
            # makes it) is no package; its data files are listed in DATA where the package ships them.
            package = os.path.exists(os.path.join(folder, "__init__.py"))
            rel = os.path.relpath(folder, os.path.join(ROOT, top))
            for name in files:
                path = os.path.normpath(os.path.join(rel, name))
                if (package and name.endswith(".py")) or f"{top}/{path}" in DATA:
                    out.add(os.path.normpath(os.path.join(prefix, path)))
    return out


def test_the_wheel_installs_every_module_and_data_file_of_the_package_and_nothing_of_the_lab(tmp_path):
    """`pip wheel` (what `pip install .` builds) holds the whole package tree: a component folder
    added without touching setup.py is installed too."""
    # From a copy of the source tree: setuptools builds in <source>/build, which must not be ours.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = os.listdir(tmp_path / "dist")
    with zipfile.ZipFile(tmp_path / "dist" / wheel) as z:
        names = {n for n in z.namelist() if not n.startswith("deepattraction-0.1.0.dist-info/")}
    expected = _package_tree()
    assert {"deepattraction/components/data_gate/executor.py", "deepattraction/pipeline/schema.pbtxt",
            "deepattraction/components/report/report.css", "deepattraction/recipes.py"} <= expected
    assert names == expected, (sorted(expected - names)[:10], sorted(names - expected)[:10])
    assert not any(n.startswith(("bench/", "tests/", "deepattraction/bench/")) for n in names)
