"""The training input's augmentation."""
import numpy as np
import tensorflow as tf

from deepattraction.trainer import features
from deepattraction.trainer.train import TrainConfig, random_flip


def test_random_flip_mirrors_about_half_the_photos_and_leaves_the_labels():
    image = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)  # asymmetric left to right
    xf = {features.IMAGE_XF: tf.constant(image), features.RATIO_XF: tf.constant(0.25)}
    tf.random.set_seed(0)
    ds = tf.data.Dataset.from_tensors(xf).repeat(400).map(random_flip)
    mirrored = 0
    for out in ds.as_numpy_iterator():
        assert out[features.RATIO_XF] == 0.25
        got = out[features.IMAGE_XF]
        if np.array_equal(got, image[:, ::-1]):
            mirrored += 1
        else:
            np.testing.assert_array_equal(got, image)
    assert 150 <= mirrored <= 250
    assert TrainConfig().flip == 1 and TrainConfig.from_dict({"flip": 0}).flip == 0
