"""What a user of the command line sees: progress lines and results, not the libraries' chatter.

TensorFlow's C++ logs (grappler's `op_level_cost_estimator ... PredictCost()` for every
CropAndResize, the CUDA factory registration errors of a CPU build, the oneDNN notices) are
written when TensorFlow loads and runs, so their threshold must be set before it loads: the
command line's entry point (entry.py) calls quiet() first. Child processes (the local server,
Beam workers) inherit it through the environment. `--verbose` keeps everything."""
from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import warnings

# TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR. Our own failures are Python
# exceptions with messages of their own; TensorFlow's C++ ERROR lines on a healthy run are noise.
QUIET_TF_LOG_LEVEL = "3"
# Warnings the pinned stack raises on every run and a user can do nothing about (deprecations
# inside TFX, Beam, Keras and Google's client libraries).
NOISE_CATEGORIES = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
NOISE_MODULES = r"(google|tfx|apache_beam|keras|tf_keras|tensorflow|tensorflow_transform|tfx_bsl|kfp|ml_metadata)(\.|$)"


# Lines TensorFlow writes past TF_CPP_MIN_LOG_LEVEL (grappler logs through absl, whose C++
# threshold no environment variable reaches), dropped from standard error by filter_stderr().
NOISE_LINES = re.compile("|".join((
    r"op_level_cost_estimator\.cc.*PredictCost\(\)",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"oneDNN custom operations are on",
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"TF-TRT Warning: Could not find TensorRT",
    r"computation placer already registered",
    r"oneDNN supports DT_UINT8 only on platforms with AVX-512",
    r"Compiled the loaded model, but the compiled metrics have yet to be built",
    r"Examples artifact does not have payload_format custom property",
    r"Couldn't find python-snappy so the implementation of _TFRecordUtil",
    # libjpeg on a corrupt photo: the photo check rejects it and rejects.csv names it and why
    r"^Input file read error$",
)))


def quiet(verbose: bool = False) -> None:
    """Before TensorFlow loads: its C++ log threshold, Python's warnings filters, and the
    standard-error filter of known noise, for this process and (through the environment and the
    inherited file descriptor) its children."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    for category in NOISE_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning, module=NOISE_MODULES)
    os.environ["PYTHONWARNINGS"] = ",".join(f"ignore::{c.__name__}" for c in NOISE_CATEGORIES)
    filter_stderr(NOISE_LINES)


def filter_stderr(noise: re.Pattern) -> None:
    """Standard error (file descriptor 2, so C++ writes too) through a pipe whose reader drops
    the lines `noise` matches and passes every other line on, in order. At exit the pipe is
    drained, so no line of the process's own is lost."""
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def forward():
        with os.fdopen(read, "rb", buffering=0) as pipe, os.fdopen(real, "wb", buffering=0) as out:
            pending = b""
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if not noise.search(line.decode("utf-8", "replace")):
                        out.write(line + b"\n")
            if pending and not noise.search(pending.decode("utf-8", "replace")):
                out.write(pending)

    reader = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    reader.start()

    def drain():
        sys.stderr.flush()
        restored = os.dup(real)
        os.dup2(restored, 2)  # closes this process's end of the pipe: the reader sees EOF
        os.close(restored)
        reader.join(timeout=5)

    atexit.register(drain)
