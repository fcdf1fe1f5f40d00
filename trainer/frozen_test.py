"""Frozen outputs computed once: the same training as running the frozen backbone every epoch."""
import numpy as np
import tensorflow as tf

from deepattraction.trainer import features, finetune, frozen
from deepattraction.trainer.model import ModelConfig, build_model
from deepattraction.trainer.train import FrozenInputs, TrainConfig, batches, fit_phases, phases

N = 24


def _transformed(seed: int) -> tf.data.Dataset:
    """Transformed examples as the Transform layer gives them, one dict per photo."""
    rng = np.random.default_rng(seed)
    return tf.data.Dataset.from_tensor_slices({
        features.IMAGE_XF: rng.integers(0, 256, (N, 75, 75, 3)).astype("uint8"),
        features.RATIO_XF: rng.uniform(0, 1, N).astype("float32"),
        features.WEIGHT_XF: rng.uniform(0.5, 2, N).astype("float32"),
        features.GENDER_XF: rng.integers(0, 2, N),
        features.FACE_COUNT_XF: np.ones(N, "int64")})


def test_written_outputs_are_the_frozen_parts_of_each_photo_and_its_mirror(tmp_path):
    model = build_model(ModelConfig(head_layers=1), 75, 0.3, 0.5)
    backbone = finetune.backbone_of(model)
    part, _ = frozen.split_model(model, "inception_v3", 0)
    xf = _transformed(0)
    split = frozen.write(frozen.forward(part), xf, str(tmp_path / "train.tfrecord"), flip=True)
    assert split.count == N and split.shape == (2048,) and split.flipped
    images = np.stack([x[features.IMAGE_XF] for x in xf.as_numpy_iterator()]).astype("float32") / 127.5 - 1
    want = backbone(images, training=False).numpy()  # the backbone sees the pixels scaled to its range
    want_mirror = backbone(images[:, :, ::-1], training=False).numpy()
    raw = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(split.files)]
    got = np.stack([np.frombuffer(e.features.feature[frozen.FROZEN].bytes_list.value[0], np.float32) for e in raw])
    got_mirror = np.stack([np.frombuffer(e.features.feature[frozen.FROZEN_FLIPPED].bytes_list.value[0], np.float32)
                           for e in raw])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_mirror, want_mirror, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, got_mirror)
    # Eval batches carry the photo's own view, its labels and its weight.
    x, y, w = next(iter(frozen.dataset(split, (features.RATIO_LABEL,), N, training=False)))
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-4, atol=1e-5)
    ratios = np.array([e[features.RATIO_XF] for e in xf.as_numpy_iterator()])
    np.testing.assert_allclose(y[features.RATIO_LABEL].numpy()[:, 0], ratios)
    assert w[features.RATIO_LABEL].shape == (N,)


def test_training_on_frozen_outputs_gives_the_same_head_as_training_on_images(tmp_path):
    """Without shuffling or mirroring both paths see the same batches in the same order, so the
    head must come out the same; the frozen path never runs the backbone after the first pass."""
    cfg = TrainConfig(model=ModelConfig(head_layers=2, head_width=8, dropout=0.0), head_epochs=3, epochs=0,
                      batch_size=8,
                      shuffle_buffer=1, flip=0, learning_rate=1e-2)
    heads = []
    for use_frozen in (False, True):
        tf.keras.utils.set_random_seed(0)
        model = build_model(cfg.model, 75, 0.3, 0.5)
        train_xf, eval_xf = _transformed(1), _transformed(2)
        inputs = FrozenInputs(train_xf, eval_xf, cfg, str(tmp_path / f"frozen{use_frozen}")) if use_frozen else None
        history = fit_phases(model, batches(train_xf, cfg, True), batches(eval_xf, cfg, False), cfg,
                             frozen_inputs=inputs)
        assert history["phases"][0]["on_frozen_outputs"] is use_frozen
        heads.append((model.get_layer("head_dense_0").kernel.numpy(), history["history"]["val_like_ratio_wmse"]))
    # Adam magnifies float noise in gradients near zero, so kernels agree to a small absolute step.
    np.testing.assert_allclose(heads[1][0], heads[0][0], atol=3e-3)
    np.testing.assert_allclose(heads[1][1], heads[0][1], rtol=2e-3)
    assert (tmp_path / "frozenTrue" / "head_top0" / "train.tfrecord").exists()


