"""nsfwjs's Inception v3 converted for the trainer: every layer copied, nsfwjs's own outputs
reproduced, and features on real faces far from what random weights give."""
import copy
import glob
import json
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data as skdata

from conftest import SCUT_DIR
from deepattraction import nsfwjs
from deepattraction.trainer import inception_weights as iw
from deepattraction.trainer import model

# nsfwjs 4.3.0's own runtime (@tensorflow/tfjs 4.22, CPU backend: `nsfwjs.load("InceptionV3")`,
# then `model.predict`) on the astronaut photo resized as _astronaut() does, in [0, 1]:
# Drawing, Hentai, Neutral, Porn, Sexy.
NSFWJS_ASTRONAUT = (0.004328350070863962, 0.0017428526189178228, 0.9849169850349426,
                    0.006308736279606819, 0.0027031181380152702)


@pytest.fixture(scope="module")
def source(inception_weights):
    return iw.read_tfjs(os.path.join(os.path.dirname(inception_weights), iw.TFJS_DIR, "model.json"))


def test_trainer_loads_every_conv_and_batch_norm(inception_weights, source):
    with open(os.path.join(os.path.dirname(inception_weights), iw.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert (manifest["imagenet_conv_layers"], manifest["retuned_conv_layers"], manifest["keras_layers_set"]) == (51, 43,
                                                                                                                 188)
    assert manifest["input_range"] == [-1.0, 1.0] and manifest["nsfwjs_input_range"] == [0.0, 1.0]
    base = model.build_backbone(model.ModelConfig(weights=inception_weights), 299)  # the trainer's own load path
    mapping = iw.layer_mapping(source, base)
    assert sorted(mapping.values()) == sorted(layer.name for layer in base.layers if layer.weights)
    first_conv, first_bn = "conv2d_1", "batch_normalization_1"  # rescaled for [-1, 1] input
    for s, d in mapping.items():
        if s not in (first_conv, first_bn):
            for want, got in zip(source.weights(s), base.get_layer(d).get_weights(), strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"{s} -> {d}")
    np.testing.assert_allclose(base.get_layer(mapping[first_conv]).get_weights()[0], source.weights(first_conv)[0] / 2)


def _astronaut() -> np.ndarray:
    img = Image.fromarray(skdata.astronaut()).resize((299, 299), Image.BILINEAR)
    return np.asarray(img, np.float32)[None] / 255.0


def test_reproduces_nsfwjs_on_our_pixel_range(inception_weights, source):
    """The weights file fed [-1, 1], with nsfwjs's dense top on it, gives what nsfwjs gives on
    [0, 1]: the copy, the dequantization and the input rescaling are all exact."""
    probs = iw.nsfwjs_classifier(inception_weights, source)(_astronaut() * 2.0 - 1.0).numpy()[0]
    np.testing.assert_allclose(probs, NSFWJS_ASTRONAUT, atol=1e-5)
    assert iw.NSFWJS_CLASSES[int(np.argmax(probs))] == "Neutral"


def test_wiring_or_shape_mismatch_fails_loudly(source):
    base = iw.backbone()
    rewired = copy.deepcopy(source)
    mixed0 = rewired.layer("mixed0")
    mixed0["inbound_nodes"][0].reverse()  # same layers, other concatenation order
    with pytest.raises(ValueError, match="wired differently"):
        iw.layer_mapping(rewired, base)
    reshaped = iw.TfjsModel(source.layers,
                            {**source.tensors, "conv2d_94/kernel": np.zeros((1, 1, 2047, 192), np.float32)},
                            source.quantization)
    with pytest.raises(ValueError, match="conv2d_94 -> .*shapes"):
        iw.load_into(reshaped, base)


def test_a_tarball_other_than_the_pinned_one_is_refused_before_use(tmp_path):
    """Any other bytes (here a tarball that even holds nsfwjs's model folder) stop the fetch before
    the tarball is opened; with its own hash pinned, a tarball without the model is named as such."""
    readme = tmp_path / "README.md"
    readme.write_text("not nsfwjs")
    tgz = tmp_path / "other-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(readme, "package/dist/models/inception_v3/model.min.js")
    with pytest.raises(ValueError, match=f"{tgz}: sha256 {iw.sha256(str(tgz))} is not the pinned nsfwjs 4.3.0 "
                                         f"tarball \\({nsfwjs.TARBALL_SHA256}\\)"):
        iw.fetch(str(tmp_path / "out"), tarball=str(tgz))
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty-1.0.0.tgz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(readme, "package/README.md")
    with pytest.raises(ValueError, match=f"{empty}: no package/dist/models/inception_v3/"):
        nsfwjs.unpack_inception(str(empty), str(tmp_path / "out"), pinned_sha256=iw.sha256(str(empty)))


def test_shard_names_in_the_manifest_stay_in_its_folder(tmp_path):
    (tmp_path / "secret").write_bytes(b"\0" * 4)
    folder = tmp_path / "tfjs"
    folder.mkdir()
    model = {"modelTopology": {}, "weightsManifest": [
        {"paths": ["../secret"], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}]}]}
    (folder / "model.json").write_text(json.dumps(model))
    with pytest.raises(ValueError, match="weight shard '../secret' is not a plain file name"):
        iw.read_tfjs(str(folder / "model.json"))


