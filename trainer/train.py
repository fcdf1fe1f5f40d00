"""Plain train() and export() functions: TFX's run_fn and the CLI both call these."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from deepattraction.trainer import features, metrics
from deepattraction.trainer.model import ModelConfig, build_model

SERVING_DEFAULT = "serving_default"  # raw photo bytes in
SERVING_EXAMPLES = "serving_examples"  # serialized tf.Examples in (what the evaluator feeds)
IMAGE_BYTES_INPUT = "image_bytes"  # TF Serving's REST API base64-decodes inputs named *_bytes
EXAMPLES_INPUT = "examples"
OUT_RATIO = "like_ratio"
OUT_MALE = "male_probability"
OUT_FACE_COUNT = "face_count"
OUT_FACE_BOX = "face_box"
OUT_FACE_CONFIDENCE = "face_confidence"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = ModelConfig()
    learning_rate: float = 1e-3
    epochs: int = 5
    batch_size: int = 16
    gender_loss_weight: float = 1.0  # the mix: loss = weighted MSE + this x log-loss
    shuffle_buffer: int = 256
    bn_recalibration_batches: int = 20
    starred_only: int = 0  # 1: train on photos where exactly one face counts (features.is_starred)
    cache_transformed: int = 1  # 1: run the Transform graph (face detection) once, not every epoch
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
        own = {f.name for f in dataclasses.fields(cls)} - {"model"}
        unknown = set(d) - model_keys - own
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}")
        model = ModelConfig(**{k: v for k, v in d.items() if k in model_keys})
        return cls(model=model, **{k: v for k, v in d.items() if k in own})


def _gzip_files(pattern) -> list[str]:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no example files match {patterns}")
    return files


def label_stats(file_pattern) -> dict:
    """Training-split priors (swipe-weighted mean like ratio, share of men), labels only."""
    ds = tf.data.TFRecordDataset(_gzip_files(file_pattern), compression_type="GZIP").batch(1024)
    ds = ds.map(lambda x: tf.io.parse_example(x, features.label_feature_spec()))
    ratio, swipes, male = [], [], []
    for b in ds.as_numpy_iterator():
        ratio.append(b[features.LIKE_RATIO_KEY])
        swipes.append(b[features.SWIPE_COUNT_KEY])
        male.append(b[features.GENDER_KEY] == features.GENDERS[1].encode())
    ratio, swipes, male = (np.concatenate(a) for a in (ratio, swipes, male))
    return {"ratio_prior": metrics.best_constant(ratio, swipes), "male_prior": float(male.mean()), "count": int(len(ratio))}


TRANSFORM_BATCH = 32


def make_dataset(file_pattern, tf_transform_output: tft.TFTransformOutput, cfg: TrainConfig, training: bool) -> tf.data.Dataset:
    """Raw examples -> Transform layer -> (image, labels, sample weights) batches.

    The Transform layer (decoding, MTCNN, cropping) runs once per photo when cache_transformed is
    set; shuffling and batching come after it, so each epoch still sees new batches."""
    files = _gzip_files(file_pattern)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()
    outputs = cfg.model.outputs

    def transform(serialized):
        xf = tft_layer(tf.io.parse_example(serialized, raw_spec))
        return {k: xf[k] for k in (features.IMAGE_XF, features.RATIO_XF, features.WEIGHT_XF, features.GENDER_XF, features.FACE_COUNT_XF)}

    def to_xy(xf):
        labels = {features.RATIO_LABEL: xf[features.RATIO_XF][:, None],
                  features.GENDER_LABEL: tf.cast(xf[features.GENDER_XF], tf.float32)[:, None]}
        weights = {features.RATIO_LABEL: xf[features.WEIGHT_XF], features.GENDER_LABEL: tf.ones_like(xf[features.WEIGHT_XF])}
        return ({features.IMAGE_XF: xf[features.IMAGE_XF]},
                {k: labels[k] for k in outputs}, {k: weights[k] for k in outputs})

    ds = ds.batch(TRANSFORM_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if cfg.starred_only:
        ds = ds.filter(lambda xf: features.is_starred(xf[features.FACE_COUNT_XF]))
    if cfg.cache_transformed:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    return ds.batch(cfg.batch_size).map(to_xy).prefetch(tf.data.AUTOTUNE)


def image_size_of(tf_transform_output: tft.TFTransformOutput) -> int:
    """The Transform graph decides the pixel layout; the model follows it."""
    return int(tf_transform_output.transformed_feature_spec()[features.IMAGE_XF].shape[0])


def compile_model(model: tf.keras.Model, cfg: TrainConfig) -> None:
    losses = {features.RATIO_LABEL: "mse", features.GENDER_LABEL: "binary_crossentropy"}
    loss_weights = {features.RATIO_LABEL: 1.0, features.GENDER_LABEL: cfg.gender_loss_weight}
    mets = {features.RATIO_LABEL: [tf.keras.metrics.MeanSquaredError(name="wmse")],
            features.GENDER_LABEL: [tf.keras.metrics.BinaryAccuracy(name="accuracy")]}
    outs = cfg.model.outputs
    model.compile(
        optimizer=tf.keras.optimizers.Adam(cfg.learning_rate),
        loss={k: losses[k] for k in outs}, loss_weights={k: loss_weights[k] for k in outs},
        weighted_metrics={k: mets[k] for k in outs})


def train(train_files, eval_files, tf_transform_output: tft.TFTransformOutput, cfg: TrainConfig,
          log_dir: str | None = None) -> tf.keras.Model:
    """Fits the model and returns it; eval metrics per epoch go to the log and TensorBoard."""
    tf.keras.utils.set_random_seed(cfg.seed)
    priors = label_stats(train_files)
    logging.info("training priors: %s", priors)
    model = build_model(cfg.model, image_size_of(tf_transform_output), priors["ratio_prior"], priors["male_prior"])
    compile_model(model, cfg)
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir)] if log_dir else []
    train_ds = make_dataset(train_files, tf_transform_output, cfg, training=True)
    model.fit(train_ds, validation_data=make_dataset(eval_files, tf_transform_output, cfg, training=False),
              epochs=cfg.epochs, callbacks=callbacks, verbose=2)
    recalibrate_batch_norm(model, train_ds, cfg.bn_recalibration_batches)
    return model


def recalibrate_batch_norm(model: tf.keras.Model, dataset: tf.data.Dataset, batches: int) -> int:
    """Precise BatchNorm: replaces the moving statistics by their average over `batches` training
    batches under the final weights. Moving averages lag weights that moved fast (short training,
    training from scratch), which makes inference-mode outputs collapse to a constant."""
    bns = [m for m in model.submodules if isinstance(m, tf.keras.layers.BatchNormalization) and m.trainable]
    if not bns or batches <= 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    seen = 0
    for seen, (x, _, _) in enumerate(dataset.take(batches)):
        for bn in bns:
            bn.momentum = seen / (seen + 1.0)  # a running mean over the batches seen so far
        model(x, training=True)
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    logging.info("recalibrated %d BatchNorm layers on %d batches", len(bns), seen + 1)
    return seen + 1


def _prediction_outputs(model: tf.keras.Model, xf: dict) -> dict:
    preds = model({features.IMAGE_XF: xf[features.IMAGE_XF]}, training=False)
    out = {OUT_FACE_COUNT: xf[features.FACE_COUNT_XF], OUT_FACE_BOX: xf[features.FACE_BOX_XF],
           OUT_FACE_CONFIDENCE: xf[features.FACE_CONFIDENCE_XF]}
    if features.RATIO_LABEL in preds:
        out[OUT_RATIO] = tf.squeeze(preds[features.RATIO_LABEL], -1)
    if features.GENDER_LABEL in preds:
        out[OUT_MALE] = tf.squeeze(preds[features.GENDER_LABEL], -1)
    return out


def export(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, serving_dir: str) -> str:
    """SavedModel whose signatures run the Transform graph, so serving cannot skew from training."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def serve_images(image_bytes):
        return _prediction_outputs(model, model.tft_layer({features.IMAGE_KEY: image_bytes}))

    image_only = {features.IMAGE_KEY: tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(examples):
        return _prediction_outputs(model, model.tft_layer(tf.io.parse_example(examples, image_only)))

    model.save(serving_dir, save_format="tf",
               signatures={SERVING_DEFAULT: serve_images, SERVING_EXAMPLES: serve_examples})
    return serving_dir
