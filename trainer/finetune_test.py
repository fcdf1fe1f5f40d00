"""The study's schedule: head on a frozen backbone, then its top blocks at a lower rate."""
import numpy as np
import pytest
import tensorflow as tf

from deepattraction.trainer import features, finetune
from deepattraction.trainer.model import ModelConfig, build_model
from deepattraction.trainer.train import Phase, TrainConfig, fit_phases, monitored_metric, phases


def _trainable_names(model):
    return {layer.name for layer in finetune.backbone_of(model).layers if layer.trainable and layer.weights}


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(task="both", head_layers=2, head_width=8), 75, 0.3, 0.5)


def test_schedule_from_config():
    assert phases(TrainConfig(epochs=4)) == [Phase("fine_tune", 4, 1e-3, -1)]
    cfg = TrainConfig(head_epochs=2, epochs=3, learning_rate=1e-3, fine_tune_learning_rate=1e-5, trainable_blocks=2)
    assert phases(cfg) == [Phase("head", 2, 1e-3, 0), Phase("fine_tune", 3, 1e-5, 2)]
    with pytest.raises(ValueError, match="nothing to train"):
        phases(TrainConfig(head_epochs=0, epochs=0))
    assert monitored_metric(TrainConfig(model=ModelConfig(task="gender"))) == "val_loss"
    assert monitored_metric(TrainConfig()) == "val_like_ratio_wmse"


def test_top_blocks_unfreeze_from_the_top(model):
    backbone = finetune.backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    assert finetune.set_trainable(model, "inception_v3", 0, batch_norm=True) == 0
    assert all(layer.trainable for layer in model.layers if layer.name.startswith(("head_", "like_ratio", "gender")))
    one = finetune.set_trainable(model, "inception_v3", 1, batch_norm=True)
    top = _trainable_names(model)
    assert top and all(names.index(n) > names.index("mixed9") for n in top)  # only the last module, mixed10
    two = finetune.set_trainable(model, "inception_v3", 2, batch_norm=True)
    assert two > one and all(names.index(n) > names.index("mixed8") for n in _trainable_names(model))
    no_bn = finetune.set_trainable(model, "inception_v3", 2, batch_norm=False)
    assert no_bn < two and not any(isinstance(layer, tf.keras.layers.BatchNormalization) and layer.trainable
                                   for layer in backbone.layers)
    everything = finetune.set_trainable(model, "inception_v3", -1, batch_norm=True)
    assert everything == sum(1 for layer in backbone.layers if layer.weights)
    assert finetune.set_trainable(model, "inception_v3", 99, batch_norm=True) == everything


