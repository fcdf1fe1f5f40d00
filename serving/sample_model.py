"""A small real model in TF Serving's layout, for tests and the serving benchmark.

Real tf.Transform on 8 procedural photos, the real Keras model (InceptionV3 at 75 px, untrained,
head kernels randomised so outputs depend on the photo), exported by trainer.train.export and
pushed by our Pusher's copy step: what a pipeline run pushes, in a minute instead of five."""
from __future__ import annotations

import os
import tempfile

import numpy as np

MODEL_NAME = "deepattraction"


def export_model(base: str, version: int, task: str = "both") -> str:
    """<base>/deepattraction/<version>, warmup file included; returns that folder."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from deepattraction.components.pusher.executor import push_version
    from deepattraction.serving import warmup
    from deepattraction.trainer import features, preprocessing
    from deepattraction.trainer.model import ModelConfig, build_model
    from deepattraction.trainer.train import export

    photos = warmup.demo_photos(8, size=64, seed=1)
    raw = [{features.USER_ID_KEY: f"u{i}".encode(), features.IMAGE_KEY: p,
            features.GENDER_KEY: features.GENDERS[i % 2].encode(), features.LIKE_RATIO_KEY: 0.1 * i,
            features.SWIPE_COUNT_KEY: 5 + i, features.GROUP_KEY: b"", **{k: 0 for k in features.SOURCE_COUNT_KEYS}}
           for i, p in enumerate(photos)]
    meta = dataset_metadata.DatasetMetadata(features.raw_schema())
    tft_dir = tempfile.mkdtemp(prefix="tft_")
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        transform_fn = (raw, meta) | tft_beam.AnalyzeDataset(
            lambda x: preprocessing.preprocessing_fn(x, {"image_size": 75}))
        _ = transform_fn | tft_beam.WriteTransformFn(tft_dir)
    metadata_io.write_metadata(meta, os.path.join(tft_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    model = build_model(ModelConfig(task=task), 75, ratio_prior=0.3, male_prior=0.6)
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:  # untrained heads are constant; random ones make outputs depend on the photo
        if "kernel" in w.name and not np.any(w.numpy()):
            w.assign(rng.normal(0, 0.05, w.shape).astype("float32"))
    staged = export(model, tft.TFTransformOutput(tft_dir), tempfile.mkdtemp(prefix="export_"))
    return push_version(staged, os.path.join(base, MODEL_NAME, str(version)), MODEL_NAME)
