"""Which backbone layers train: the study's schedule freezes the backbone while the head
learns, then unfreezes its top blocks at a lower learning rate."""
from __future__ import annotations

import re

import tensorflow as tf

# The last layer of each block, in order; a block is every layer after the previous block's end.
BLOCK_ENDS = {
    "inception_v3": re.compile(r"^mixed\d+$"),  # mixed0 .. mixed10: the Inception modules' concats
    "facenet": re.compile(r"^(Mixed_6a|Mixed_7a|Block(35|17|8)_\d+_ScaleSum)$"),  # residual sums; a ReLU may follow
    "faceres": re.compile(r"^conv_pw_\d+_relu$"),  # MobileNet v1's 13 depthwise-separable blocks
}


def backbone_of(model: tf.keras.Model) -> tf.keras.Model:
    """build_model nests the backbone as one layer: the only sub-model."""
    subs = [layer for layer in model.layers if isinstance(layer, tf.keras.Model)]
    if len(subs) != 1:
        raise ValueError(f"expected one backbone sub-model in {model.name}, found {[s.name for s in subs]}")
    return subs[0]


def block_starts(backbone: tf.keras.Model, name: str) -> list[int]:
    """Index in backbone.layers of the first layer of each block after the stem."""
    ends = [i for i, layer in enumerate(backbone.layers) if BLOCK_ENDS[name].match(layer.name)]
    if not ends:
        raise ValueError(f"no block ends matching {BLOCK_ENDS[name].pattern} in backbone {backbone.name}")
    return [i + 1 for i in ends]


def top_start(starts: list[int], blocks: int) -> int:
    """Index of the first layer of the top `blocks` blocks (0: all the backbone, stem included)."""
    return starts[-blocks - 1] if blocks < len(starts) else 0


def set_trainable(model: tf.keras.Model, backbone_name: str, blocks: int, batch_norm: bool) -> int:
    """Backbone: blocks < 0 trains all of it, 0 none, N its top N blocks (the head always trains).

    batch_norm=False keeps every BatchNorm layer frozen, i.e. in inference mode with its
    pretrained statistics: small fine-tuning batches would otherwise overwrite them.
    Returns how many backbone layers with weights train."""
    backbone = backbone_of(model)
    layers = backbone.layers
    if blocks < 0:
        first = 0
    elif blocks == 0:
        first = len(layers)
    else:
        first = top_start(block_starts(backbone, backbone_name), blocks)
    backbone.trainable = True
    for i, layer in enumerate(layers):
        layer.trainable = i >= first and (batch_norm or not isinstance(layer, tf.keras.layers.BatchNormalization))
    return sum(1 for layer in layers if layer.trainable and layer.weights)


def block_rate_scales(model: tf.keras.Model, backbone_name: str, blocks: int, decay: float) -> list:
    """(variable, factor) for each weight of the top `blocks` blocks below the top one: the k-th
    block down learns at decay**k of the phase's rate, so lower blocks, whose pretrained features
    are more general, move less. The top block, anything above it, and the head keep the rate."""
    if blocks <= 1 or decay == 1.0:
        return []
    backbone = backbone_of(model)
    starts = block_starts(backbone, backbone_name)
    return [(v, decay ** k) for k in range(1, min(blocks, len(starts)))
            for layer in backbone.layers[top_start(starts, k + 1):top_start(starts, k)]
            for v in layer.trainable_weights]


class ScaledAdam(tf.keras.optimizers.Adam):
    """Adam with a learning rate per variable. Adam's step is linear in the rate and its moment
    estimates do not depend on it, so a variable's step at factor x the rate is Adam's step x factor."""

    def __init__(self, learning_rate, rate_scales: list, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self._rate_scales = {self._var_key(v): float(s) for v, s in rate_scales}

    def update_step(self, gradient, variable):
        factor = self._rate_scales.get(self._var_key(variable), 1.0)
        if factor == 1.0:
            return super().update_step(gradient, variable)
        before = tf.identity(variable)
        super().update_step(gradient, variable)
        variable.assign(before + (variable - before) * tf.cast(factor, variable.dtype))


def head_on_features(model: tf.keras.Model) -> tf.keras.Model:
    """The model's head alone, on backbone outputs. It shares the model's layers, so fitting it on
    features computed once is the head phase without running a frozen backbone every epoch."""
    backbone = backbone_of(model)
    consumers = [layer for layer in model.layers if layer is not backbone
                 and not isinstance(layer, tf.keras.layers.InputLayer)
                 and layer.input._keras_history.layer is backbone]
    return tf.keras.Model(consumers[0].input, model.output, name=f"{model.name}_head")


def split_for_fine_tuning(model: tf.keras.Model, backbone_name: str, blocks: int) -> tuple[tf.keras.Model,
                                                                                           tf.keras.Model,
                                                                                           tf.keras.Model]:
    """(frozen, top_backbone, top): the backbone below its top `blocks` blocks, those blocks, and
    those blocks with the head.

    Both share the model's layers. The frozen part runs in inference mode, so its outputs can be
    computed once and `top` fine-tuned on them: each epoch then costs only the top blocks."""
    if blocks <= 0:
        raise ValueError("split_for_fine_tuning needs at least one top block")
    backbone = backbone_of(model)
    starts = block_starts(backbone, backbone_name)
    if blocks >= len(starts):
        raise ValueError(f"{backbone_name} has {len(starts)} blocks after its stem; cannot split off {blocks}")
    cut = backbone.layers[top_start(starts, blocks) - 1].output  # the end of the last frozen block
    frozen = tf.keras.Model(backbone.input, cut, name=f"{backbone.name}_frozen")
    top_backbone = tf.keras.Model(cut, backbone.output, name=f"{backbone.name}_top")
    outputs = head_on_features(model)(top_backbone.output)
    # Named as the model's outputs, so losses, metrics and early stopping find them by name.
    named = {k: tf.keras.layers.Activation("linear", dtype="float32", name=k)(v) for k, v in outputs.items()}
    return frozen, top_backbone, tf.keras.Model(top_backbone.input, named, name=f"{model.name}_top")
