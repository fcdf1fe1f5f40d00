"""What a user of the command line sees: progress lines and results, not the libraries' chatter.

TensorFlow's C++ logs (grappler's `op_level_cost_estimator ... PredictCost()` for every
CropAndResize, the CUDA factory registration errors of a CPU build, the oneDNN notices) are
written when TensorFlow loads and runs, so their threshold must be set before it loads: the
command line's entry point (entry.py) calls quiet() first. Child processes (the local server,
Beam workers) inherit it through the environment. `--verbose` keeps everything."""
from __future__ import annotations

import os
import warnings

# TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR. Our own failures are Python
# exceptions with messages of their own; TensorFlow's C++ ERROR lines on a healthy run are noise.
QUIET_TF_LOG_LEVEL = "3"
# Warnings the pinned stack raises on every run and a user can do nothing about (deprecations
# inside TFX, Beam, Keras and Google's client libraries).
NOISE_CATEGORIES = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
NOISE_MODULES = r"(google|tfx|apache_beam|keras|tf_keras|tensorflow|tensorflow_transform|tfx_bsl|kfp|ml_metadata)(\.|$)"


def quiet(verbose: bool = False) -> None:
    """Before TensorFlow loads: its C++ log threshold, and Python's warnings filters, for this
    process and (through the environment) its children."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    for category in NOISE_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning, module=NOISE_MODULES)
    os.environ["PYTHONWARNINGS"] = ",".join(f"ignore::{c.__name__}" for c in NOISE_CATEGORIES)
