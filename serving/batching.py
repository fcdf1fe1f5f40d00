"""Request batching for the local server, as TF Serving's --enable_batching does it.

Concurrent Predict calls for the same signature (and the same inputs' trailing shapes) queue
together; a batch thread runs them as one call of the signature once max_batch_size rows wait or
the oldest has waited batch_timeout_micros, padded up to the next allowed_batch_sizes entry (with
copies of the first row, as TF Serving pads), and each caller gets its own rows back. Unlike TF
Serving, a batch the graph refuses (one undecodable photo) is rerun request by request, so only the
request that holds the bad photo fails. Settings come from TF Serving's own batching.config
(--batching_parameters_file, text BatchingParameters), so kustomize/base/serving/batching.config
configures this server too.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np
import tensorflow as tf

from deepattraction.serving.servable import Code, ServingError


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters; defaults as its BasicBatchScheduler's. A request larger than
    max_batch_size is refused (INVALID_ARGUMENT); beyond max_enqueued_batches full batches waiting,
    UNAVAILABLE (clients retry)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False  # accepted for compatibility: our inputs are fixed per row
    thread_pool_name: str = "batch_threads"

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching: {name} must be >= 1, not {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batching: batch_timeout_micros must be >= 0, not {self.batch_timeout_micros}")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size or sizes[0] < 1):
            raise ValueError(f"batching: allowed_batch_sizes {list(sizes)} must increase and end at "
                             f"max_batch_size {self.max_batch_size} (as TF Serving requires)")

    def padded(self, n: int) -> int:
        """The batch size a batch of n rows runs at."""
        return next((s for s in self.allowed_batch_sizes if s >= n), n)


_WRAPPED = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
            "thread_pool_name", "pad_variable_length_inputs"}  # google.protobuf wrappers: name { value: v }
_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\]|\\.)*"|[{}:]|[^\s{}:#]+')


def parse_batching_config(text: str, source: str = "batching config") -> BatchingParameters:
    """TF Serving's --batching_parameters_file (a text-format BatchingParameters message)."""
    tokens = [t for t in _TOKEN.findall(text) if not t.startswith("#")]
    values: dict = {}
    i = 0

    def take(expected: str | None = None) -> str:
        nonlocal i
        if i >= len(tokens):
            raise ValueError(f"{source}: ends early" + (f", expected {expected!r}" if expected else ""))
        t, i = tokens[i], i + 1
        if expected and t != expected:
            raise ValueError(f"{source}: expected {expected!r}, found {t!r}")
        return t

    while i < len(tokens):
        name = take()
        if name not in _WRAPPED and name != "allowed_batch_sizes":
            raise ValueError(f"{source}: unknown field {name!r} (TF Serving's BatchingParameters has "
                             f"{sorted(_WRAPPED | {'allowed_batch_sizes'})})")
        if name in _WRAPPED:
            if tokens[i:i + 1] == [":"]:
                take(":")
            take("{")
            take("value")
            take(":")
            raw = take()
            take("}")
        else:
            take(":")
            raw = take()
        try:
            if name == "thread_pool_name":
                value = raw.strip('"')
            elif name == "pad_variable_length_inputs":
                value = {"true": True, "false": False}[raw]
            else:
                value = int(raw)
        except (KeyError, ValueError):
            raise ValueError(f"{source}: {name}: bad value {raw!r}") from None
        if name == "allowed_batch_sizes":
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    if "allowed_batch_sizes" in values:
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
    return BatchingParameters(**values)


def read_batching_config(path: str) -> BatchingParameters:
    with tf.io.gfile.GFile(path) as f:
        return parse_batching_config(f.read(), path)


@dataclasses.dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: Future
    enqueued: float


Run = Callable[..., dict[str, tf.Tensor]]  # a signature's function: inputs as keyword arguments


