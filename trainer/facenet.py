"""Inception-ResNet-v1 (FaceNet), built in code with the layer names of the Keras conversion
`facenet_keras.h5` (D. Sandberg's 20170512-110547 MS-Celeb model, converted by
nyoki-mtl/keras-facenet), so its weights copy over layer by layer by name.

The conversion itself cannot be loaded by tf.keras (it pickles Python lambdas); here each
residual "ScaleSum" is a built-in Rescaling + Add, so the model saves and serves like any other.
The input contract is the trainer's: pixels in [-1, 1]; the per-image standardisation the
original was trained with ("prewhiten") is the model's first layer.
"""
from __future__ import annotations

import tensorflow as tf

EMBEDDING_SIZE = 128
# Valid-padding stride-2 stages: 75 px is the smallest input leaving a 1x1 map before pooling.
MIN_IMAGE_SIZE = 75
BN_MOMENTUM = 0.995  # the original's (TF-slim) batch-norm settings
BN_EPSILON = 0.001
MODEL_NAME = "inception_resnet_v1"
POOL_LAYER = "AvgPool"  # the 1792-d global average pool under the embedding


@tf.keras.utils.register_keras_serializable(package="deepattraction")
class Prewhiten(tf.keras.layers.Layer):
    """Sandberg's `prewhiten`: per-image (x - mean) / max(std, 1/sqrt(n)) over all pixels and
    channels, on [0, 255] pixels; the input's [-1, 1] is mapped back to [0, 255] first so the
    std floor means what it meant in training."""

    def call(self, x):
        return tf.image.per_image_standardization((x + 1.0) * 127.5)


def _conv_bn(x, filters: int, kernel, name: str, strides: int = 1, padding: str = "same"):
    x = tf.keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = tf.keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False,
                                           name=f"{name}_BatchNorm")(x)
    return tf.keras.layers.Activation("relu", name=f"{name}_Activation")(x)


def _residual(x, branches: list, block: str, scale: float, activation: bool = True):
    """x + scale * conv1x1(concat(branches)): the Inception-ResNet unit."""
    mixed = tf.keras.layers.Concatenate(axis=3, name=f"{block}_Concatenate")(branches)
    up = tf.keras.layers.Conv2D(x.shape[-1], 1, padding="same", use_bias=True, name=f"{block}_Conv2d_1x1")(mixed)
    up = tf.keras.layers.Rescaling(scale, name=f"{block}_Scale")(up)
    x = tf.keras.layers.Add(name=f"{block}_ScaleSum")([x, up])
    return tf.keras.layers.Activation("relu", name=f"{block}_Activation")(x) if activation else x


