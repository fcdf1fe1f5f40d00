"""Plain train() and export() functions: TFX's run_fn and the CLI both call these."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from deepattraction.trainer import distribute, faces, features, finetune, frozen, metrics
from deepattraction.trainer.model import ModelConfig, build_model

HISTORY_FILE = "training_history.json"  # in the log dir (the Trainer's model_run): the report's curves


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = ModelConfig()
    # Phase 1 (head_epochs > 0): the head alone on the frozen backbone, at learning_rate.
    # Phase 2 (epochs): trainable_blocks of the backbone train too, at fine_tune_learning_rate.
    learning_rate: float = 1e-3
    epochs: int = 5
    head_epochs: int = 0
    fine_tune_learning_rate: float = 0.0  # 0: learning_rate (training from scratch has no phase 1)
    trainable_blocks: int = -1  # phase 2: -1 the whole backbone, 0 none (head only), N its top N blocks
    # phase 2 with N top blocks: each block learns at this factor of the rate of the block above it
    # (the top block and the head at fine_tune_learning_rate); 1: one rate for all
    fine_tune_block_decay: float = 1.0
    early_stopping_patience: int = 0  # epochs without a lower eval weighted MSE before a phase stops; 0: off
    precision: str = "auto"  # auto: mixed_float16 on GPUs, float32 on CPUs (distribute.precision)
    batch_size: int = 16
    gender_loss_weight: float = 1.0  # the mix: loss = weighted MSE + this x log-loss
    shuffle_buffer: int = 256
    bn_recalibration_batches: int = 20
    starred_only: int = 0  # 1: train on photos where exactly one face counts (features.is_starred)
    # 1: a phase that leaves the backbone (or all but its top blocks) frozen trains on the frozen
    # part's outputs, computed once per photo and kept on disk (trainer/frozen.py)
    frozen_cache: int = 1
    deterministic: int = 1  # 1: tf.config.experimental.enable_op_determinism (same seed, same model)
    flip: int = 1  # 1: mirror each training photo with probability 1/2 (a mirror changes neither label)
    # 1: the exported model predicts the mean over the photo and its mirror (test-time mirroring),
    # at twice the backbone's cost per served photo
    serve_mirrored: int = 0
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


PARSE_BATCH = 64


def _records(file_pattern) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(_gzip_files(file_pattern), compression_type="GZIP",
                                   num_parallel_reads=tf.data.AUTOTUNE)


def label_stats(file_pattern) -> dict:
    """Training-split priors (swipe-weighted mean like ratio, share of men), from the labels of
    the transformed examples alone."""
    spec = {k: tf.io.FixedLenFeature([], dtype) for k, dtype in features.LABEL_DTYPES.items()}
    ds = _records(file_pattern).batch(1024).map(lambda x: tf.io.parse_example(x, spec))
    ratio, swipes, male = [], [], []
    for b in ds.as_numpy_iterator():
        ratio.append(b[features.RATIO_XF])
        swipes.append(b[features.WEIGHT_XF])
        male.append(b[features.GENDER_XF] == 1)
    ratio, swipes, male = (np.concatenate(a) for a in (ratio, swipes, male))
    return {"ratio_prior": metrics.best_constant(ratio, swipes), "male_prior": float(male.mean()),
            "count": int(len(ratio)),
            "mean_swipes": float(swipes.mean()) if len(swipes) else 1.0}


def transformed_dataset(file_pattern, tf_transform_output: tft.TFTransformOutput, cfg: TrainConfig,
                        mean_swipes: float = 1.0) -> tf.data.Dataset:
    """The Transform component's transformed examples, streamed from disk: one dict per photo,
    the face crop as uint8 and the swipe-count weight divided by the training split's mean
    (label_stats), so a weight of 1 is a typical photo. Nothing is held in memory beyond the
    shuffle buffer, whatever the photo count."""
    spec = tf_transform_output.transformed_feature_spec()
    keys = (features.IMAGE_XF, features.RATIO_XF, features.WEIGHT_XF, features.GENDER_XF, features.FACE_COUNT_XF)
    spec = {k: spec[k] for k in keys}

    def parse(serialized):
        xf = tf.io.parse_example(serialized, spec)
        xf[features.IMAGE_XF] = tf.cast(xf[features.IMAGE_XF], tf.uint8)
        xf[features.WEIGHT_XF] = tf.cast(xf[features.WEIGHT_XF], tf.float32) / mean_swipes
        return xf

    ds = _records(file_pattern).batch(PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if cfg.starred_only:
        ds = ds.filter(lambda xf: features.is_starred(xf[features.FACE_COUNT_XF]))
    return ds


def batches(ds: tf.data.Dataset, cfg: TrainConfig, training: bool) -> tf.data.Dataset:
    """Transformed examples -> (image, labels, sample weights) batches; training shuffles and
    mirrors, so each epoch sees new batches."""
    outputs = cfg.model.outputs

    def to_xy(xf):
        labels = {features.RATIO_LABEL: xf[features.RATIO_XF][:, None],
                  features.GENDER_LABEL: tf.cast(xf[features.GENDER_XF], tf.float32)[:, None]}
        weights = {features.RATIO_LABEL: xf[features.WEIGHT_XF],
                   features.GENDER_LABEL: tf.ones_like(xf[features.WEIGHT_XF])}
        return ({features.IMAGE_XF: tf.cast(xf[features.IMAGE_XF], tf.float32)},
                {k: labels[k] for k in outputs}, {k: weights[k] for k in outputs})

    if training:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
        if cfg.flip:
            ds = ds.map(random_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(cfg.batch_size).map(to_xy).prefetch(tf.data.AUTOTUNE)


def make_dataset(file_pattern, tf_transform_output: tft.TFTransformOutput, cfg: TrainConfig, training: bool,
                 mean_swipes: float = 1.0) -> tf.data.Dataset:
    """Transformed examples -> (image, labels, sample weights) batches."""
    return batches(transformed_dataset(file_pattern, tf_transform_output, cfg, mean_swipes), cfg, training)


def random_flip(xf: dict) -> dict:
    """The training augmentation: one transformed example's image mirrored left-right with
    probability 1/2, drawn anew every epoch."""
    image = xf[features.IMAGE_XF]
    return {**xf, features.IMAGE_XF: tf.where(tf.random.uniform(()) < 0.5, tf.image.flip_left_right(image), image)}


def image_size_of(tf_transform_output: tft.TFTransformOutput) -> int:
    """The Transform graph decides the pixel layout; the model follows it."""
    return int(tf_transform_output.transformed_feature_spec()[features.IMAGE_XF].shape[0])


def compile_model(model: tf.keras.Model, cfg: TrainConfig, learning_rate: float | None = None,
                  rate_scales: list | None = None) -> None:
    """rate_scales: (variable, factor) pairs that learn at factor x the learning rate."""
    losses = {features.RATIO_LABEL: "mse", features.GENDER_LABEL: "binary_crossentropy"}
    loss_weights = {features.RATIO_LABEL: 1.0, features.GENDER_LABEL: cfg.gender_loss_weight}
    mets = {features.RATIO_LABEL: [tf.keras.metrics.MeanSquaredError(name="wmse")],
            features.GENDER_LABEL: [tf.keras.metrics.BinaryAccuracy(name="accuracy")]}
    outs = cfg.model.outputs
    model.compile(
        optimizer=finetune.ScaledAdam(cfg.learning_rate if learning_rate is None else learning_rate,
                                      rate_scales or []),
        loss={k: losses[k] for k in outs}, loss_weights={k: loss_weights[k] for k in outs},
        weighted_metrics={k: mets[k] for k in outs})


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    learning_rate: float
    trainable_blocks: int  # as TrainConfig.trainable_blocks
    block_decay: float = 1.0  # as TrainConfig.fine_tune_block_decay


def phases(cfg: TrainConfig) -> list[Phase]:
    """The study's schedule: head on the frozen backbone, then fine-tuning at a lower rate."""
    out = []
    if cfg.head_epochs > 0:
        out.append(Phase("head", cfg.head_epochs, cfg.learning_rate, 0))
    if cfg.epochs > 0:
        if not 0 < cfg.fine_tune_block_decay <= 1:
            raise ValueError(f"fine_tune_block_decay must be in (0, 1], got {cfg.fine_tune_block_decay}")
        out.append(Phase("fine_tune", cfg.epochs, cfg.fine_tune_learning_rate or cfg.learning_rate,
                         cfg.trainable_blocks, cfg.fine_tune_block_decay))
    if not out:
        raise ValueError("nothing to train: head_epochs and epochs are both 0")
    return out


