"""TF Serving's model layout: <base_path>/<version>/saved_model.pb, highest version served."""
from __future__ import annotations

import os

import tensorflow as tf


def versions(base_path: str) -> list[int]:
    """Numeric (ASCII digits only: int() refuses "²", which isdigit() accepts) version folders that
    hold a SavedModel."""
    if not tf.io.gfile.isdir(base_path):
        return []
    out = []
    for name in tf.io.gfile.listdir(base_path):
        name = name.rstrip("/")
        if name.isascii() and name.isdigit() and tf.io.gfile.exists(os.path.join(base_path, name, "saved_model.pb")):
            out.append(int(name))
    return sorted(out)


def resolve(path: str) -> str:
    """A SavedModel folder as is, or the latest version under a model base path."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    vs = versions(path)
    if not vs:
        raise FileNotFoundError(f"{path}: neither a SavedModel nor a model base path with numeric versions")
    return os.path.join(path, str(vs[-1]))