class Batcher:
    """A shared scheduler: one queue per (function, input shapes) key, num_batch_threads threads
    that run whichever queue has a full batch, or the one whose oldest task has waited longest
    past the timeout. `run(fn, inputs)` blocks the caller until its own rows are back."""

    def __init__(self, params: BatchingParameters):
        self.params = params
        self._queues: dict[tuple, collections.deque[_Task]] = {}
        self._fns: dict[tuple, Run] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self.batch_sizes: list[int] = []  # rows of each batch run (before padding), for tests and benches
        self._threads = [threading.Thread(target=self._loop, name=f"{params.thread_pool_name}-{k}", daemon=True)
                         for k in range(params.num_batch_threads)]
        for t in self._threads:
            t.start()

    def run(self, fn: Run, inputs: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
        """fn's outputs for these inputs (rows on axis 0), computed in a batch with other callers'."""
        rows = {len(v) for v in inputs.values()}
        if len(rows) != 1:
            raise ValueError(f"batching: inputs disagree on their batch size: {sorted(rows)}")
        n = rows.pop()
        if n > self.params.max_batch_size:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Task size {n} is larger than maximum input batch size {self.params.max_batch_size}")
        key = (id(fn), tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items())))
        task = _Task(inputs, n, Future(), time.monotonic())
        with self._cond:
            if self._stopped:
                raise ServingError(Code.UNAVAILABLE, "the batch scheduler is stopped")
            q = self._queues.setdefault(key, collections.deque())
            if sum(t.rows for t in q) + n > self.params.max_batch_size * self.params.max_enqueued_batches:
                raise ServingError(Code.UNAVAILABLE,
                                   "The batch scheduling queue to which this task was submitted is full")
            self._fns[key] = fn
            q.append(task)
            self._cond.notify_all()
        return task.future.result()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=10)

    def _next_batch(self) -> tuple[Run, list[_Task]] | None:
        """Under the lock: a batch that is due, else None (and how long to wait for one)."""
        now, timeout = time.monotonic(), self.params.batch_timeout_micros / 1e6
        due = None
        for key, q in self._queues.items():
            if not q:
                continue
            full = sum(t.rows for t in q) >= self.params.max_batch_size
            if full or now - q[0].enqueued >= timeout:
                if due is None or full or q[0].enqueued < self._queues[due][0].enqueued:
                    due = key
                if full:
                    break
        if due is None:
            return None
        q, batch, rows = self._queues[due], [], 0
        while q and rows + q[0].rows <= self.params.max_batch_size:
            task = q.popleft()
            batch.append(task)
            rows += task.rows
        return self._fns[due], batch

    def _wait_s(self) -> float | None:
        oldest = [q[0].enqueued for q in self._queues.values() if q]
        if not oldest:
            return None
        return max(0.0, min(oldest) + self.params.batch_timeout_micros / 1e6 - time.monotonic())

    def _loop(self) -> None:
        while True:
            with self._cond:
                got = None
                while not self._stopped and (got := self._next_batch()) is None:
                    self._cond.wait(self._wait_s())
                if got is None:
                    for q in self._queues.values():
                        while q:
                            q.popleft().future.set_exception(
                                ServingError(Code.UNAVAILABLE, "the batch scheduler stopped"))
                    return
                self.batch_sizes.append(sum(t.rows for t in got[1]))
            self._execute(*got)

    def _execute(self, fn: Run, batch: list[_Task]) -> None:
        rows = sum(t.rows for t in batch)
        first = next((t for t in batch if t.rows), None)
        pad = self.params.padded(rows) - rows if first else 0
        inputs = {k: np.concatenate([t.inputs[k] for t in batch] + ([np.repeat(first.inputs[k][:1], pad, 0)]
                                                                      if pad else [])) for k in batch[0].inputs}
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as e:
            if len(batch) == 1:
                batch[0].future.set_exception(e)
                return
            for task in batch:  # the graph refused one of them: each request on its own
                self._execute(fn, [task])
            return
        except Exception as e:  # noqa: BLE001  (handed to every caller of the batch, never lost)
            for task in batch:
                task.future.set_exception(e)
            return
        bad = [k for k, v in out.items() if v.shape.rank == 0 or v.shape[0] != rows + pad]
        if bad:
            for task in batch:
                task.future.set_exception(ValueError(f"batching: outputs {bad} are not batched on axis 0"))
            return
        start = 0
        for task in batch:
            task.future.set_result({k: v[start:start + task.rows] for k, v in out.items()})
            start += task.rows