def monitored_metric(cfg: TrainConfig) -> str:
    """Early stopping and best-epoch choice follow eval weighted MSE (eval loss for gender alone)."""
    return f"val_{features.RATIO_LABEL}_wmse" if features.RATIO_LABEL in cfg.model.outputs else "val_loss"


def fit_phase(model: tf.keras.Model, train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset, cfg: TrainConfig,
              phase: Phase, initial_epoch: int = 0, callbacks: list | None = None,
              rate_scales: list | None = None) -> tf.keras.callbacks.History:
    """Compiles at the phase's rate (rate_scales: as compile_model) and fits, with early stopping
    on the monitored eval metric."""
    compile_model(model, cfg, phase.learning_rate, rate_scales)
    cbs = list(callbacks or [])
    if cfg.early_stopping_patience > 0:
        cbs.append(tf.keras.callbacks.EarlyStopping(
            monitor=monitored_metric(cfg), mode="min", patience=cfg.early_stopping_patience, restore_best_weights=True))
    return model.fit(train_ds, validation_data=eval_ds, initial_epoch=initial_epoch,
                     epochs=initial_epoch + phase.epochs, callbacks=cbs, verbose=2)


class FrozenInputs:
    """The training and eval splits' transformed examples, and where a phase's frozen outputs go.

    for_phase computes a phase's frozen outputs once (trainer/frozen.py) and gives the part of the
    model that trains, with its datasets; a phase that trains the whole backbone gets None.

    The images go through the backbone once in all: when a head phase precedes a phase that trains
    the top N blocks, the head phase computes the outputs below those blocks (which the later phase
    reuses) and takes its own inputs from them through the top N blocks alone."""

    def __init__(self, train_xf: tf.data.Dataset, eval_xf: tf.data.Dataset, cfg: TrainConfig, work_dir: str):
        self.train_xf, self.eval_xf, self.cfg, self.work_dir = train_xf, eval_xf, cfg, work_dir
        self._splits: dict[str, tuple[frozen.FrozenSplit, frozen.FrozenSplit]] = {}

    def _from_images(self, model: tf.keras.Model, phase: Phase) -> tuple[frozen.FrozenSplit, frozen.FrozenSplit]:
        """(train, eval) outputs of the part a phase leaves frozen, from the images, once."""
        if phase.name not in self._splits:
            cfg = self.cfg
            part, _ = frozen.split_model(model, cfg.model.backbone, phase.trainable_blocks)
            # The head's inputs are small; activations inside the backbone are stored at half precision.
            dtype = tf.float32 if phase.trainable_blocks == 0 else tf.float16
            where = os.path.join(self.work_dir, f"{phase.name}_top{phase.trainable_blocks}")
            run = frozen.forward(part, dtype, flip=bool(cfg.flip))
            self._splits[phase.name] = (
                frozen.write(run, self.train_xf, os.path.join(where, "train.tfrecord"), bool(cfg.flip), dtype),
                frozen.write(run, self.eval_xf, os.path.join(where, "eval.tfrecord"), False, dtype))
        return self._splits[phase.name]

    def for_phase(self, model: tf.keras.Model, phase: Phase):
        if phase.trainable_blocks < 0:
            return None
        cfg = self.cfg
        later = [p for p in phases(cfg) if p.trainable_blocks > 0]
        if phase.trainable_blocks == 0 and later:
            lower = self._from_images(model, later[0])
            _, top_blocks, _ = finetune.split_for_fine_tuning(model, cfg.model.backbone, later[0].trainable_blocks)
            where = os.path.join(self.work_dir, f"{phase.name}_top0")
            train_split, eval_split = (frozen.derive(top_blocks, s, os.path.join(where, f"{name}.tfrecord"))
                                       for s, name in zip(lower, ("train", "eval")))
        else:
            train_split, eval_split = self._from_images(model, phase)
        _require_photos(train_split.count, "training", cfg)
        _require_photos(eval_split.count, "eval", cfg)
        top = frozen.split_model(model, cfg.model.backbone, phase.trainable_blocks)[1]
        outputs = cfg.model.outputs
        return (top, frozen.dataset(train_split, outputs, cfg.batch_size, True, cfg.shuffle_buffer, cfg.seed),
                frozen.dataset(eval_split, outputs, cfg.batch_size, False))


