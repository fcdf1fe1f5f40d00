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

from deepattraction.weights import sha256

PACKAGE, VERSION = "nsfwjs", "4.3.0"
MODEL_DIR = "package/dist/models/inception_v3"  # inside the tarball

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


def unpack_inception(tarball: str, out_dir: str) -> str:
    """Writes nsfwjs's Inception v3 as a TF.js layers model (model.json + shards) into out_dir;
    returns the model.json path."""
    with tempfile.TemporaryDirectory(prefix="nsfwjs-") as tmp:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(MODEL_DIR + "/")]
            if not members:
                raise ValueError(f"{tarball}: no {MODEL_DIR}/ in this tarball; is it {PACKAGE} {VERSION}?")
            tar.extractall(tmp, members=members, filter="data")
        src = os.path.join(tmp, MODEL_DIR)
        model = json.loads(_unwrap(os.path.join(src, "model.min.js")))
        if "modelTopology" not in model or "weightsManifest" not in model:
            raise ValueError(f"{tarball}: {MODEL_DIR}/model.min.js is not a TF.js layers model")
        os.makedirs(out_dir, exist_ok=True)
        for group in model["weightsManifest"]:
            for shard in group["paths"]:
                js = os.path.join(src, shard + ".min.js")
                if not os.path.exists(js):
                    raise ValueError(f"{tarball}: weight shard {MODEL_DIR}/{shard}.min.js is missing")
                with open(os.path.join(out_dir, shard), "wb") as f:
                    f.write(base64.b64decode(_unwrap(js), validate=True))
        path = os.path.join(out_dir, "model.json")
        with open(path, "w") as f:
            json.dump(model, f)
    return path


def fetch_inception(out_dir: str, tarball: str | None = None) -> tuple[str, str]:
    """The TF.js Inception v3 of nsfwjs in out_dir, from the npm registry unless a downloaded
    tarball is given (offline use); returns (model.json path, tarball sha256)."""
    if tarball is not None:
        return unpack_inception(tarball, out_dir), sha256(tarball)
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
        tgz = npm_pack(tmp)
        return unpack_inception(tgz, out_dir), sha256(tgz)
