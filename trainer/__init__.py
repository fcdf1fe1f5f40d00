"""Pure model code: features, preprocessing, model, training and export. Never imports pipeline/."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
