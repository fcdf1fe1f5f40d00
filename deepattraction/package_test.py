"""The package's __init__ is the one owner of TF_USE_LEGACY_KERAS: any module of the package,
imported first in a process whose environment lacks it, makes TensorFlow's Keras tf-keras (Keras 2)."""
import os
import subprocess
import sys


def test_importing_the_package_picks_keras_2_without_the_environment():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import deepattraction.trainer.features, tensorflow as tf; print(tf.keras.Model.__module__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1].startswith("tf_keras.")
