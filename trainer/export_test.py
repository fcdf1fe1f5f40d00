"""No skew between training and serving: TFX's Transform executor materialises the crops the
Trainer streams, and the exported model, sent the raw photo bytes, sees the same crop and gives
the prediction the trained model gives on the stored crop."""
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import SCUT_DIR, encode
from deepattraction import sample_photos
from deepattraction.pipeline import transform_only as transform
from deepattraction.trainer import faces, features, train
from deepattraction.trainer.model import ModelConfig, build_model

SIZE = 75


@pytest.fixture(scope="module")
def materialised(tmp_path_factory):
    """Raw examples (two SCUT faces, a JPEG and a PNG without faces) through TFX's Transform
    executor, configured as the pipeline configures it."""
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR}"
    root = tmp_path_factory.mktemp("transform")
    photos = {f"scut{i}": p for i, (_, p) in enumerate(sample_photos.scut_photos(SCUT_DIR, 2, seed=5))}
    rng = np.random.default_rng(0)
    photos.update({"jpeg": encode(rng.integers(0, 255, (40, 60, 3)), "JPEG"),
                   "png": encode(rng.integers(0, 255, (50, 30, 3)), "PNG")})
    rows = [transform.raw_example(uid, photo, 0.1 + 0.2 * i, 5 + i, features.GENDERS[i % 2])
            for i, (uid, photo) in enumerate(photos.items())]
    examples = transform.write_examples(str(root / "examples"), {"train": rows})
    tft_out, files = transform.materialise(examples, str(root), "inception_v3", SIZE)
    return photos, tft_out, files["train"]


def test_materialised_examples_hold_uint8_crops_labels_and_ids(materialised):
    photos, tft_out, files = materialised
    spec = tft_out.transformed_feature_spec()
    assert spec[features.IMAGE_XF].shape == [SIZE, SIZE, 3] and spec[features.IMAGE_XF].dtype == tf.int64
    rows = list(tf.data.TFRecordDataset(tf.io.gfile.glob(files), compression_type="GZIP")
                .map(lambda s: tf.io.parse_single_example(s, spec)).as_numpy_iterator())
    assert sorted(r[features.USER_ID_XF].decode() for r in rows) == sorted(photos)
    for r in rows:
        assert 0 <= r[features.IMAGE_XF].min() and r[features.IMAGE_XF].max() <= 255
    faces = {r[features.USER_ID_XF].decode(): int(r[features.FACE_COUNT_XF]) for r in rows}
    assert faces["scut0"] == faces["scut1"] == 1 and faces["jpeg"] == faces["png"] == 0
    stats = train.label_stats(files)
    assert stats["count"] == 4 and stats["mean_swipes"] == pytest.approx(6.5)


def test_a_photo_gives_the_same_crop_and_prediction_through_training_and_serving(materialised, tmp_path):
    photos, tft_out, files = materialised
    cfg = train.TrainConfig(model=ModelConfig(head_layers=1), starred_only=0)
    streamed = {}
    ids = tf.data.TFRecordDataset(tf.io.gfile.glob(files), compression_type="GZIP").map(
        lambda s: tf.io.parse_single_example(s, {features.USER_ID_XF: tf.io.FixedLenFeature([], tf.string)}))
    for uid, xf in zip(ids.as_numpy_iterator(), train.transformed_dataset(files, tft_out, cfg).as_numpy_iterator()):
        assert xf[features.IMAGE_XF].dtype == np.uint8
        streamed[uid[features.USER_ID_XF].decode()] = xf[features.IMAGE_XF]
    names = sorted(photos)
    served = tft_out.transform_features_layer()({features.IMAGE_KEY: tf.constant([photos[n] for n in names])})
    # The same graph on the same bytes. Beam batches the photos differently from this one call, and
    # float sums in another order can move a value lying on .5 to the other whole number: nothing more.
    diff = np.abs(served[features.IMAGE_XF].numpy() - np.stack([streamed[n] for n in names]).astype(np.int64))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())

    tf.keras.utils.set_random_seed(0)
    model = build_model(cfg.model, train.image_size_of(tft_out), 0.4, 0.5)
    logit = model.get_layer(f"{features.RATIO_LABEL}_logit")
    logit.set_weights([np.random.default_rng(0).normal(0, 20.0, w.shape) for w in logit.get_weights()])
    crops = tf.cast(np.stack([streamed[n] for n in names]), tf.float32)
    trained_on = model({features.IMAGE_XF: crops}, training=False)[features.RATIO_LABEL].numpy()[:, 0]
    assert np.ptp(trained_on) > 0.05, trained_on  # the photos score far apart, so a skew would show
    serving = tf.saved_model.load(train.export(model, tft_out, str(tmp_path / "model")))
    out = serving.signatures[features.SERVING_DEFAULT](**{features.IMAGE_BYTES_INPUT: tf.constant(
        [photos[n] for n in names])})
    np.testing.assert_allclose(out[features.OUT_RATIO].numpy(), trained_on, atol=1e-4)

    # serve_mirrored: the served prediction is the mean over the stored crop and its mirror.
    mirror_on = model({features.IMAGE_XF: tf.image.flip_left_right(crops)}, training=False)
    mirror_on = mirror_on[features.RATIO_LABEL].numpy()[:, 0]
    assert np.abs(mirror_on - trained_on).max() > 1e-3  # a mirror scores differently, so the mean shows
    mirrored = tf.saved_model.load(train.export(model, tft_out, str(tmp_path / "mirrored"), mirrored=True))
    out = mirrored.signatures[features.SERVING_DEFAULT](**{features.IMAGE_BYTES_INPUT: tf.constant(
        [photos[n] for n in names])})
    np.testing.assert_allclose(out[features.OUT_RATIO].numpy(), (trained_on + mirror_on) / 2, atol=1e-4)

    # A request with no photo answers with no rows, on every CPU (trainer/faces.py nonempty).
    empty = mirrored.signatures[features.SERVING_DEFAULT](**{features.IMAGE_BYTES_INPUT: tf.constant([], tf.string)})
    assert features.OUT_RATIO in empty and all(v.shape[0] == 0 for v in empty.values()), {
        k: v.shape for k, v in empty.items()}

    # A header declaring gigapixels is refused by the served graph itself (what TF Serving runs),
    # by its size and before any decoding.
    bomb = photos["png"][:16] + (40000).to_bytes(4, "big") * 2 + photos["png"][24:]
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        mirrored.signatures[features.SERVING_DEFAULT](**{features.IMAGE_BYTES_INPUT: tf.constant([bomb])})
    assert faces.refusal(e.value.message) == "photo is 40000x40000 pixels, over the 67,108,864-pixel limit"
