"""Product and lab apart: what measures (bench/: benchmarks, studies, parity checks) imports the
product; the product, its command line and its tests never import the lab. And trainer/ is pure
model code that never imports pipeline/."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCT = ("pipeline", "components", "trainer", "serving", "deepattraction", "tests")
LAB = "bench"
LAB_MODULE = re.compile(rf"^{LAB}(\.|$)")
# A lab module named as a string: importlib, or `python -m bench.x` in a subprocess.
LAB_STRING = re.compile(rf"^{LAB}\.\w+$")


def _sources(*tops: str):
    for top in tops:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(folder, name)
    yield os.path.join(ROOT, "conftest.py")


def imported(path: str) -> set[str]:
    """Every module a file names: import statements (in functions too) and module names given as
    strings (importlib.import_module, `-m` arguments)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAB_STRING.match(node.value):
            out.add(node.value)
    return out


@pytest.mark.parametrize("path", sorted(_sources(*PRODUCT)), ids=lambda p: os.path.relpath(p, ROOT))
def test_no_product_module_or_product_test_imports_the_lab(path):
    lab = sorted(m for m in imported(path) if LAB_MODULE.match(m))
    assert not lab, f"{os.path.relpath(path, ROOT)} imports the lab: {lab}"


def test_the_lab_uses_the_product():
    """The other direction is the point of the lab: its figures are the product's figures."""
    uses = set().union(*(imported(p) for p in _sources(LAB) if os.path.basename(p) != "conftest.py"))
    assert {"deepattraction.recipes", "deepattraction.pipeline.configs"} & uses


TRAINER_CODE = sorted(p for p in _sources("trainer")
                      if p.startswith(os.path.join(ROOT, "trainer")) and not p.endswith("_test.py"))


@pytest.mark.parametrize("path", TRAINER_CODE, ids=lambda p: os.path.relpath(p, ROOT))
def test_trainer_never_imports_the_pipeline(path):
    """Its tests may run the pipeline's Transform to make examples; its code never does."""
    bad = sorted(m for m in imported(path) if m.startswith("deepattraction.pipeline") or m.startswith("pipeline"))
    assert not bad, f"{os.path.relpath(path, ROOT)} imports {bad}"


def test_the_check_sees_an_import_of_the_lab(tmp_path):
    """The check itself: statements, imports inside functions, and `-m bench.x` strings all count."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from bench import quality\n    import bench.options\n"
                      "    return ['python', '-m', 'bench.serving']\n")
    assert {LAB, f"{LAB}.options", f"{LAB}.serving"} <= imported(str(sample))


def test_make_runs_the_lab_as_modules():
    """`python bench/x.py` puts bench/ first on sys.path, where `from bench import ...` fails:
    every make target runs a lab script as `python -m bench.x` from the repository root."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read()
    assert re.findall(r"-m bench\.\w+", makefile)
    assert not re.findall(r"python3? +bench/", makefile)