def test_a_mirrored_split_gives_either_view_at_random(tmp_path):
    model = build_model(ModelConfig(head_layers=1), 75, 0.3, 0.5)
    split = frozen.write(frozen.forward(frozen.split_model(model, "inception_v3", 0)[0]), _transformed(3).take(1),
                         str(tmp_path / "t.tfrecord"),
                         flip=True)
    ex = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(split.files))).numpy())
    own, mirror = (np.frombuffer(ex.features.feature[k].bytes_list.value[0], np.float32)
                   for k in (frozen.FROZEN, frozen.FROZEN_FLIPPED))
    tf.random.set_seed(0)
    ds = frozen.dataset(split, (features.RATIO_LABEL,), 1, training=True).repeat(200)
    views = [0 if np.array_equal(x.numpy()[0], own) else 1 for x, _, _ in ds]
    assert all(np.array_equal(x.numpy()[0], own) or np.array_equal(x.numpy()[0], mirror) for x, _, _ in ds.take(5))
    assert 60 <= sum(views) <= 140


def test_same_seed_same_head_bit_for_bit_with_deterministic_ops(tmp_path):
    """Two trainings with the same seed, shuffling and mirroring on, give identical weights: the
    demo's promise. train() turns op determinism on (deterministic=1)."""
    cfg = TrainConfig(model=ModelConfig(head_layers=2, head_width=8), head_epochs=2, epochs=0, batch_size=8, seed=5)
    tf.config.experimental.enable_op_determinism()
    kernels = []
    for run in range(2):
        tf.keras.utils.set_random_seed(cfg.seed)
        model = build_model(cfg.model, 75, 0.3, 0.5)
        inputs = FrozenInputs(_transformed(1), _transformed(2), cfg, str(tmp_path / f"run{run}"))
        fit_phases(model, None, None, cfg, frozen_inputs=inputs)
        kernels.append([w.numpy() for w in model.get_layer("head_dense_0").weights])
    for a, b in zip(*kernels):
        np.testing.assert_array_equal(a, b)


def test_the_head_phase_takes_its_inputs_from_the_top_blocks_phase_s_outputs(tmp_path, monkeypatch):
    """With a head phase and then the top 2 blocks, the images go through the backbone once: the
    outputs below the top blocks are written from the images (train and eval), and the head's
    inputs derived from them through the top blocks equal the whole backbone's outputs."""
    cfg = TrainConfig(model=ModelConfig(head_layers=1), head_epochs=1, epochs=1, trainable_blocks=2, batch_size=N)
    model = build_model(cfg.model, 75, 0.3, 0.5)
    calls = {"write": 0, "derive": 0}
    for name in calls:
        real = getattr(frozen, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(frozen, name, counted)
    eval_xf = _transformed(2)
    inputs = FrozenInputs(_transformed(1), eval_xf, cfg, str(tmp_path / "work"))
    head, fine_tune = phases(cfg)
    _, _, head_eval = inputs.for_phase(model, head)
    top, _, fine_tune_eval = inputs.for_phase(model, fine_tune)
    assert calls == {"write": 2, "derive": 2}  # below the top blocks from the images once; the head's from those
    assert top.get_layer("mixed10") is finetune.backbone_of(model).get_layer("mixed10")
    assert next(iter(fine_tune_eval))[0].shape[1:] == finetune.backbone_of(model).get_layer("mixed8").output.shape[1:]

    # The derived head inputs are the whole backbone's outputs, up to the half precision of the cut.
    images = np.stack([x[features.IMAGE_XF] for x in eval_xf.as_numpy_iterator()]).astype("float32")
    want = frozen.split_model(model, "inception_v3", 0)[0](images, training=False).numpy()
    got = np.concatenate([x.numpy() for x, _, _ in head_eval])
    assert got.shape == want.shape == (N, 2048)
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999
