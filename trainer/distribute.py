"""The tf.distribute strategy and float policy, chosen from the machine rather than from code.

One process on a CPU node or one GPU: the default or a one-device strategy. Several GPUs on a
node: MirroredStrategy. A TF_CONFIG naming several workers (what KFP/Vertex training jobs and
the TF operator set): MultiWorkerMirroredStrategy. Mixed float16 only where there is a GPU."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import tensorflow as tf

PRECISION_SETTINGS = ("auto", "float32", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class Machine:
    gpus: int
    workers: int  # from TF_CONFIG's cluster; 1 without one
    task_type: str = "chief"
    task_index: int = 0
    has_chief: bool = False  # TF_CONFIG names a chief task

    @property
    def is_chief(self) -> bool:
        """The one worker that writes the model (TF_CONFIG's chief, or worker 0 without a chief)."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0 and not self.has_chief)


def detect(tf_config: str | None = None) -> Machine:
    """Reads the GPUs TF sees and TF_CONFIG (the environment's, unless given)."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    cfg = json.loads(raw) if raw.strip() else {}
    cluster = cfg.get("cluster", {})
    workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) or 1
    task = cfg.get("task", {})
    return Machine(gpus=len(tf.config.list_physical_devices("GPU")), workers=workers,
                   task_type=task.get("type", "chief"), task_index=int(task.get("index", 0)),
                   has_chief="chief" in cluster)


def strategy_kind(m: Machine) -> str:
    if m.workers > 1:
        return "multi_worker"
    if m.gpus > 1:
        return "mirrored"
    if m.gpus == 1:
        return "one_gpu"
    return "default"


def make_strategy(kind: str) -> tf.distribute.Strategy:
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "one_gpu":
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy kind {kind!r}")


def precision(m: Machine, setting: str = "auto") -> str:
    """float16 compute halves memory and uses tensor cores on GPUs; on CPUs it is slower."""
    if setting not in PRECISION_SETTINGS:
        raise ValueError(f"precision {setting!r} not in {PRECISION_SETTINGS}")
    if setting != "auto":
        return setting
    return "mixed_float16" if m.gpus else "float32"


@contextlib.contextmanager
def float_policy(name: str):
    """Layers built inside take this policy; the global policy is restored afterwards."""
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def set_threads(intra_op: int, inter_op: int = 0) -> None:
    """Fixes TensorFlow's thread pools for this process; call it before any op runs. Float
    reductions split by thread, so the same count gives the same sums run after run; different
    counts (machines) may differ in the last bits."""
    if intra_op < 0 or inter_op < 0:
        raise ValueError(f"thread counts must be >= 0 (0: TensorFlow's default), got {intra_op}, {inter_op}")
    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
