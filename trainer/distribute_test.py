"""Strategy and precision follow the machine; the training code runs under a real MirroredStrategy."""
import json
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from deepattraction.trainer import distribute
from deepattraction.trainer.finetune import backbone_of
from deepattraction.trainer.model import ModelConfig, build_model


def test_strategy_follows_the_machine():
    assert distribute.strategy_kind(distribute.Machine(gpus=0, workers=1)) == "default"
    assert distribute.strategy_kind(distribute.Machine(gpus=1, workers=1)) == "one_gpu"
    assert distribute.strategy_kind(distribute.Machine(gpus=4, workers=1)) == "mirrored"
    assert distribute.strategy_kind(distribute.Machine(gpus=4, workers=3)) == "multi_worker"
    assert isinstance(distribute.make_strategy("default"), tf.distribute.Strategy)
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.make_strategy("tpu")


def test_tf_config_gives_workers_and_the_chief():
    cluster = {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"]}
    chief = distribute.detect(json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    worker0 = distribute.detect(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert chief.workers == 3 and chief.is_chief and not worker0.is_chief
    no_chief = distribute.detect(json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                             "task": {"type": "worker", "index": 0}}))
    assert no_chief.workers == 2 and no_chief.is_chief
    assert not distribute.detect(json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                             "task": {"type": "worker", "index": 1}})).is_chief
    alone = distribute.detect("")
    assert alone.workers == 1 and alone.is_chief and alone.gpus == len(tf.config.list_physical_devices("GPU"))


def test_mixed_precision_only_on_gpus_and_scoped():
    assert distribute.precision(distribute.Machine(gpus=0, workers=1)) == "float32"
    assert distribute.precision(distribute.Machine(gpus=2, workers=1)) == "mixed_float16"
    assert distribute.precision(distribute.Machine(gpus=2, workers=1), "float32") == "float32"
    with pytest.raises(ValueError):
        distribute.precision(distribute.Machine(gpus=0, workers=1), "bfloat8")
    before = tf.keras.mixed_precision.global_policy().name
    with distribute.float_policy("mixed_float16"):
        model = build_model(ModelConfig(task="both", head_layers=2, head_width=8), 75)
    assert tf.keras.mixed_precision.global_policy().name == before
    convs = [layer for layer in backbone_of(model).layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    out = model(tf.zeros((1, 75, 75, 3)), training=False)
    assert all(v.dtype == tf.float32 for v in out.values())  # the heads' outputs and losses stay float32


MIRRORED = textwrap.dedent("""
    import deepattraction  # its __init__ picks Keras 2 before TensorFlow loads
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from deepattraction.trainer import features
    from deepattraction.trainer.model import ModelConfig, build_model
    from deepattraction.trainer.train import TrainConfig, fit_phases
    cfg = TrainConfig(model=ModelConfig(task="both"), head_epochs=1, epochs=0, batch_size=8)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 75, 75, 3)).astype("float32")
    y = {features.RATIO_LABEL: rng.uniform(0, 1, (16, 1)).astype("float32"),
         features.GENDER_LABEL: rng.integers(0, 2, (16, 1)).astype("float32")}
    w = {k: np.ones(16, "float32") for k in y}
    ds = tf.data.Dataset.from_tensor_slices(({features.IMAGE_XF: x}, y, w)).batch(8)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build_model(cfg.model, 75)
        history = fit_phases(model, ds, ds, cfg)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history["history"]["loss"]}))
""")


def test_training_runs_under_a_real_mirrored_strategy():
    """Two replicas (logical CPUs stand in for a node's GPUs): the same fit_phases trains."""
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and len(result["loss"]) == 1 and result["loss"][0] > 0