def fit_phases(model: tf.keras.Model, train_ds: tf.data.Dataset | None, eval_ds: tf.data.Dataset | None,
               cfg: TrainConfig,
               callbacks: list | None = None, frozen_inputs: FrozenInputs | None = None) -> dict:
    """Runs every phase; returns the training history the report plots.

    A phase trains the whole model on the image batches (train_ds, eval_ds) or, given
    frozen_inputs and a frozen part, only its trainable part on frozen outputs computed once.
    Pretrained backbones keep their BatchNorm statistics frozen; from scratch they train."""
    history: dict = {"phases": [], "history": {}, "monitor": monitored_metric(cfg)}
    epoch = 0
    for phase in phases(cfg):
        trainable = finetune.set_trainable(model, cfg.model.backbone, phase.trainable_blocks,
                                           batch_norm=cfg.model.weights in ("", "none"))
        on_frozen = frozen_inputs.for_phase(model, phase) if frozen_inputs is not None else None
        fit_model, fit_train, fit_eval = on_frozen or (model, train_ds, eval_ds)
        logging.info("phase %s: %d epochs at learning rate %g (x %g per block down), %d backbone layers "
                     "train, %s", phase.name, phase.epochs, phase.learning_rate, phase.block_decay, trainable,
                     "on frozen outputs computed once" if on_frozen else "on images")
        scales = finetune.block_rate_scales(model, cfg.model.backbone, phase.trainable_blocks, phase.block_decay)
        h = fit_phase(fit_model, fit_train, fit_eval, cfg, phase, epoch, callbacks, scales)
        ran = len(h.epoch)
        history["phases"].append({"name": phase.name, "first_epoch": epoch, "epochs": ran,
                                  "learning_rate": phase.learning_rate, "block_decay": phase.block_decay,
                                  "trainable_backbone_layers": trainable,
                                  "on_frozen_outputs": bool(on_frozen)})
        for k, v in h.history.items():
            history["history"].setdefault(k, []).extend(float(x) for x in v)
        epoch += ran
    return history


