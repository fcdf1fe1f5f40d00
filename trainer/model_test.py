"""Model construction, prior-initialised heads, and the swipe-count loss weighting."""
import numpy as np
import pytest
import tensorflow as tf

from deepattraction.trainer import features
from deepattraction.trainer.model import ModelConfig, build_model
from deepattraction.trainer.train import TrainConfig, compile_model, recalibrate_batch_norm


@pytest.fixture(scope="module")
def both_model():
    return build_model(ModelConfig(task="both", head_layers=3, head_width=8), 75, ratio_prior=0.3, male_prior=0.58)


def test_heads_start_at_the_training_priors(both_model):
    out = both_model(np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32"), training=False)
    assert set(out) == {features.RATIO_LABEL, features.GENDER_LABEL}
    np.testing.assert_allclose(out[features.RATIO_LABEL].numpy(), 0.3, atol=1e-4)
    np.testing.assert_allclose(out[features.GENDER_LABEL].numpy(), 0.58, atol=1e-4)
    heads = [layer.name for layer in both_model.layers if layer.name.startswith("head_dense")]
    assert heads == ["head_dense_0", "head_dense_1"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        ModelConfig(head_layers=4)
    with pytest.raises(ValueError):
        ModelConfig(task="age")
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        TrainConfig.from_dict({"epochz": 3})
    cfg = TrainConfig.from_dict({"epochs": 2, "task": "ratio", "head_layers": 2})
    assert cfg.epochs == 2 and cfg.model.task == "ratio" and cfg.model.outputs == (features.RATIO_LABEL,)


def test_ratio_loss_is_mse_weighted_by_swipe_count():
    model = build_model(ModelConfig(task="ratio"), 75, ratio_prior=0.5)
    compile_model(model, TrainConfig(model=ModelConfig(task="ratio")))
    x = np.zeros((2, 75, 75, 3), "float32")
    y = {features.RATIO_LABEL: np.array([[0.1], [0.9]], "float32")}  # the model predicts 0.5 for both
    weighted = model.evaluate(x, y, sample_weight={features.RATIO_LABEL: np.array([3.0, 1.0])}, verbose=0,
                              return_dict=True)
    # Keras' loss is sum(w * e^2) / batch; the weighted metric is the study's sum(w * e^2) / sum(w).
    assert weighted["loss"] == pytest.approx((3 * 0.16 + 1 * 0.16) / 2, rel=1e-4)
    assert weighted["wmse"] == pytest.approx(0.16, rel=1e-4)
    y2 = {features.RATIO_LABEL: np.array([[0.1], [0.5]], "float32")}
    heavy_first = model.evaluate(x, y2, sample_weight={features.RATIO_LABEL: np.array([3.0, 1.0])}, verbose=0,
                                 return_dict=True)
    heavy_second = model.evaluate(x, y2, sample_weight={features.RATIO_LABEL: np.array([1.0, 3.0])}, verbose=0,
                                  return_dict=True)
    assert heavy_first["wmse"] == pytest.approx(0.12, rel=1e-4) and heavy_second["wmse"] == pytest.approx(0.04,
                                                                                                          rel=1e-4)


def test_batch_norm_recalibration_replaces_lagging_moving_statistics():
    inp = tf.keras.Input((4,))
    bn = tf.keras.layers.BatchNormalization(momentum=0.99)
    model = tf.keras.Model(inp, bn(inp))
    rng = np.random.default_rng(0)
    batches = [rng.normal(5.0, 2.0, (64, 4)).astype("float32") for _ in range(4)]
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(256), np.ones(256))).batch(64)
    assert np.allclose(bn.moving_mean.numpy(), 0.0)  # never trained: inference would be wrong
    assert recalibrate_batch_norm(model, ds, batches=10) == 4
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-4)
    assert bn.momentum == 0.99


def test_named_weights_that_are_missing_stop_the_build_naming_the_path(tmp_path):
    """A recipe's pretrained weights never turn into random weights in silence."""
    missing = str(tmp_path / "facenet_inception_resnet_v1.h5")
    with pytest.raises(FileNotFoundError, match=f"pretrained weights {missing} do not exist"):
        build_model(ModelConfig(backbone="facenet", weights=missing), 80)
