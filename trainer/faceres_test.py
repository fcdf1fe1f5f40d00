"""FaceRes converted for the trainer: every weight of the package's TF.js graph copied, the
package's own runtime (TF.js) reproduced on real SCUT faces, and a wrong graph or tarball refused."""
import copy
import json
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import SCUT_DIR
from deepattraction import human
from deepattraction.trainer import faceres, features, finetune
from deepattraction.trainer import faceres_weights as fw
from deepattraction.trainer.inception_weights import read_weights
from deepattraction.trainer.model import ModelConfig, build_backbone, build_model

REFERENCE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "faceres_tfjs_scut.json")
PHOTOS = ("AF3", "AF6", "AM2", "AM4", "CF2", "CF3", "CM1", "CM2")
# TF.js (float32, its own conv kernels) against TensorFlow, with the depthwise batch-norm scale
# folded into the kernel: float32 rounding over 27 layers. Descriptor values are 0-6 (ReLU6 pooled).
DESCRIPTOR_ATOL = 1e-4
PROBABILITY_ATOL = 1e-5


def reference_photos() -> tuple[list[str], np.ndarray]:
    """Whole SCUT photos (350 px, the face filling most of it) resized to 224 px by Pillow's
    bilinear filter: [n, 224, 224, 3] float32 pixel values 0-255, as human feeds FaceRes."""
    size = features.BACKBONES["faceres"].image_size
    imgs = [np.asarray(Image.open(os.path.join(SCUT_DIR, "images", f"{p}.jpg")).convert("RGB")
                       .resize((size, size), Image.BILINEAR), np.float32) for p in PHOTOS]
    return list(PHOTOS), np.stack(imgs)


@pytest.fixture(scope="module")
def graph(faceres_weights):
    return read_weights(os.path.join(os.path.dirname(faceres_weights), fw.TFJS_DIR, "faceres.json"))


