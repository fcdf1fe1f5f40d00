"""The Transform graph: photo bytes to backbone-ready pixels, labels to training targets.

It runs in the Transform component and, unchanged, inside the served model.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_transform as tft

from deepattraction.trainer import features


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    backbone: str = "inception_v3"
    image_size: int = 0  # 0: the backbone's native size

    @classmethod
    def from_dict(cls, d: dict | None) -> "PreprocessConfig":
        d = dict(d or {})
        d.pop("code", None)  # the pipeline's cache key, not a setting
        cfg = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        if cfg.backbone not in features.BACKBONES:
            raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {sorted(features.BACKBONES)}")
        if cfg.image_size and cfg.image_size < features.MIN_IMAGE_SIZE:
            raise ValueError(f"image_size {cfg.image_size} < {features.MIN_IMAGE_SIZE}")
        return cfg

    @property
    def size(self) -> int:
        return self.image_size or features.BACKBONES[self.backbone].image_size


def decode_images(image_bytes: tf.Tensor, size: int, pixel_range: tuple[float, float]) -> tf.Tensor:
    """[batch] encoded JPEG/PNG -> [batch, size, size, 3] float32 in pixel_range, letterboxed."""

    def one(data):
        img = tf.io.decode_image(data, channels=3, expand_animations=False)
        img = tf.image.resize_with_pad(tf.cast(img, tf.float32), size, size, antialias=True)
        return tf.ensure_shape(img, [size, size, 3])

    imgs = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
    lo, hi = pixel_range
    return imgs * ((hi - lo) / 255.0) + lo


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """The served model feeds only the photo: the Transform layer prunes the label outputs."""
    cfg = PreprocessConfig.from_dict(custom_config)
    images = inputs[features.IMAGE_KEY]
    out = {
        features.IMAGE_XF: decode_images(images, cfg.size, features.BACKBONES[cfg.backbone].pixel_range),
        features.FACE_COUNT_XF: tf.fill(tf.shape(images), tf.constant(features.UNKNOWN_FACE_COUNT, tf.int64)),
    }
    swipes = tf.cast(inputs[features.SWIPE_COUNT_KEY], tf.float32)
    out[features.RATIO_XF] = tf.cast(inputs[features.LIKE_RATIO_KEY], tf.float32)
    # Swipe-count weights normalised by the training mean, so a weight of 1 is a typical photo.
    out[features.WEIGHT_XF] = swipes / tft.mean(swipes)
    out[features.GENDER_XF] = tf.cast(tf.equal(inputs[features.GENDER_KEY], features.GENDERS[1]), tf.int64)
    return out
