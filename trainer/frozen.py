"""Frozen outputs computed once: a phase that trains only the head (or the top N blocks) never
changes the layers below, so their outputs are computed once per photo, streamed to TFRecord
files in the Trainer's working area and read back every epoch. A head epoch then costs the head
alone, and memory stays bounded by a batch whatever the photo count.

With flip, the outputs of each photo's mirror image are stored beside the photo's own, and every
training epoch takes one of the two at random: the trainer's random_flip, after the frozen part.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from deepattraction.trainer import features, finetune
from deepattraction.trainer.model import on_pixels

FROZEN = "frozen"
FROZEN_FLIPPED = "frozen_flipped"
BATCH = 32  # photos per frozen forward pass


@dataclasses.dataclass(frozen=True)
class FrozenSplit:
    """One split's frozen outputs on disk: the files, the per-photo output shape and dtype."""

    files: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: tf.DType
    count: int
    flipped: bool


def _bytes_feature(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _float_feature(v: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))


def _int_feature(v: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))


def forward(frozen: tf.keras.Model, dtype: tf.DType = tf.float32, flip: bool = True) -> Callable:
    """images -> the frozen part's outputs of them (and, with flip, of their mirrors), traced
    once for every split: tracing a whole backbone costs a minute on two cores."""

    # No autograph: converting the Keras call stack of a whole backbone takes minutes; the body
    # has no Python control flow on tensors.
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
    def run(images):
        out = {FROZEN: tf.cast(frozen(images, training=False), dtype)}
        if flip:
            out[FROZEN_FLIPPED] = tf.cast(frozen(tf.image.flip_left_right(images), training=False), dtype)
        return out

    return run


LABELS = tuple(features.LABEL_DTYPES)


def _views(flipped: bool) -> tuple[str, ...]:
    return (FROZEN, FROZEN_FLIPPED) if flipped else (FROZEN,)


def _record_spec(flipped: bool) -> dict:
    """How _write stores a photo: each view's outputs as raw bytes, and its labels."""
    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in _views(flipped)}
    spec.update({k: tf.io.FixedLenFeature([], dtype) for k, dtype in features.LABEL_DTYPES.items()})
    return spec


def _write(path: str, batches, dtype: tf.DType, flip: bool) -> FrozenSplit:
    """Writes (outputs by view, labels) batches, one record per photo: the outputs as raw bytes."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    count, shape = 0, None
    np_dtype = dtype.as_numpy_dtype
    with tf.io.TFRecordWriter(path) as w:
        for outs, labels in batches:
            shape = outs[FROZEN].shape[1:]
            ratio, weight, gender = (labels[k] for k in LABELS)
            for i in range(len(ratio)):
                feats = {k: _bytes_feature(np.ascontiguousarray(v[i], np_dtype).tobytes()) for k, v in outs.items()}
                feats.update({features.RATIO_XF: _float_feature(float(ratio[i])),
                              features.WEIGHT_XF: _float_feature(float(weight[i])),
                              features.GENDER_XF: _int_feature(int(gender[i]))})
                w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
            count += len(ratio)
    logging.info("frozen outputs of %d photos, shape %s, written to %s", count, shape, path)
    return FrozenSplit((path,), tuple(int(d) for d in shape or ()), dtype, count, flip)


def write(run: Callable, transformed: tf.data.Dataset, path: str, flip: bool,
          dtype: tf.DType = tf.float32) -> FrozenSplit:
    """Runs `run` (forward()) once over a split's transformed examples (unbatched dicts) and writes
    each photo's outputs (and its mirror's, with flip) with its labels and weight to `path`."""
    keep = _views(flip)

    def batches():
        for xf in transformed.batch(BATCH).prefetch(1):
            outs = {k: v.numpy() for k, v in run(tf.cast(xf[features.IMAGE_XF], tf.float32)).items() if k in keep}
            yield outs, {k: xf[k].numpy() for k in LABELS}

    return _write(path, batches(), dtype, flip)


def derive(part: tf.keras.Model, split: FrozenSplit, path: str, dtype: tf.DType = tf.float32) -> FrozenSplit:
    """A higher cut's frozen outputs from a lower cut's: each stored view (and mirror) through
    `part`, the frozen layers between the two cuts. The head phase so takes its inputs from the
    top blocks' phase's outputs instead of running the whole backbone over every photo again."""
    views, spec = _views(split.flipped), _record_spec(split.flipped)

    @tf.function(input_signature=[tf.TensorSpec([None, *split.shape], tf.float32)], autograph=False)
    def run(x):
        return tf.cast(part(x, training=False), dtype)

    def decode(raw):
        ex = tf.io.parse_example(raw, spec)
        for k in views:
            ex[k] = tf.cast(tf.reshape(tf.io.decode_raw(ex[k], split.dtype), [-1, *split.shape]), tf.float32)
        return ex

    def batches():
        for ex in tf.data.TFRecordDataset(list(split.files)).batch(BATCH).map(decode).prefetch(1):
            yield {k: run(ex[k]).numpy() for k in views}, {k: ex[k].numpy() for k in LABELS}

    return _write(path, batches(), dtype, split.flipped)


def dataset(split: FrozenSplit, outputs: tuple[str, ...], batch_size: int, training: bool,
            shuffle_buffer: int = 1024, seed: int = 0) -> tf.data.Dataset:
    """(frozen outputs, labels, weights) batches, as make_dataset gives images; training
    shuffles and, when the split holds mirrors, takes one of the two views at random."""
    spec = _record_spec(split.flipped)
    mirror = training and split.flipped

    def decode(raw):
        ex = tf.io.parse_single_example(raw, spec)
        x = ex[FROZEN]
        if mirror:
            x = tf.where(tf.random.uniform(()) < 0.5, ex[FROZEN_FLIPPED], x)
        x = tf.cast(tf.reshape(tf.io.decode_raw(x, split.dtype), split.shape), tf.float32)
        labels = {features.RATIO_LABEL: ex[features.RATIO_XF][None],
                  features.GENDER_LABEL: tf.cast(ex[features.GENDER_XF], tf.float32)[None]}
        weights = {features.RATIO_LABEL: ex[features.WEIGHT_XF], features.GENDER_LABEL: tf.constant(1.0)}
        return x, {k: labels[k] for k in outputs}, {k: weights[k] for k in outputs}

    ds = tf.data.TFRecordDataset(list(split.files))
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def split_model(model: tf.keras.Model, backbone_name: str, blocks: int) -> tuple[tf.keras.Model, tf.keras.Model]:
    """(frozen, trainable): the part of the model a phase with `blocks` trainable backbone blocks
    leaves alone (pixel scaling included: it takes the model's input), and the part it trains, on
    the frozen part's outputs. Both share the model's layers, so training the second trains the model."""
    if blocks == 0:
        return on_pixels(model, finetune.backbone_of(model)), finetune.head_on_features(model)
    frozen, _, top = finetune.split_for_fine_tuning(model, backbone_name, blocks)
    return on_pixels(model, frozen), top
