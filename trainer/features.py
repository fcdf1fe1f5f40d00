"""The one place that names every feature key, label, image size and the starred-subset rule.

ExampleGen writes the raw keys, Transform turns them into the transformed keys, the trainer
and the evaluator read them; nothing else spells a key as a string literal.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

# Raw tf.Example keys written by the swipe ExampleGen.
USER_ID_KEY = "user_id"
IMAGE_KEY = "image"  # encoded JPEG or PNG bytes of the user's main photo
GENDER_KEY = "gender"  # "female" or "male"
LIKE_RATIO_KEY = "like_ratio"  # likes / (likes + dislikes) over post-update swipes
SWIPE_COUNT_KEY = "swipe_count"  # post-update swipes behind like_ratio; the example weight

GENDERS = ("female", "male")  # index is the gender label: P(male) is the model's output
RATIO_LABEL = "like_ratio"  # model output and label names
GENDER_LABEL = "gender"
FACE_COUNT_KEY = "face_count"
UNKNOWN_FACE_COUNT = -1  # no detector in the graph yet: neither starred nor unstarred


@dataclasses.dataclass(frozen=True)
class Backbone:
    """How a backbone wants its pixels: square size and value range."""

    name: str
    image_size: int
    pixel_range: tuple[float, float]


BACKBONES = {
    "inception_v3": Backbone("inception_v3", 299, (-1.0, 1.0)),
    "facenet": Backbone("facenet", 160, (-1.0, 1.0)),
}
MIN_IMAGE_SIZE = 75  # Keras InceptionV3 refuses smaller inputs


def transformed_name(key: str) -> str:
    return f"{key}_xf"


IMAGE_XF = transformed_name(IMAGE_KEY)
RATIO_XF = transformed_name(LIKE_RATIO_KEY)
WEIGHT_XF = transformed_name(SWIPE_COUNT_KEY)
GENDER_XF = transformed_name(GENDER_KEY)
FACE_COUNT_XF = transformed_name(FACE_COUNT_KEY)

LABEL_KEYS = (LIKE_RATIO_KEY, SWIPE_COUNT_KEY, GENDER_KEY)


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The tf.Example contract between ExampleGen and everything downstream."""
    return {
        USER_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        GENDER_KEY: tf.io.FixedLenFeature([], tf.string),
        LIKE_RATIO_KEY: tf.io.FixedLenFeature([], tf.float32),
        SWIPE_COUNT_KEY: tf.io.FixedLenFeature([], tf.int64),
    }


def label_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """Only the labels: cheap to parse when the photos are not needed."""
    spec = raw_feature_spec()
    return {k: spec[k] for k in LABEL_KEYS}


def is_starred(face_count):
    """The study's starred subset: photos in which exactly one face was found."""
    return face_count == 1