def _require_photos(count: int, split: str, cfg: TrainConfig) -> None:
    """A filter can leave a split empty; say why instead of Keras' "Empty logs"."""
    if count:
        return
    if cfg.starred_only:
        raise ValueError(f"starred_only=1 left no {split} photos: none has exactly one face")
    raise ValueError(f"the {split} split has no photos")


def _any(ds: tf.data.Dataset) -> int:
    """1 if a split (after any starred filter) holds a photo, else 0: one parsed batch, not a pass
    over the split's crops."""
    return sum(1 for _ in ds.take(1))


def train(train_files, eval_files, tf_transform_output: tft.TFTransformOutput, cfg: TrainConfig,
          log_dir: str | None = None, machine: distribute.Machine | None = None,
          work_dir: str | None = None) -> tf.keras.Model:
    """Fits the model on the Transform component's transformed examples (gzipped TFRecords) and
    returns it. The strategy and float policy follow the machine; eval metrics per epoch go to
    TensorBoard and, with the phases, to HISTORY_FILE in log_dir. Frozen outputs go to work_dir
    (by default a temporary folder, removed after training)."""
    tf.keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    machine = machine or distribute.detect()
    kind, policy = distribute.strategy_kind(machine), distribute.precision(machine, cfg.precision)
    logging.info("machine %s: strategy %s, precision %s", machine, kind, policy)
    priors = label_stats(train_files)
    logging.info("training priors: %s", priors)
    on_images = not cfg.frozen_cache or any(p.trainable_blocks < 0 for p in phases(cfg))
    with tempfile.TemporaryDirectory(prefix="frozen-") as scratch, \
            distribute.make_strategy(kind).scope(), distribute.float_policy(policy):
        model = build_model(cfg.model, image_size_of(tf_transform_output), priors["ratio_prior"], priors["male_prior"])
        train_xf = transformed_dataset(train_files, tf_transform_output, cfg, priors["mean_swipes"])
        eval_xf = transformed_dataset(eval_files, tf_transform_output, cfg, priors["mean_swipes"])
        train_ds, eval_ds = batches(train_xf, cfg, training=True), batches(eval_xf, cfg, training=False)
        frozen_inputs = FrozenInputs(train_xf, eval_xf, cfg, work_dir or scratch) if cfg.frozen_cache else None
        if on_images:
            _require_photos(_any(train_xf), "training", cfg)
            _require_photos(_any(eval_xf), "eval", cfg)
        callbacks = [tf.keras.callbacks.TensorBoard(log_dir, profile_batch=0)] if log_dir else []
        history = fit_phases(model, train_ds, eval_ds, cfg, callbacks, frozen_inputs)
        if on_images:
            recalibrate_batch_norm(model, train_ds, cfg.bn_recalibration_batches)
    if log_dir:
        with tf.io.gfile.GFile(os.path.join(log_dir, HISTORY_FILE), "w") as f:
            json.dump(history, f, indent=1)
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