def test_every_graph_weight_is_copied(faceres_weights, graph):
    with open(os.path.join(os.path.dirname(faceres_weights), fw.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert (manifest["conv_layers"], manifest["depthwise_conv_layers"], manifest["dense_layers"],
            manifest["keras_layers_set"]) == (14, 13, 3, 30)
    assert manifest["source"]["tarball_sha256"] == human.TARBALL_SHA256
    assert "MIT" in manifest["source"]["license"] and manifest["input_range"] == [0.0, 255.0]
    _, tensors, _ = graph
    net = faceres.faceres()
    net.load_weights(faceres_weights)
    for i in range(1, len(faceres.BLOCKS) + 1):  # pointwise convs are stored as they are
        kernel, bias = net.get_layer(f"conv_pw_{i}").get_weights()
        np.testing.assert_array_equal(kernel, tensors[f"conv_pw_{i}/convolution/merged_input"])
        np.testing.assert_array_equal(bias, tensors[f"conv_pw_{i}_bn/batchnorm_1/sub"])
    np.testing.assert_array_equal(net.get_layer("conv_dw_5").get_weights()[0][:, :, :, 0],
                                  tensors["conv_dw_5/depthwise_kernel"][:, :, :, 0]
                                  * tensors["conv_dw_5_bn/batchnorm_1/mul"])
    np.testing.assert_array_equal(net.get_layer("age_pred").get_weights()[0], tensors["age_pred/kernel"])


def test_reproduces_the_package_runtime_on_real_faces(faceres_weights):
    """The converted graph, fed as the package feeds it, on the photos TF.js ran."""
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR} (../shared beside the checkout)"
    with open(REFERENCE_FILE) as f:
        ref = json.load(f)
    names, x = reference_photos()
    assert names == ref["photos"]
    net = faceres.faceres(source_input=False)
    net.load_weights(faceres_weights)
    descriptor = tf.keras.Model(net.input, net.get_layer(faceres.DESCRIPTOR_LAYER).output)(x).numpy()
    np.testing.assert_allclose(descriptor, ref["descriptor"], atol=DESCRIPTOR_ATOL, rtol=0)
    male, age = (o.numpy() for o in net(x, training=False))
    np.testing.assert_allclose(male[:, 0], ref["male_probability"], atol=PROBABILITY_ATOL)
    np.testing.assert_allclose(age, ref["age_softmax"], atol=PROBABILITY_ATOL)


def test_the_trainer_feeds_the_graph_as_its_source_trained_it(faceres_weights):
    """build_model's pixels layer and backbone: the same graph on BGR pixels minus the means."""
    _, x = reference_photos()
    x = x[:2]
    model = build_model(ModelConfig(backbone="faceres", weights=faceres_weights, task="ratio"), 224)
    got = finetune.backbone_of(model)(model.get_layer("pixels")(x), training=False).numpy()
    plain = faceres.faceres(source_input=False)
    plain.load_weights(faceres_weights)
    plain = tf.keras.Model(plain.input, plain.get_layer(faceres.DESCRIPTOR_LAYER).output)
    np.testing.assert_allclose(got, plain(x[..., ::-1] - np.float32(faceres.CAFFE_BGR_MEAN)).numpy(), rtol=1e-5,
                               atol=1e-6)
    assert np.abs(got - plain(x).numpy()).max() > 0.1  # not the package's own input


def test_features_choice_and_blocks(faceres_weights):
    feats = build_backbone(ModelConfig(backbone="faceres", weights=faceres_weights, faceres_features="feats"), 96)
    assert feats.output.shape[-1] == 256 and feats.layers[-1].name == faceres.FEATS_LAYER
    model = build_model(ModelConfig(backbone="faceres", weights=faceres_weights), 96)
    backbone = finetune.backbone_of(model)
    assert backbone.output.shape[-1] == 1024
    starts = finetune.block_starts(backbone, "faceres")
    assert len(starts) == len(faceres.BLOCKS) and backbone.layers[starts[-1]].name == faceres.DESCRIPTOR_LAYER
    trainable = finetune.set_trainable(model, "faceres", 2, batch_norm=False)
    assert trainable == 4  # two blocks: a depthwise and a pointwise conv each
    frozen, _, top = finetune.split_for_fine_tuning(model, "faceres", 2)  # what the Trainer computes once
    assert frozen.layers[-1].name == "conv_pw_11_relu" and not frozen.trainable_weights
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    scaled = model.get_layer("pixels")(x)
    whole, parts = model(x, training=False), top(frozen(scaled, training=False), training=False)
    for k in whole:
        np.testing.assert_allclose(parts[k].numpy(), whole[k].numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="faceres_features"):
        ModelConfig(backbone="faceres", faceres_features="logits")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        ModelConfig(backbone="faceres", weights="imagenet")


def test_a_different_graph_is_refused(graph):
    model_json, tensors, _ = graph
    restrided = copy.deepcopy(model_json)
    node = next(n for n in restrided["modelTopology"]["node"] if n["name"] == "conv_dw_4/depthwise")
    node["attr"]["strides"]["list"]["i"] = ["1", "1", "1", "1"]
    with pytest.raises(ValueError, match="conv_dw_4/depthwise .* stride 2"):
        fw.graph_weights(restrided, tensors)
    with pytest.raises(ValueError, match="weights not copied: \\['extra/kernel'\\]"):
        fw.graph_weights(model_json, {**tensors, "extra/kernel": np.zeros(3, np.float32)})
    reshaped = fw.graph_weights(model_json, tensors)
    reshaped["feats"] = [np.zeros((512, 256), np.float32), reshaped["feats"][1]]
    with pytest.raises(ValueError, match="faceres graph feats: shapes"):
        fw.load_into(faceres.faceres(), reshaped)


def test_a_tarball_other_than_the_pinned_one_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("not human")
    tgz = tmp_path / "human-3.3.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(readme, "package/README.md")
    with pytest.raises(ValueError, match=f"{tgz}: sha256 .* is not @vladmandic/human 3.3.6's tarball"):
        fw.fetch(str(tmp_path / "out"), tarball=str(tgz))
    assert not (tmp_path / "out" / fw.WEIGHTS_FILE).exists()


def test_fetch_again_reuses_the_manifest(faceres_weights):
    before = os.stat(faceres_weights).st_mtime_ns
    assert fw.fetch(os.path.dirname(faceres_weights), tarball="/nonexistent/human.tgz") == faceres_weights
    assert os.stat(faceres_weights).st_mtime_ns == before