def test_a_conversion_from_other_tarball_bytes_is_not_reused(inception_weights, tmp_path):
    """The manifest vouches for the weights only if they were made from the pinned tarball."""
    folder = os.path.dirname(inception_weights)
    with open(os.path.join(folder, iw.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert manifest["source"]["tarball_sha256"] == nsfwjs.TARBALL_SHA256
    args = (str(tmp_path / iw.MANIFEST_FILE), inception_weights, tuple(manifest["input_range"]))
    (tmp_path / iw.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert iw._manifest_is_current(*args)
    manifest["source"]["tarball_sha256"] = "0" * 64
    (tmp_path / iw.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert not iw._manifest_is_current(*args)


def test_fetch_again_reuses_the_manifest(inception_weights):
    before = os.stat(inception_weights).st_mtime_ns
    # A tarball that does not exist would fail if it were read.
    assert iw.fetch(os.path.dirname(inception_weights), tarball="/nonexistent/nsfwjs.tgz") == inception_weights
    assert os.stat(inception_weights).st_mtime_ns == before


def _views(paths: list[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """Each face photo cropped at random (80-90 %), maybe mirrored, brightness and contrast
    jittered, in [-1, 1]."""
    out = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        side = int(img.width * rng.uniform(0.8, 0.9))
        x0, y0 = rng.integers(0, img.width - side + 1, 2)
        img = img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = np.asarray(img, np.float32) / 127.5 - 1.0
        out.append(np.clip(x * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1), -1.0, 1.0))
    return np.stack(out)


def _same_over_other_distance(net: tf.keras.Model, a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine distance between two views of the same face over that between different
    faces (embeddings centred on the batch mean): 0 is perfect, about 1 is blind."""
    ea, eb = (net(x, training=False).numpy() for x in (a, b))
    ea, eb = ea - ea.mean(0), eb - eb.mean(0)
    sim = (ea / np.linalg.norm(ea, axis=1, keepdims=True)) @ (eb / np.linalg.norm(eb, axis=1, keepdims=True)).T
    dist = 1.0 - sim
    return float(np.diag(dist).mean() / dist[~np.eye(len(dist), dtype=bool)].mean())


def test_features_are_real_on_faces_unlike_random_weights(inception_weights):
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR} (../shared beside the checkout)"
    rng = np.random.default_rng(7)
    paths = [p for group in ("AF", "AM", "CF", "CM")
             for p in rng.choice(sorted(glob.glob(os.path.join(SCUT_DIR, "images", f"{group}*.jpg"))), 8,
                                 replace=False)]
    size = 128
    a, b = _views(paths, size, rng), _views(paths, size, rng)
    tf.keras.utils.set_random_seed(7)
    random_net = model.build_backbone(model.ModelConfig(weights="none"), size)
    nsfwjs_net = model.build_backbone(model.ModelConfig(weights=inception_weights), size)
    random_ratio, nsfwjs_ratio = (_same_over_other_distance(net, a, b) for net in (random_net, nsfwjs_net))
    print(f"same/other-face distance: nsfwjs {nsfwjs_ratio:.3f}, random weights {random_ratio:.3f}")
    assert nsfwjs_ratio < 0.6 * random_ratio, (nsfwjs_ratio, random_ratio)
