"""FaceRes (HSE-FaceRes), built in code with the layer names of its TF.js graph in npm
`@vladmandic/human`, so trainer/faceres_weights.py copies its weights over by name.

It is a Keras MobileNet v1 (alpha 1, 13 depthwise-separable blocks, ReLU6) whose batch norms the
TF.js conversion folded into the convolutions: each convolution here carries a bias and no batch
norm follows it. Under the 1024-d global pool (the "descriptor" the package matches faces with)
sit a 256-d ReLU layer ("feats") and the age and gender outputs. The input is what the package's
runtime feeds: RGB pixel values 0-255, no mean subtracted."""
from __future__ import annotations

import tensorflow as tf

MODEL_NAME = "faceres"
DESCRIPTOR_LAYER = "global_pooling"  # 1024-d
FEATS_LAYER = "feats"  # 256-d, ReLU: the age and gender head's shared layer
GENDER_LAYER, AGE_LAYER = "gender_pred", "age_pred"  # P(male); 100 age bins (years 0-99)
MIN_IMAGE_SIZE = 32  # five stride-2 stages
# MobileNet v1: (pointwise filters, depthwise stride) of blocks 1-13.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


def _relu6(x, name: str):
    return tf.keras.layers.ReLU(6.0, name=name)(x)


def faceres(image_size: int = 224) -> tf.keras.Model:
    """[batch, size, size, 3] pixels 0-255 -> [gender, age]: P(male) [batch, 1] and the age
    softmax [batch, 100]. The descriptor and feats are its DESCRIPTOR_LAYER and FEATS_LAYER."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"FaceRes needs images of at least {MIN_IMAGE_SIZE} px, got {image_size}")
    image = tf.keras.Input((image_size, image_size, 3), name="image")
    x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", name="conv1")(image)
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
