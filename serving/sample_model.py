"""Models in TF Serving's layout, for tests and the serving benchmark.

`export_model`: real tf.Transform on 8 procedural photos, the real Keras model (InceptionV3 at 75
px, untrained, head kernels randomised so outputs depend on the photo), exported by
trainer.train.export and pushed by our Pusher's copy step: what a pipeline run pushes, in a
minute instead of five. `export_tiny_model`: the same signature over colour means, in a second,
for tests of the server's behaviour rather than of the model."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

from deepattraction.serving import warmup
from deepattraction.serving.push import push_version
from deepattraction.trainer import features, preprocessing
from deepattraction.trainer.model import ModelConfig, build_model
from deepattraction.trainer.train import export

MODEL_NAME = "deepattraction"


def export_model(base: str, version: int, task: str = "both", backbone: str = "inception_v3",
                 weights: str = "none", image_size: int = 75, mirrored: bool = False) -> str:
    """<base>/deepattraction/<version>, warmup file included; returns that folder. backbone,
    weights and image_size 0 (the backbone's own) give the recipe `make demo` serves:
    facenet with build/weights/facenet_inception_resnet_v1.h5 at 160 px. mirrored: as a recipe with
    serve_mirrored=1 serves (TrainConfig.serve_mirrored)."""
    photos = warmup.demo_photos(8, size=64, seed=1)
    raw = [{features.USER_ID_KEY: f"u{i}".encode(), features.IMAGE_KEY: p,
            features.GENDER_KEY: features.GENDERS[i % 2].encode(), features.LIKE_RATIO_KEY: 0.1 * i,
            features.SWIPE_COUNT_KEY: 5 + i, features.GROUP_KEY: b"", **{k: 0 for k in features.SOURCE_COUNT_KEYS}}
           for i, p in enumerate(photos)]
    meta = dataset_metadata.DatasetMetadata(features.raw_schema())
    tft_dir = tempfile.mkdtemp(prefix="tft_")
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        transform_fn = (raw, meta) | tft_beam.AnalyzeDataset(
            lambda x: preprocessing.preprocessing_fn(x, {"image_size": image_size, "backbone": backbone}))
        _ = transform_fn | tft_beam.WriteTransformFn(tft_dir)
    metadata_io.write_metadata(meta, os.path.join(tft_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    size = image_size or features.BACKBONES[backbone].image_size
    model = build_model(ModelConfig(task=task, backbone=backbone, weights=weights), size, ratio_prior=0.3,
                        male_prior=0.6)
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:  # untrained heads are constant; random ones make outputs depend on the photo
        if "kernel" in w.name and not np.any(w.numpy()):
            w.assign(rng.normal(0, 0.05, w.shape).astype("float32"))
    staged = export(model, tft.TFTransformOutput(tft_dir), tempfile.mkdtemp(prefix="export_"), mirrored=mirrored)
    return push_version(staged, os.path.join(base, MODEL_NAME, str(version)), MODEL_NAME)


class _Tiny(tf.Module):
    """The served signature's names, types and shapes; it decodes every photo, so a broken one
    fails in the graph as with the real model."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGE_BYTES_INPUT)])
    def serve(self, image_bytes):
        def rgb_mean(photo):
            pixels = tf.io.decode_image(photo, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[0, 1]) / 255.0

        rgb = tf.map_fn(rgb_mean, image_bytes, fn_output_signature=tf.TensorSpec([3], tf.float32))
        n = tf.shape(image_bytes)[0]
        return {features.OUT_RATIO: rgb[:, 0], features.OUT_MALE: rgb[:, 2], features.OUT_FACE_CONFIDENCE: rgb[:, 1],
                features.OUT_FACE_COUNT: tf.ones([n], tf.int64), features.OUT_FACE_BOX: tf.zeros([n, 4])}


def export_tiny_model(base: str, version: int) -> str:
    """<base>/deepattraction/<version>, pushed with its warmup file like export_model."""
    staged = os.path.join(tempfile.mkdtemp(prefix="tiny_"), "model")
    m = _Tiny()
    tf.saved_model.save(m, staged, signatures={features.SERVING_DEFAULT: m.serve})
    return push_version(staged, os.path.join(base, MODEL_NAME, str(version)), MODEL_NAME)
