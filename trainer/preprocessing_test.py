"""Transform graph shapes and ranges, run through real tf.Transform on Beam."""
import dataclasses
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from conftest import SCUT_DIR
from deepattraction import sample_photos
from deepattraction.trainer import features, preprocessing


def test_photos_without_a_face_are_letterboxed_whole(jpeg_bytes, png_bytes):
    out = preprocessing.face_inputs(tf.constant([jpeg_bytes, png_bytes]), 80, features.BACKBONES["inception_v3"], 384)
    img = out[features.IMAGE_XF].numpy()
    # Whole-number pixel values, as the materialised examples store them.
    assert img.shape == (2, 80, 80, 3) and img.dtype == np.int64 and img.min() >= 0 and img.max() <= 255
    assert out[features.FACE_COUNT_XF].numpy().tolist() == [0, 0]
    assert np.all(out[features.FACE_BOX_XF].numpy() == 0)
    # 40x60 JPEG: top and bottom bands are mid-grey padding (127.5, rounded), the middle is the photo.
    assert np.all(img[0, 0] == 128) and np.all(img[0, -1] == 128) and not np.all(img[0, 40] == 128)
    # 50x30 PNG: left and right bands are padding.
    assert np.all(img[1, :, 0] == 128) and np.all(img[1, :, -1] == 128)


def test_the_crop_shows_the_backbones_margin_around_the_face():
    """The same SCUT face cropped with margins 0.1 and 0.3: the tight crop is the wide one's
    centre (1 + 2 * 0.1) / (1 + 2 * 0.3) of it, resized."""
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR}"
    photo = tf.constant([sample_photos.scut_photos(SCUT_DIR, 1, seed=3)[0][1]])
    tight, wide = (dataclasses.replace(features.BACKBONES["facenet"], face_margin=m) for m in (0.1, 0.3))
    a, b = (preprocessing.face_inputs(photo, 96, bb, 384) for bb in (tight, wide))
    assert a[features.FACE_COUNT_XF].numpy().tolist() == [1]
    np.testing.assert_array_equal(a[features.FACE_BOX_XF].numpy(), b[features.FACE_BOX_XF].numpy())
    tight_img, wide_img = (tf.cast(x[features.IMAGE_XF], tf.float32) / 255.0 for x in (a, b))
    f = (1 + 2 * 0.1) / (1 + 2 * 0.3)
    centre = tf.image.crop_and_resize(wide_img, [[(1 - f) / 2, (1 - f) / 2, (1 + f) / 2, (1 + f) / 2]], [0], [96, 96])
    assert np.abs(centre.numpy() - tight_img.numpy()).mean() < 0.015
    assert np.abs(wide_img.numpy() - tight_img.numpy()).mean() > 0.05
    assert features.BACKBONES["facenet"].face_margin < features.BACKBONES["inception_v3"].face_margin


def test_face_count_counts_every_pasted_face_down_to_24_px_in_large_photos():
    """Group photos of 640 and 1080 px holding 1-4 real faces about 24-96 px wide: face_count is
    how many were pasted (the `mtcnn` package's count at its defaults), and a photo is starred only
    when it holds one. A floor of a tenth of the shorter side counted 6 of 60 such photos right."""
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR}"
    group = [p for side, seed in ((640, 11), (1080, 12)) for p in sample_photos.group_photos(SCUT_DIR, side, 3, seed)]
    widths = [[int(w) for w in name.rsplit("_", 1)[1][:-len("px.jpg")].split("-")] for name, _ in group]
    assert min(min(w) for w in widths) <= 24 and max(map(len, widths)) >= 3
    out = preprocessing.face_inputs(tf.constant([b for _, b in group]), 96, features.BACKBONES["facenet"],
                                    features.FACE_CANVAS)
    counts = out[features.FACE_COUNT_XF].numpy().tolist()
    assert counts == [len(w) for w in widths], list(zip([n for n, _ in group], counts))


def test_undecodable_image_raises():
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocessing.face_inputs(tf.constant([b"not an image"]), 75, features.BACKBONES["inception_v3"], 384)


def test_config_validates_backbone_and_size():
    assert preprocessing.PreprocessConfig.from_dict({"backbone": "facenet"}).size == 160
    assert preprocessing.PreprocessConfig.from_dict({"image_size": 96, "code_version": "abc"}).size == 96
    with pytest.raises(ValueError, match="unknown backbone"):
        preprocessing.PreprocessConfig.from_dict({"backbone": "resnet"})
    with pytest.raises(ValueError, match="< 75"):
        preprocessing.PreprocessConfig.from_dict({"image_size": 32})


def test_preprocessing_fn_in_tf_transform(jpeg_bytes, png_bytes):
    raw = [
        {features.USER_ID_KEY: b"a", features.IMAGE_KEY: jpeg_bytes, features.GENDER_KEY: b"male",
         features.LIKE_RATIO_KEY: 0.25, features.SWIPE_COUNT_KEY: 10},
        {features.USER_ID_KEY: b"b", features.IMAGE_KEY: png_bytes, features.GENDER_KEY: b"female",
         features.LIKE_RATIO_KEY: 0.75, features.SWIPE_COUNT_KEY: 30},
    ]
    for r in raw:  # the evaluation-only features ride along unused
        r.update({features.GROUP_KEY: b"", **{k: 0 for k in features.SOURCE_COUNT_KEYS}})
    meta = dataset_metadata.DatasetMetadata(features.raw_schema())
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (out, _), _ = (raw, meta) | tft_beam.AnalyzeAndTransformDataset(
            lambda x: preprocessing.preprocessing_fn(x, {"image_size": 75}))
    out = sorted(out, key=lambda r: r[features.RATIO_XF])
    assert np.asarray(out[0][features.IMAGE_XF]).shape == (75, 75, 3)
    assert [r[features.GENDER_XF] for r in out] == [1, 0]
    # Weights are the swipe counts; the Trainer divides them by the training mean.
    assert [pytest.approx(r[features.WEIGHT_XF]) for r in out] == [10, 30]
    assert all(r[features.FACE_COUNT_XF] == 0 for r in out)  # noise photos: no face counts
    assert [r[features.USER_ID_XF] for r in out] == [b"a", b"b"]  # passed through, to join results back


def test_tf_transform_traces_the_detector_once_however_often_it_traces_preprocessing_fn(jpeg_bytes):
    raw = [{features.USER_ID_KEY: b"a", features.IMAGE_KEY: jpeg_bytes, features.GENDER_KEY: b"male",
            features.LIKE_RATIO_KEY: 0.5, features.SWIPE_COUNT_KEY: 3, features.GROUP_KEY: b"",
            **{k: 0 for k in features.SOURCE_COUNT_KEYS}}]
    calls = []

    def fn(x):
        calls.append(1)
        return preprocessing.preprocessing_fn(x, {"image_size": 77})

    meta = dataset_metadata.DatasetMetadata(features.raw_schema())
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (out, _), _ = (raw, meta) | tft_beam.AnalyzeAndTransformDataset(fn)
    assert np.asarray(out[0][features.IMAGE_XF]).shape == (77, 77, 3)
    assert len(calls) >= 2  # tf.Transform traces it per inspection and save (about seven times in TFX)
    traced = preprocessing._face_inputs_fn(77, features.BACKBONES["inception_v3"], features.FACE_CANVAS)
    assert traced.experimental_get_tracing_count() == 1