def _block35(x, block: str):
    b0 = _conv_bn(x, 32, 1, f"{block}_Branch_0_Conv2d_1x1")
    b1 = _conv_bn(x, 32, 1, f"{block}_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 32, 3, f"{block}_Branch_1_Conv2d_0b_3x3")
    b2 = _conv_bn(x, 32, 1, f"{block}_Branch_2_Conv2d_0a_1x1")
    b2 = _conv_bn(b2, 32, 3, f"{block}_Branch_2_Conv2d_0b_3x3")
    b2 = _conv_bn(b2, 32, 3, f"{block}_Branch_2_Conv2d_0c_3x3")
    return _residual(x, [b0, b1, b2], block, 0.17)


def _block17(x, block: str):
    b0 = _conv_bn(x, 128, 1, f"{block}_Branch_0_Conv2d_1x1")
    b1 = _conv_bn(x, 128, 1, f"{block}_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 128, (1, 7), f"{block}_Branch_1_Conv2d_0b_1x7")
    b1 = _conv_bn(b1, 128, (7, 1), f"{block}_Branch_1_Conv2d_0c_7x1")
    return _residual(x, [b0, b1], block, 0.1)


def _block8(x, block: str, scale: float = 0.2, activation: bool = True):
    b0 = _conv_bn(x, 192, 1, f"{block}_Branch_0_Conv2d_1x1")
    b1 = _conv_bn(x, 192, 1, f"{block}_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 192, (1, 3), f"{block}_Branch_1_Conv2d_0b_1x3")
    b1 = _conv_bn(b1, 192, (3, 1), f"{block}_Branch_1_Conv2d_0c_3x1")
    return _residual(x, [b0, b1], block, scale, activation)


def inception_resnet_v1(image_size: int = 160, dropout: float = 0.2) -> tf.keras.Model:
    """[batch, size, size, 3] pixels in [-1, 1] -> [batch, 128] FaceNet embedding (the
    Bottleneck_BatchNorm output, not L2-normalised: the heads learn their own scale)."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"Inception-ResNet-v1 needs images of at least {MIN_IMAGE_SIZE} px, got {image_size}")
    image = tf.keras.Input((image_size, image_size, 3), name="image")
    x = Prewhiten(name="Prewhiten")(image)
    x = _conv_bn(x, 32, 3, "Conv2d_1a_3x3", strides=2, padding="valid")
    x = _conv_bn(x, 32, 3, "Conv2d_2a_3x3", padding="valid")
    x = _conv_bn(x, 64, 3, "Conv2d_2b_3x3")
    x = tf.keras.layers.MaxPooling2D(3, strides=2, name="MaxPool_3a_3x3")(x)
    x = _conv_bn(x, 80, 1, "Conv2d_3b_1x1", padding="valid")
    x = _conv_bn(x, 192, 3, "Conv2d_4a_3x3", padding="valid")
    x = _conv_bn(x, 256, 3, "Conv2d_4b_3x3", strides=2, padding="valid")
    for i in range(1, 6):
        x = _block35(x, f"Block35_{i}")

    b0 = _conv_bn(x, 384, 3, "Mixed_6a_Branch_0_Conv2d_1a_3x3", strides=2, padding="valid")
    b1 = _conv_bn(x, 192, 1, "Mixed_6a_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 192, 3, "Mixed_6a_Branch_1_Conv2d_0b_3x3")
    b1 = _conv_bn(b1, 256, 3, "Mixed_6a_Branch_1_Conv2d_1a_3x3", strides=2, padding="valid")
    b2 = tf.keras.layers.MaxPooling2D(3, strides=2, name="Mixed_6a_Branch_2_MaxPool_1a_3x3")(x)
    x = tf.keras.layers.Concatenate(axis=3, name="Mixed_6a")([b0, b1, b2])
    for i in range(1, 11):
        x = _block17(x, f"Block17_{i}")

    b0 = _conv_bn(x, 256, 1, "Mixed_7a_Branch_0_Conv2d_0a_1x1")
    b0 = _conv_bn(b0, 384, 3, "Mixed_7a_Branch_0_Conv2d_1a_3x3", strides=2, padding="valid")
    b1 = _conv_bn(x, 256, 1, "Mixed_7a_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 256, 3, "Mixed_7a_Branch_1_Conv2d_1a_3x3", strides=2, padding="valid")
    b2 = _conv_bn(x, 256, 1, "Mixed_7a_Branch_2_Conv2d_0a_1x1")
    b2 = _conv_bn(b2, 256, 3, "Mixed_7a_Branch_2_Conv2d_0b_3x3")
    b2 = _conv_bn(b2, 256, 3, "Mixed_7a_Branch_2_Conv2d_1a_3x3", strides=2, padding="valid")
    b3 = tf.keras.layers.MaxPooling2D(3, strides=2, name="Mixed_7a_Branch_3_MaxPool_1a_3x3")(x)
    x = tf.keras.layers.Concatenate(axis=3, name="Mixed_7a")([b0, b1, b2, b3])
    for i in range(1, 6):
        x = _block8(x, f"Block8_{i}")
    x = _block8(x, "Block8_6", scale=1.0, activation=False)

    x = tf.keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    x = tf.keras.layers.Dropout(dropout, name="Dropout")(x)
    x = tf.keras.layers.Dense(EMBEDDING_SIZE, use_bias=False, name="Bottleneck")(x)
    x = tf.keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False,
                                           name="Bottleneck_BatchNorm")(x)
    return tf.keras.Model(image, x, name=MODEL_NAME)


def weighted_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers that carry weights (245 in Inception-ResNet-v1), the unit the conversion copies."""
    return [layer for layer in model.layers if layer.weights]
