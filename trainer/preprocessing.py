"""The Transform graph: photo bytes to the backbone's face crop, labels to training targets.

The Transform component runs it once per photo and writes the transformed examples the Trainer
streams; the served model runs it, unchanged, on the photo bytes it is sent.
"""
from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf

from deepattraction.trainer import faces, features


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    backbone: str = "inception_v3"
    image_size: int = 0  # 0: the backbone's native size
    face_canvas: int = features.FACE_CANVAS

    @classmethod
    def from_dict(cls, d: dict | None) -> "PreprocessConfig":
        d = dict(d or {})
        cfg = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        if cfg.backbone not in features.BACKBONES:
            raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {sorted(features.BACKBONES)}")
        if cfg.image_size and cfg.image_size < features.MIN_IMAGE_SIZE:
            raise ValueError(f"image_size {cfg.image_size} < {features.MIN_IMAGE_SIZE}")
        return cfg

    @property
    def size(self) -> int:
        return self.image_size or features.BACKBONES[self.backbone].image_size


def face_inputs(image_bytes: tf.Tensor, size: int, backbone: features.Backbone, canvas: int) -> dict:
    """Detects faces and makes the backbone input: a crop of the face with the backbone's margin
    when exactly one face counts, else the whole photo letterboxed, so unstarred photos still train."""
    return _face_inputs_fn(size, backbone, canvas)(image_bytes)


@functools.lru_cache(maxsize=None)
def _face_inputs_fn(size: int, backbone: features.Backbone, canvas: int):
    """One traced graph per setting, called wherever the setting is used: tf.Transform traces the
    preprocessing_fn about seven times per run, and each trace of the detector took 3-4 s of graph
    building (the SCUT Transform: 95 s with a trace each time, 72 s with one), where a call of the
    traced function costs nothing. Eager callers get graph speed too."""
    return tf.function(functools.partial(_face_inputs, size=size, backbone=backbone, canvas=canvas),
                       input_signature=[tf.TensorSpec([None], tf.string)])


def _face_inputs(image_bytes: tf.Tensor, size: int, backbone: features.Backbone, canvas: int) -> dict:
    canvases, hws, factors, d = faces.detect_photos(image_bytes, faces.DetectorConfig(canvas=canvas))
    h, w = hws[:, 0], hws[:, 1]
    face_count = d["count"]  # every face, also beyond the MAX_FACES slots
    box = d["boxes"][:, 0]  # the most confident
    has_face = face_count > 0
    x1, y1, x2, y2 = tf.unstack(box, axis=1)
    side = tf.maximum(x2 - x1, y2 - y1) * (1 + 2 * backbone.face_margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    full_side, fcx, fcy = tf.maximum(h, w), w / 2, h / 2
    single = features.is_starred(face_count)
    side, cx, cy = tf.where(single, side, full_side), tf.where(single, cx, fcx), tf.where(single, cy, fcy)
    last = tf.cast(tf.maximum(tf.shape(canvases)[1:3] - 1, 1), tf.float32)  # the batch canvas's last row and column
    region = tf.stack([(cy - side / 2) / last[0], (cx - side / 2) / last[1],
                       (cy + side / 2) / last[0], (cx + side / 2) / last[1]], axis=1)
    # Mid-grey beyond the canvas too, so every letterbox band and off-photo margin looks the same.
    crops = tf.image.crop_and_resize(canvases, region, tf.range(tf.shape(canvases)[0]), [size, size],
                                     extrapolation_value=127.5)
    zero = tf.zeros_like(box)
    inv = (1.0 / factors)[:, None]
    marks = d["landmarks"][:, 0]
    return {
        features.IMAGE_XF: to_pixels(crops),
        features.FACE_COUNT_XF: face_count,
        features.FACE_BOX_XF: tf.where(has_face[:, None], box * inv, zero),
        features.FACE_CONFIDENCE_XF: tf.where(has_face, d["confidence"][:, 0], 0.0),
        features.FACE_LANDMARKS_XF: tf.where(has_face[:, None], marks * inv, tf.zeros_like(marks)),
    }


def to_pixels(crops: tf.Tensor) -> tf.Tensor:
    """Whole-number pixel values, as the materialised examples store them: the model scales them
    to its backbone's range (model.PIXELS_LAYER), so a stored crop and a served one are the same."""
    return tf.cast(tf.round(tf.clip_by_value(crops, 0.0, 255.0)), tf.int64)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """The served model feeds only the photo: the Transform layer prunes the label outputs."""
    cfg = PreprocessConfig.from_dict(custom_config)
    out = face_inputs(inputs[features.IMAGE_KEY], cfg.size, features.BACKBONES[cfg.backbone], cfg.face_canvas)
    swipes = tf.cast(inputs[features.SWIPE_COUNT_KEY], tf.float32)
    out[features.RATIO_XF] = tf.cast(inputs[features.LIKE_RATIO_KEY], tf.float32)
    # The swipe count is the example weight. No analyzer here (the Trainer divides by the training
    # mean, train.label_stats): a Transform without analyzers makes one pass over the photos, the
    # one that writes the transformed examples, so MTCNN runs once per photo.
    out[features.WEIGHT_XF] = swipes
    out[features.GENDER_XF] = tf.cast(tf.equal(inputs[features.GENDER_KEY], features.GENDERS[1]), tf.int64)
    out[features.USER_ID_XF] = tf.identity(inputs[features.USER_ID_KEY])
    return out
