"""Pusher: TFX's Pusher whose pushed versions carry TF Serving's warmup requests."""
from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from deepattraction.components.pusher import executor


class Pusher(tfx.components.Pusher):
    """Same inputs, outputs and parameters as TFX's Pusher (so the pipeline spec and the blessing
    check stay TFX's); only the executor differs: it adds assets.extra/tf_serving_warmup_requests."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
