"""DeepAttraction: installs the top-level folders as the `deepattraction` package."""
from setuptools import setup

PARTS = ("pipeline", "components", "trainer", "serving")
SUBPACKAGES = ("components.swipe_example_gen", "components.evaluator", "components.hparams_gen", "components.pusher",
               "components.report")

setup(
    name="deepattraction",
    version="0.1.0",
    description="Like ratio and gender from a profile photo: a TFX pipeline for Kubeflow and TF Serving.",
    python_requires=">=3.11,<3.12",
    packages=["deepattraction"] + [f"deepattraction.{p}" for p in PARTS + SUBPACKAGES],
    package_dir={"deepattraction": "deepattraction",
                 **{f"deepattraction.{p}": p.replace(".", "/") for p in PARTS + SUBPACKAGES}},
    package_data={"deepattraction.pipeline": ["*.pbtxt", "golden/*.json"],
                  "deepattraction.components.report": ["*.css"]},
    entry_points={"console_scripts": ["deepattraction=deepattraction.cli:main"]},
)