def _prediction_outputs(model: tf.keras.Model, xf: dict, mirrored: bool) -> dict:
    def predict(image):  # a request may hold no photo: see faces.nonempty
        return faces.nonempty(lambda x: model({features.IMAGE_XF: x}, training=False), image)

    image = tf.cast(xf[features.IMAGE_XF], tf.float32)
    if mirrored:  # the crops and their mirrors in one backbone call: one batch of 2n, not two of n
        n = tf.shape(image)[0]
        both = predict(tf.concat([image, tf.image.flip_left_right(image)], 0))
        preds = {k: (v[:n] + v[n:]) / 2 for k, v in both.items()}
    else:
        preds = predict(image)
    out = {features.OUT_FACE_COUNT: xf[features.FACE_COUNT_XF], features.OUT_FACE_BOX: xf[features.FACE_BOX_XF],
           features.OUT_FACE_CONFIDENCE: xf[features.FACE_CONFIDENCE_XF]}
    if features.RATIO_LABEL in preds:
        out[features.OUT_RATIO] = tf.squeeze(preds[features.RATIO_LABEL], -1)
    if features.GENDER_LABEL in preds:
        out[features.OUT_MALE] = tf.squeeze(preds[features.GENDER_LABEL], -1)
    return out


def export(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, serving_dir: str,
           mirrored: bool = False) -> str:
    """SavedModel whose signatures run the Transform graph, so serving cannot skew from training.
    mirrored: each prediction is the mean over the crop and its mirror (TrainConfig.serve_mirrored)."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    # No autograph (as in frozen.forward): nothing here branches on tensors, and converting the
    # Keras call stack of a whole backbone takes minutes.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGE_BYTES_INPUT)], autograph=False)
    def serve_images(image_bytes):
        return _prediction_outputs(model, model.tft_layer({features.IMAGE_KEY: image_bytes}), mirrored)

    image_only = {features.IMAGE_KEY: tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)], autograph=False)
    def serve_examples(examples):  # calls serve_images' graph, so the backbone is traced once, not twice
        return serve_images(tf.io.parse_example(examples, image_only)[features.IMAGE_KEY])

    # Every reader (TF Serving, the Evaluator, predict) uses the signatures alone, so the per-layer
    # Keras call traces, which cost minutes for a whole backbone, are not saved.
    model.save(serving_dir, save_format="tf", save_traces=False,
               signatures={features.SERVING_DEFAULT: serve_images, features.SERVING_EXAMPLES: serve_examples})
    return serving_dir
