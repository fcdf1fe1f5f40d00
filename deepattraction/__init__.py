"""DeepAttraction: like ratio and gender from a profile photo, as a TFX pipeline."""
import os

# The one place that picks Keras 2 (tf-keras): the Transform layer and every model here are tf-keras
# objects, and TensorFlow reads this variable when it first loads Keras. Every module of the package
# runs this file first, and child processes (Beam workers, the served model) inherit it. Only a
# process that loads TensorFlow before this package needs it set outside: the image's ENV, Dockerfile.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the command line sets its own: logs.py

__version__ = "0.1.0"