def test_phases_train_what_they_say_and_early_stopping_ends_a_phase():
    """Head phase: the backbone's weights stay put, the head's move. Fine-tuning moves only the top
    block. A monitored eval metric that only gets worse stops fine-tuning after 2 of 4 epochs
    (patience 1): the test's callback runs before early stopping and overwrites it."""
    cfg = TrainConfig(model=ModelConfig(task="both", head_layers=2, head_width=8), head_epochs=1, epochs=4,
                      learning_rate=1e-2, fine_tune_learning_rate=1e-2, trainable_blocks=1,
                      early_stopping_patience=1, batch_size=8)
    m = build_model(cfg.model, 75, 0.3, 0.5)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 75, 75, 3)).astype("float32")
    y = {features.RATIO_LABEL: rng.uniform(0, 1, (16, 1)).astype("float32"),
         features.GENDER_LABEL: rng.integers(0, 2, (16, 1)).astype("float32")}
    w = {k: np.ones(16, "float32") for k in y}
    ds = tf.data.Dataset.from_tensor_slices(({features.IMAGE_XF: x}, y, w)).batch(8)
    backbone = finetune.backbone_of(m)
    snapshots = [[v.numpy().copy() for v in backbone.weights]]
    head_before = m.get_layer("head_dense_0").kernel.numpy().copy()
    seen = []

    class Probe(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(_trainable_names(m))

        def on_epoch_end(self, epoch, logs=None):
            logs[monitored_metric(cfg)] = 1.0 + epoch  # worse every epoch

        def on_train_end(self, logs=None):
            snapshots.append([v.numpy().copy() for v in backbone.weights])

    history = fit_phases(m, ds, ds, cfg, [Probe()])
    assert [p["name"] for p in history["phases"]] == ["head", "fine_tune"]
    assert seen[0] == set() and seen[1] and all(n.startswith(("conv2d", "batch_normalization")) for n in seen[1])
    assert history["phases"][1]["first_epoch"] == 1 and history["phases"][1]["epochs"] == 2  # stopped early
    assert len(history["history"]["val_like_ratio_wmse"]) == 3 and history["monitor"] == "val_like_ratio_wmse"
    assert not np.allclose(m.get_layer("head_dense_0").kernel.numpy(), head_before)

    def changed(a, b):
        return {v.name.split("/")[0] for v, p, q in zip(backbone.weights, a, b) if not np.allclose(p, q)}

    assert changed(snapshots[0], snapshots[1]) == set()  # the head phase leaves the backbone alone
    moved = changed(snapshots[1], snapshots[2])
    assert moved and moved <= seen[1]  # fine-tuning moves the top block only


def test_head_on_features_shares_the_heads_layers(model):
    head = finetune.head_on_features(model)
    backbone = finetune.backbone_of(model)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    whole = model(x, training=False)
    parts = head(backbone(x, training=False), training=False)
    for k in whole:
        np.testing.assert_allclose(parts[k].numpy(), whole[k].numpy(), rtol=1e-5)
    assert head.get_layer("head_dense_0") is model.get_layer("head_dense_0") and backbone not in head.layers


def test_split_for_fine_tuning_composes_to_the_model_and_shares_its_layers(model):
    frozen, top_backbone, top = finetune.split_for_fine_tuning(model, "inception_v3", 2)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    whole, parts = model(x, training=False), top(frozen(x, training=False), training=False)
    for k in whole:
        np.testing.assert_allclose(parts[k].numpy(), whole[k].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(top_backbone(frozen(x)).numpy(), finetune.backbone_of(model)(x).numpy(), rtol=1e-4,
                               atol=1e-6)
    assert frozen.layers[-1].name == "mixed8"
    assert top.get_layer("mixed10") is finetune.backbone_of(model).get_layer("mixed10")
    finetune.set_trainable(model, "inception_v3", 2, batch_norm=False)
    assert {v.ref() for v in top.trainable_weights} >= {v.ref() for v in model.trainable_weights}
    assert not frozen.trainable_weights
    assert sorted(top.output_names) == sorted(model.output_names) == [features.GENDER_LABEL, features.RATIO_LABEL]


def test_scaled_adam_steps_a_scaled_variable_by_its_factor_of_adams_step():
    """Same start, same gradients: the variable at factor 0.25 moves a quarter as far as Adam moves
    the other, every step (Adam's moments do not depend on the rate)."""
    a, b = tf.Variable([1.0, -2.0, 0.5]), tf.Variable([1.0, -2.0, 0.5])
    opt = finetune.ScaledAdam(1e-2, [(b, 0.25)])
    rng = np.random.default_rng(3)
    for _ in range(4):
        g = tf.constant(rng.normal(size=3).astype("float32"))
        start_a, start_b = a.numpy().copy(), b.numpy().copy()
        opt.apply_gradients([(g, a), (g, b)])
        assert np.abs(a.numpy() - start_a).min() > 1e-4
        np.testing.assert_allclose(b.numpy() - start_b, 0.25 * (a.numpy() - start_a), rtol=1e-4)


def test_block_rates_fall_by_the_decay_per_block_down(model):
    finetune.set_trainable(model, "inception_v3", 3, batch_norm=True)
    scales = finetune.block_rate_scales(model, "inception_v3", 3, 0.5)
    backbone = finetune.backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    layer_of = {v.ref(): layer.name for layer in backbone.layers for v in layer.weights}
    by_factor: dict = {}
    for v, f in scales:
        by_factor.setdefault(f, set()).add(names.index(layer_of[v.ref()]))
    assert sorted(by_factor) == [0.25, 0.5]
    # mixed9's module at half the rate, mixed8's at a quarter; mixed10's and the head's are absent: the full rate
    assert names.index("mixed8") < min(by_factor[0.5]) and max(by_factor[0.5]) <= names.index("mixed9")
    assert names.index("mixed7") < min(by_factor[0.25]) and max(by_factor[0.25]) <= names.index("mixed8")
    assert finetune.block_rate_scales(model, "inception_v3", 3, 1.0) == []
    assert finetune.block_rate_scales(model, "inception_v3", 1, 0.5) == []


def test_a_fine_tuning_phase_with_block_decay_moves_lower_blocks_less():
    """Two top blocks at decay 1e-6: the upper block moves, the one below it all but stays put."""
    cfg = TrainConfig(model=ModelConfig(task="ratio", head_layers=1, head_width=4), head_epochs=0, epochs=2,
                      learning_rate=1e-2, trainable_blocks=2, fine_tune_block_decay=1e-6, batch_size=8)
    m = build_model(cfg.model, 75, 0.3, 0.5)
    rng = np.random.default_rng(4)
    ds = tf.data.Dataset.from_tensor_slices(
        ({features.IMAGE_XF: rng.uniform(-1, 1, (16, 75, 75, 3)).astype("float32")},
         {features.RATIO_LABEL: rng.uniform(0, 1, (16, 1)).astype("float32")},
         {features.RATIO_LABEL: np.ones(16, "float32")})).batch(8)
    backbone = finetune.backbone_of(m)
    names = [layer.name for layer in backbone.layers]
    upper = [v for layer in backbone.layers[names.index("mixed9") + 1:] for v in layer.trainable_weights]
    lower = [v for layer in backbone.layers[names.index("mixed8") + 1:names.index("mixed9") + 1]
             for v in layer.trainable_weights]
    before = {v.ref(): v.numpy().copy() for v in upper + lower}
    history = fit_phases(m, ds, ds, cfg)
    assert history["phases"][0]["block_decay"] == 1e-6

    def moved(vs):
        return max(float(np.abs(v.numpy() - before[v.ref()]).max()) for v in vs)

    assert moved(upper) > 1e-3 and moved(lower) < 1e-6 * moved(upper) * 10
    with pytest.raises(ValueError, match="fine_tune_block_decay"):
        phases(TrainConfig(epochs=1, fine_tune_block_decay=0))
