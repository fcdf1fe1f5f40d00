"""The npm package `nsfwjs` (MIT) as a source of Inception v3 weights: download its tarball from
the npm registry and unwrap the TF.js layers model it ships as JavaScript modules.

nsfwjs bundles each TF.js file (model.json, weight shards) as a UMD module whose export is the
JSON object or a base64 string; Node evaluates each one in an empty sandbox (no require, no
file system) and we write the standard TF.js layout: model.json plus binary shards."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
import tempfile

from deepattraction.weights import check_sha256, confined_name

PACKAGE, VERSION = "nsfwjs", "4.3.0"
MODEL_DIR = "package/dist/models/inception_v3"  # inside the tarball
# `npm pack nsfwjs@4.3.0` as the npm registry serves it: any other bytes are refused before use.
TARBALL_SHA256 = "4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f"

# Evaluates one UMD module in a sandbox and prints its export: JSON, or the base64 string as is.
_UNWRAP_JS = """
const vm = require("vm"), fs = require("fs");
const sandbox = {module: {exports: {}}}; sandbox.exports = sandbox.module.exports;
vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"), sandbox, {timeout: 60000});
const out = sandbox.module.exports;
process.stdout.write(typeof out === "string" ? out : JSON.stringify(out));
"""


def _run(cmd: list[str], cwd: str | None = None) -> bytes:
    try:
        return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True).stdout
    except FileNotFoundError as e:
        raise RuntimeError(f"{cmd[0]} not found: nsfwjs weights need Node.js and npm on PATH") from e
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{' '.join(cmd)} failed: {e.stderr.decode(errors='replace')[-2000:]}") from e


def npm_pack(dest: str) -> str:
    """Downloads nsfwjs's tarball from the npm registry into dest; returns its path."""
    name = _run(["npm", "pack", "--silent", f"{PACKAGE}@{VERSION}"], cwd=dest).decode().strip().splitlines()[-1]
    return os.path.join(dest, name)


def _unwrap(js_path: str) -> bytes:
    return _run(["node", "-e", _UNWRAP_JS, js_path])


def _members(tar: tarfile.TarFile, tarball: str) -> dict[str, tarfile.TarInfo]:
    """The model folder's regular files by their name inside it. Every member name must stay inside
    the archive, and a link in the model folder refuses the archive: nothing is extracted by the
    archive's own names, only read by ours."""
    found = {}
    for m in tar.getmembers():
        name = confined_name(m.name, f"{tarball}: member")
        if not name.startswith(MODEL_DIR + "/"):
            continue
        if m.issym() or m.islnk():
            raise ValueError(f"{tarball}: member {m.name!r} is a link; refusing the archive")
        if m.isfile():
            found[name[len(MODEL_DIR) + 1:]] = m
    return found


def unpack_inception(tarball: str, out_dir: str, pinned_sha256: str = TARBALL_SHA256) -> str:
    """Writes nsfwjs's Inception v3 as a TF.js layers model (model.json + shards) into out_dir;
    returns the model.json path. The tarball must be the pinned one (checked before it is opened):
    its JavaScript runs in Node, whose `vm` is no security boundary, so only known code may run.
    Shard names from its model.json must be plain file names."""
    check_sha256(tarball, pinned_sha256, f"{PACKAGE} {VERSION} tarball")
    with tempfile.TemporaryDirectory(prefix="nsfwjs-") as tmp, tarfile.open(tarball) as tar:
        members = _members(tar, tarball)
        if not members:
            raise ValueError(f"{tarball}: no {MODEL_DIR}/ in this tarball; is it {PACKAGE} {VERSION}?")

        def unwrap(name: str) -> bytes:
            if name not in members:
                raise ValueError(f"{tarball}: {MODEL_DIR}/{name} is missing")
            js = os.path.join(tmp, "module.js")
            with tar.extractfile(members[name]) as src, open(js, "wb") as dst:
                dst.write(src.read())
            return _unwrap(js)

        model = json.loads(unwrap("model.min.js"))
        if "modelTopology" not in model or "weightsManifest" not in model:
            raise ValueError(f"{tarball}: {MODEL_DIR}/model.min.js is not a TF.js layers model")
        shards = [confined_name(shard, f"{tarball}: weight shard", plain=True)
                  for group in model["weightsManifest"] for shard in group["paths"]]
        os.makedirs(out_dir, exist_ok=True)
        for shard in shards:
            data = base64.b64decode(unwrap(shard + ".min.js"), validate=True)
            with open(os.path.join(out_dir, shard), "wb") as f:
                f.write(data)
        path = os.path.join(out_dir, "model.json")
        with open(path, "w") as f:
            json.dump(model, f)
    return path


def fetch_inception(out_dir: str, tarball: str | None = None) -> tuple[str, str]:
    """The TF.js Inception v3 of nsfwjs in out_dir, from the npm registry unless a downloaded
    tarball is given (offline use); returns (model.json path, tarball sha256)."""
    if tarball is not None:
        return unpack_inception(tarball, out_dir), TARBALL_SHA256
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
        return unpack_inception(npm_pack(tmp), out_dir), TARBALL_SHA256
