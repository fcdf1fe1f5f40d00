"""DeepAttraction: installs the top-level folders as the `deepattraction` package.

The product's folders (PARTS) become subpackages of `deepattraction`, every package under them
found by find_packages, so a new component is installed without touching this file. `bench/` (the
lab) and `tests/` are not part of the package."""
from setuptools import find_packages, setup

PARTS = ("pipeline", "components", "trainer", "serving")
PACKAGES = ["deepattraction"] + [f"deepattraction.{part}{'.' + sub if sub else ''}"
                                 for part in PARTS for sub in [""] + find_packages(part)]

setup(
    name="deepattraction",
    version="0.1.0",
    description="Like ratio and gender from a profile photo: a TFX pipeline for Kubeflow and TF Serving.",
    python_requires=">=3.11,<3.12",
    packages=PACKAGES,
    package_dir={"deepattraction": "deepattraction", **{f"deepattraction.{p}": p for p in PARTS}},
    package_data={"deepattraction.pipeline": ["*.pbtxt", "golden/*.json"],
                  "deepattraction.components.report": ["*.css"]},
    entry_points={"console_scripts": ["deepattraction=deepattraction.entry:main"]},
)
