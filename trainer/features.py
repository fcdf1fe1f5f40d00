"""The one place that names every feature key, label, signature input and output, image size and
the starred-subset rule.

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
GROUP_KEY = "group"  # optional cohort from the users table (SCUT-FBP5500: AF/AM/CF/CM); "" when absent


def likes_from_key(source_gender: str) -> str:
    """Post-update likes from swipers of one gender: the evaluation's source-gender slices."""
    return f"likes_from_{source_gender}"


def swipes_from_key(source_gender: str) -> str:
    return f"swipes_from_{source_gender}"


SOURCE_COUNT_KEYS = tuple(k for g in GENDERS for k in (likes_from_key(g), swipes_from_key(g)))
RATIO_LABEL = "like_ratio"  # model output and label names
GENDER_LABEL = "gender"
FACE_COUNT_KEY = "face_count"
FACE_BOX_KEY = "face_box"  # x1, y1, x2, y2 in the photo's pixels; zeros when no face counts
FACE_CONFIDENCE_KEY = "face_confidence"
FACE_LANDMARKS_KEY = "face_landmarks"  # x of the 5 landmarks, then y (eyes, nose, mouth corners)

# What counts as a face: every face the MTCNN cascade keeps at the `mtcnn` package's defaults
# (min_face_size 20, O-Net threshold 0.8), at any photo size up to FACE_CANVAS, so face_count is
# the package's count (the study's "exactly one face"). A confidence or size floor on top made the
# count drift from the package's: 0.9 confidence and a tenth of the shorter side counted no face in
# 17 real SCUT portraits (confidence 0.80-0.90) and none of the 19-47 px faces of 640 px group photos.
FACE_CANVAS = 1080  # longest photo side detection reads at full size: larger photos shrink to fit (trainer/faces.py)
# The old fixed 384 px canvas: faster on large photos, but a face must be ~20/384 of the photo's longer side
# (33 px at 640 px, 56 px at 1080 px) to be found. A named setting (PreprocessConfig.face_canvas), never the default.
FACE_CANVAS_FAST = 384
# The most pixels a photo may have (width x height from its header). A decoded photo costs 3 bytes a
# pixel and its float copy for the canvas 12 more, so 2^26 (67 MP: 8192 x 8192, or a 50 MP camera's
# 8160 x 6120) bounds one photo near 1 GB; a few-kB PNG or GIF can declare 2^32 pixels.
MAX_PHOTO_PIXELS = 1 << 26
MAX_PHOTO_BYTES = 1 << 26  # a photo file's size: ExampleGen reads no further (serving has its own limit)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """How a backbone wants its pixels: square size, value range, and how much beyond the face
    box its crop shows (a fraction of the box's longer side, on each side)."""

    name: str
    image_size: int
    pixel_range: tuple[float, float]
    face_margin: float


# FaceNet was trained on tight MTCNN crops; on SCUT a ridge regression on its pooled features
# correlates 0.908 with the mean score at margin 0.1, 0.899 at 0.2 and 0.866 at 0.35 (README).
# FaceRes (HSE-FaceRes, from npm @vladmandic/human) takes 224 px and pixel values 0-255 (its first
# layer makes them BGR minus the ImageNet means, as its source trained it: trainer/faceres.py); its
# crop is the face detector's box enlarged 1.4 times (human's default for its own detector), i.e. a
# margin of 0.2 a side.
BACKBONES = {
    "inception_v3": Backbone("inception_v3", 299, (-1.0, 1.0), 0.2),
    "facenet": Backbone("facenet", 160, (-1.0, 1.0), 0.1),
    "faceres": Backbone("faceres", 224, (0.0, 255.0), 0.2),
}
MIN_IMAGE_SIZE = 75  # Keras InceptionV3 refuses smaller inputs


def transformed_name(key: str) -> str:
    return f"{key}_xf"


# The face crop at the backbone's size: [size, size, 3] pixel values 0-255, whole numbers, stored
# as int64 (tf.Example has no uint8) and held as uint8 in the Trainer; the model scales them.
IMAGE_XF = transformed_name(IMAGE_KEY)
USER_ID_XF = transformed_name(USER_ID_KEY)  # passed through, so transformed examples can be joined back
RATIO_XF = transformed_name(LIKE_RATIO_KEY)
WEIGHT_XF = transformed_name(SWIPE_COUNT_KEY)
GENDER_XF = transformed_name(GENDER_KEY)
FACE_COUNT_XF = transformed_name(FACE_COUNT_KEY)
FACE_BOX_XF = transformed_name(FACE_BOX_KEY)
FACE_CONFIDENCE_XF = transformed_name(FACE_CONFIDENCE_KEY)
# The labels and weight as the transformed examples (and the Trainer's frozen outputs) store them.
LABEL_DTYPES = {RATIO_XF: tf.float32, WEIGHT_XF: tf.float32, GENDER_XF: tf.int64}
FACE_LANDMARKS_XF = transformed_name(FACE_LANDMARKS_KEY)

LABEL_KEYS = (LIKE_RATIO_KEY, SWIPE_COUNT_KEY, GENDER_KEY)

# The exported model's signatures: their names, input names and output names.
SERVING_DEFAULT = "serving_default"  # raw photo bytes in
SERVING_EXAMPLES = "serving_examples"  # serialized tf.Examples in (what the evaluator feeds)
IMAGE_BYTES_INPUT = "image_bytes"  # TF Serving's REST API base64-decodes inputs named *_bytes
EXAMPLES_INPUT = "examples"
OUT_RATIO = "like_ratio"
OUT_MALE = "male_probability"
OUT_FACE_COUNT = "face_count"
OUT_FACE_BOX = "face_box"
OUT_FACE_CONFIDENCE = "face_confidence"


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The tf.Example contract between ExampleGen and everything downstream."""
    return {
        USER_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        GENDER_KEY: tf.io.FixedLenFeature([], tf.string),
        LIKE_RATIO_KEY: tf.io.FixedLenFeature([], tf.float32),
        SWIPE_COUNT_KEY: tf.io.FixedLenFeature([], tf.int64),
        # Optional, for evaluation slices only: examples written before they existed parse to the defaults.
        GROUP_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        **{k: tf.io.FixedLenFeature([], tf.int64, default_value=0) for k in SOURCE_COUNT_KEYS},
    }


def raw_schema():
    """raw_feature_spec() as a tf.Metadata Schema, for ImportSchemaGen and tf.Transform.

    TFT's schema_from_feature_spec refuses defaults other than -1 and "", so each optional key is
    a not-always-present feature whose dense tensor representation carries its default. Every
    feature gets a representation, because TFX projects the schema on those alone;
    schema_as_feature_spec of the result gives raw_feature_spec() back."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils

    spec = raw_feature_spec()
    schema = schema_utils.schema_from_feature_spec({k: s for k, s in spec.items() if s.default_value is None})
    representations = schema.tensor_representation_group[""].tensor_representation
    for name, s in sorted(spec.items()):
        dense = representations[name].dense_tensor
        dense.column_name = name
        dense.shape.SetInParent()
        if s.default_value is None:
            continue
        feature = schema.feature.add(name=name, type=schema_pb2.BYTES if s.dtype == tf.string else schema_pb2.INT)
        feature.presence.min_fraction = 0.0
        feature.value_count.min = feature.value_count.max = 1
        if s.dtype == tf.string:
            dense.default_value.bytes_value = s.default_value.encode()
        else:
            dense.default_value.int_value = s.default_value
    _constrain(schema)
    return schema


# Drift thresholds that data validation compares a run's training data with the last blessed run's.
GENDER_DRIFT_LINF = 0.1  # largest change in any gender's share
LIKE_RATIO_DRIFT_JSD = 0.1  # Jensen-Shannon divergence of the like-ratio histograms


def _constrain(schema) -> None:
    """The domains ExampleValidator checks and the drift comparators. The photo is an image
    domain, so statistics keep its byte sizes only, never a top-k of 76k distinct photos."""
    by_name = {f.name: f for f in schema.feature}
    by_name[IMAGE_KEY].image_domain.SetInParent()
    by_name[GENDER_KEY].string_domain.value.extend(GENDERS)
    by_name[GENDER_KEY].drift_comparator.infinity_norm.threshold = GENDER_DRIFT_LINF
    by_name[LIKE_RATIO_KEY].float_domain.min = 0.0
    by_name[LIKE_RATIO_KEY].float_domain.max = 1.0
    by_name[LIKE_RATIO_KEY].drift_comparator.jensen_shannon_divergence.threshold = LIKE_RATIO_DRIFT_JSD
    by_name[SWIPE_COUNT_KEY].int_domain.min = 1


def label_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """Only the labels: cheap to parse when the photos are not needed."""
    spec = raw_feature_spec()
    return {k: spec[k] for k in LABEL_KEYS}


def is_starred(face_count):
    """The study's starred subset: photos in which exactly one face counts. The one rule used as
    a training filter (starred_only) and as an evaluation slice."""
    return face_count == 1
