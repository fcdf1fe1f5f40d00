"""Backbones and heads. Pure Keras: no I/O beyond loading backbone weights."""
from __future__ import annotations

import dataclasses
import os
import tempfile

import tensorflow as tf

from deepattraction.trainer import facenet, faceres, features, metrics

TASKS = ("ratio", "gender", "both")
# Where FaceNet's head sits. "pool": its penultimate layer, the 1792-d average pool under the
# 128-d embedding, as Inception's head sits on the pool under its classifier; "embedding": the
# embedding itself, trained to tell identities apart, which keeps less of what the ratio needs
# (README, Training: on SCUT a ridge regression on each correlates 0.875 and 0.900 with the mean score).
FACENET_FEATURES = ("pool", "embedding")
# Where FaceRes's head sits. "descriptor": its 1024-d global pool, the identity descriptor (MobileNet
# trained on VGGFace2 identities); "feats": the 256-d ReLU layer its age and gender outputs share.
FACERES_FEATURES = ("descriptor", "feats")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = "inception_v3"
    weights: str = "none"  # "none", "imagenet" (download, production only) or a weights-file URI
    task: str = "both"
    head_layers: int = 1  # dense layers on the penultimate layer, the output layer included
    head_width: int = 256
    dropout: float = 0.2
    facenet_features: str = "pool"
    faceres_features: str = "descriptor"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} not in {TASKS}")
        if not 1 <= self.head_layers <= 3:
            raise ValueError(f"head_layers must be 1, 2 or 3, got {self.head_layers}")
        if self.backbone not in features.BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}")
        if self.facenet_features not in FACENET_FEATURES:
            raise ValueError(f"facenet_features {self.facenet_features!r} not in {FACENET_FEATURES}")
        if self.faceres_features not in FACERES_FEATURES:
            raise ValueError(f"faceres_features {self.faceres_features!r} not in {FACERES_FEATURES}")
        if self.backbone == "faceres" and self.weights == "imagenet":
            raise ValueError("backbone 'faceres' has no ImageNet weights: use weights=none or the file from "
                             "`deepattraction weights fetch faceres DIR` (DIR/faceres.h5)")
        if self.backbone == "facenet" and self.weights == "imagenet":
            raise ValueError("backbone 'facenet' has no ImageNet weights: use weights=none or the file from "
                             "`deepattraction weights fetch facenet DIR` (DIR/facenet_inception_resnet_v1.h5)")

    @property
    def outputs(self) -> tuple[str, ...]:
        return {"ratio": (features.RATIO_LABEL,), "gender": (features.GENDER_LABEL,),
                "both": (features.RATIO_LABEL, features.GENDER_LABEL)}[self.task]


def _local_copy(uri: str) -> str:
    """Keras reads weights from local files; copy gs:// (or any tf.io.gfile URI) first."""
    if "://" not in uri:
        return uri
    local = os.path.join(tempfile.mkdtemp(prefix="weights-"), os.path.basename(uri))
    tf.io.gfile.copy(uri, local, overwrite=True)
    return local


def build_backbone(cfg: ModelConfig, image_size: int) -> tf.keras.Model:
    """The backbone up to its penultimate layer: InceptionV3's global pool; FaceNet's global pool
    or its 128-d embedding (cfg.facenet_features); FaceRes's descriptor or its age/gender
    features (cfg.faceres_features)."""
    if cfg.backbone == "facenet":
        base = facenet.inception_resnet_v1(image_size)
    elif cfg.backbone == "faceres":
        base = faceres.faceres(image_size)
    else:
        keras_weights = "imagenet" if cfg.weights == "imagenet" else None
        base = tf.keras.applications.InceptionV3(
            include_top=False, weights=keras_weights, input_shape=(image_size, image_size, 3), pooling="avg")
    if cfg.weights not in ("none", "imagenet", ""):
        # A recipe that names pretrained weights never trains from random ones in silence.
        if not tf.io.gfile.exists(cfg.weights):
            raise FileNotFoundError(f"pretrained weights {cfg.weights} do not exist (backbone {cfg.backbone}; "
                                    f"`deepattraction weights fetch` writes them, the container image carries them)")
        base.load_weights(_local_copy(cfg.weights))  # the whole network, as the file stores it
    if cfg.backbone == "facenet" and cfg.facenet_features == "pool":
        return tf.keras.Model(base.input, base.get_layer(facenet.POOL_LAYER).output, name=base.name)
    if cfg.backbone == "faceres":
        layer = faceres.DESCRIPTOR_LAYER if cfg.faceres_features == "descriptor" else faceres.FEATS_LAYER
        return tf.keras.Model(base.input, base.get_layer(layer).output, name=base.name)
    return base


PIXELS_LAYER = "pixels"  # pixel values 0-255 (the Transform's crop) to the backbone's range


def build_model(cfg: ModelConfig, image_size: int, ratio_prior: float = 0.5, male_prior: float = 0.5) -> tf.keras.Model:
    """Pixel scaling + backbone + dense head. The input is the Transform's crop (values 0-255);
    output biases start at the training priors, so step 0 is the best-constant baseline and
    training can only add to it."""
    image = tf.keras.Input((image_size, image_size, 3), name=features.IMAGE_XF)
    lo, hi = features.BACKBONES[cfg.backbone].pixel_range
    x = tf.keras.layers.Rescaling((hi - lo) / 255.0, offset=lo, name=PIXELS_LAYER)(image)
    x = build_backbone(cfg, image_size)(x)
    for i in range(cfg.head_layers - 1):
        x = tf.keras.layers.Dense(cfg.head_width, activation="relu", name=f"head_dense_{i}")(x)
        x = tf.keras.layers.Dropout(cfg.dropout, name=f"head_dropout_{i}")(x)
    priors = {features.RATIO_LABEL: ratio_prior, features.GENDER_LABEL: male_prior}
    outputs = {}
    for name in cfg.outputs:
        logit = tf.keras.layers.Dense(
            1, name=f"{name}_logit", kernel_initializer="zeros",
            bias_initializer=tf.keras.initializers.Constant(metrics.logit(priors[name])))(x)
        outputs[name] = tf.keras.layers.Activation("sigmoid", dtype="float32", name=name)(logit)  # [batch, 1]
    return tf.keras.Model(image, outputs, name=f"deepattraction_{cfg.backbone}")


def on_pixels(model: tf.keras.Model, part: tf.keras.Model) -> tf.keras.Model:
    """`part` (the backbone, or its lower blocks) fed as the model feeds it: the model's input,
    pixel values 0-255, scaled by the model's own pixels layer. Shares the model's layers."""
    image = tf.keras.Input(model.input.shape[1:], name=features.IMAGE_XF)
    return tf.keras.Model(image, part(model.get_layer(PIXELS_LAYER)(image)), name=f"{part.name}_on_pixels")
