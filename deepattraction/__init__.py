"""DeepAttraction: like ratio and gender from a profile photo, as a TFX pipeline."""
import os

# The Transform layer is a tf-keras (Keras 2) object; this must be set before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
