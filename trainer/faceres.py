"""FaceRes (HSE-FaceRes), built in code with the layer names of its TF.js graph in npm
`@vladmandic/human`, so trainer/faceres_weights.py copies its weights over by name.

It is a Keras MobileNet v1 (alpha 1, 13 depthwise-separable blocks, ReLU6) whose batch norms the
TF.js conversion folded into the convolutions: each convolution here carries a bias and no batch
norm follows it. Under the 1024-d global pool (the "descriptor" the package matches faces with)
sit a 256-d ReLU layer ("feats") and the age and gender outputs.

The input is RGB pixel values 0-255. The package's runtime feeds those to the graph as they are, but
the source trained the network on Keras' caffe-style `preprocess_input` (BGR, ImageNet channel means
subtracted), and on SCUT a probe on the descriptor is better fed that way (0.876 against 0.848
Pearson over 5 folds, docs/faceres.md), so the model's first layer does it (SourceInput)."""
from __future__ import annotations

import tensorflow as tf

MODEL_NAME = "faceres"
DESCRIPTOR_LAYER = "global_pooling"  # 1024-d
FEATS_LAYER = "feats"  # 256-d, ReLU: the age and gender head's shared layer
GENDER_LAYER, AGE_LAYER = "gender_pred", "age_pred"  # P(male); 100 age bins (years 0-99)
MIN_IMAGE_SIZE = 32  # five stride-2 stages
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # Keras imagenet_utils' caffe mode, BGR order
# MobileNet v1: (pointwise filters, depthwise stride) of blocks 1-13.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


@tf.keras.utils.register_keras_serializable(package="deepattraction")
class SourceInput(tf.keras.layers.Layer):
    """RGB 0-255 to what the source trained on: BGR with the ImageNet channel means subtracted."""

    def call(self, x):
        return x[..., ::-1] - tf.constant(CAFFE_BGR_MEAN, x.dtype)


def _relu6(x, name: str):
    return tf.keras.layers.ReLU(6.0, name=name)(x)


def faceres(image_size: int = 224, source_input: bool = True) -> tf.keras.Model:
    """[batch, size, size, 3] RGB pixels 0-255 -> [gender, age]: P(male) [batch, 1] and the age
    softmax [batch, 100]. The descriptor and feats are its DESCRIPTOR_LAYER and FEATS_LAYER.
    source_input=False leaves out SourceInput: the graph as the npm package runs it."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"FaceRes needs images of at least {MIN_IMAGE_SIZE} px, got {image_size}")
    image = tf.keras.Input((image_size, image_size, 3), name="image")
    x = SourceInput(name="source_input")(image) if source_input else image
    x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", name="conv1")(x)
    x = _relu6(x, "conv1_relu")
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        x = tf.keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", name=f"conv_dw_{i}")(x)
        x = _relu6(x, f"conv_dw_{i}_relu")
        x = tf.keras.layers.Conv2D(filters, 1, padding="same", name=f"conv_pw_{i}")(x)
        x = _relu6(x, f"conv_pw_{i}_relu")
    x = tf.keras.layers.GlobalAveragePooling2D(name=DESCRIPTOR_LAYER)(x)
    x = tf.keras.layers.Dense(256, activation="relu", name=FEATS_LAYER)(x)
    gender = tf.keras.layers.Dense(1, activation="sigmoid", name=GENDER_LAYER)(x)
    age = tf.keras.layers.Dense(100, activation="softmax", name=AGE_LAYER)(x)
    return tf.keras.Model(image, [gender, age], name=MODEL_NAME)


def weighted_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers that carry weights (30: 1 + 2 x 13 convolutions, 3 dense), the unit the
    conversion copies."""
    return [layer for layer in model.layers if layer.weights]
