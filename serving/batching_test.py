"""The local server's request batching: TF Serving's batching.config, answers per request, one bad
photo failing only its own request, and the timeout flushing a partial batch. No timing assertions:
a batch fills or times out by the scheduler's own rule; the tests wait on futures and events."""
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf

from deepattraction.serving import batching
from deepattraction.serving.client import ClientConfig, ServingClient, ServingError
from deepattraction.serving.sample_model import MODEL_NAME
from deepattraction.serving.server import LocalServer, ServerConfig, model_config

KUSTOMIZE_CONFIG = os.path.join(os.path.dirname(__file__), "..", "kustomize", "base", "serving", "batching.config")
WAIT_S = 120  # liveness only: a broken scheduler fails the test instead of hanging it


class Recorder:
    """A signature-like function (keyword tensors in, dict out) that records each batch it is run on
    and refuses a negative input, as the served graph refuses an undecodable photo."""

    def __init__(self):
        self.shapes = []
        self.ran = threading.Event()

    def __call__(self, x):
        self.shapes.append(tuple(x.shape))
        self.ran.set()
        tf.debugging.assert_non_negative(x, message="negative input")
        return {"double": x * 2, "row_sum": tf.reduce_sum(x, axis=1)}


def _rows(*values):
    return {"x": np.array([[v, v] for v in values], np.float32)}


def test_tf_servings_batching_config_is_read_as_tf_serving_reads_it():
    p = batching.read_batching_config(KUSTOMIZE_CONFIG)
    assert p == batching.BatchingParameters(max_batch_size=32, batch_timeout_micros=5000, max_enqueued_batches=100,
                                            num_batch_threads=4, allowed_batch_sizes=(8, 16, 32))
    assert [p.padded(n) for n in (1, 8, 9, 32)] == [8, 8, 16, 32]
    text = ('max_batch_size: { value: 4 } # a comment\n'
            'thread_pool_name { value: "pool" } pad_variable_length_inputs { value: true }')
    assert batching.parse_batching_config(text) == batching.BatchingParameters(
        max_batch_size=4, thread_pool_name="pool", pad_variable_length_inputs=True)
    with pytest.raises(ValueError, match="unknown field 'max_batch'"):
        batching.parse_batching_config("max_batch { value: 4 }")
    with pytest.raises(ValueError, match="must increase and end at max_batch_size 32"):
        batching.parse_batching_config("max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 16")
    with pytest.raises(ValueError, match="bad value 'many'"):
        batching.parse_batching_config("num_batch_threads { value: many }")


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_rows():
    """Eight single-row requests fill max_batch_size 8; the timeout is too long to matter, so only
    a full batch runs them."""
    fn, b = Recorder(), batching.Batcher(batching.BatchingParameters(
        max_batch_size=8, batch_timeout_micros=600_000_000, num_batch_threads=2))
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = {v: pool.submit(b.run, fn, _rows(v)) for v in range(8)}
            answers = {v: f.result(WAIT_S) for v, f in futures.items()}
    finally:
        b.stop()
    assert fn.shapes == [(8, 2)] and b.batch_sizes == [8]
    for v, out in answers.items():
        np.testing.assert_array_equal(out["double"].numpy(), [[2 * v, 2 * v]])
        np.testing.assert_array_equal(out["row_sum"].numpy(), [2 * v])


def test_the_timeout_flushes_a_partial_batch_padded_to_an_allowed_size():
    fn, b = Recorder(), batching.Batcher(batching.BatchingParameters(
        max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=1, allowed_batch_sizes=(4, 8)))
    try:
        out = b.run(fn, _rows(5, 6, 7))  # 3 of 8 rows: only the timeout can send it
    finally:
        b.stop()
    assert fn.ran.is_set() and b.batch_sizes == [3] and fn.shapes == [(4, 2)]  # padded to 4, as TF Serving pads
    np.testing.assert_array_equal(out["row_sum"].numpy(), [10, 12, 14])


def test_one_bad_request_fails_alone_and_its_batch_mates_get_their_answers():
    fn, b = Recorder(), batching.Batcher(batching.BatchingParameters(
        max_batch_size=4, batch_timeout_micros=600_000_000, num_batch_threads=1))
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(b.run, fn, _rows(v)) for v in (1, 2, -3, 4)]
            results = []
            for f in futures:
                try:
                    results.append(f.result(WAIT_S)["double"].numpy()[0, 0])
                except tf.errors.InvalidArgumentError as e:
                    results.append("negative input" in e.message)
    finally:
        b.stop()
    assert results == [2, 4, True, 8]
    assert fn.shapes[0] == (4, 2) and sorted(fn.shapes[1:]) == [(1, 2)] * 4  # batch refused, then each alone


def test_a_request_over_max_batch_size_or_a_full_queue_is_refused_with_tf_servings_codes():
    gate = threading.Event()

    def blocked(x):
        gate.wait(WAIT_S)
        return {"x": x}

    b = batching.Batcher(batching.BatchingParameters(
        max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1))
    try:
        with pytest.raises(batching.ServingError) as e:
            b.run(blocked, _rows(1, 2, 3))
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "larger than maximum input batch size 2" in e.value.message
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(b.run, blocked, _rows(1, 2))  # taken by the only batch thread, which blocks
            while not b.batch_sizes:
                threading.Event().wait(0.01)
            queued = pool.submit(b.run, blocked, _rows(3, 4))  # fills the queue's one batch
            while not b._queues or not any(b._queues.values()):
                threading.Event().wait(0.01)
            with pytest.raises(batching.ServingError) as e:
                b.run(blocked, _rows(5))
            assert e.value.code == grpc.StatusCode.UNAVAILABLE and "queue" in e.value.message
            gate.set()
            assert running.result(WAIT_S)["x"].shape == (2, 2) and queued.result(WAIT_S)["x"].shape == (2, 2)
    finally:
        gate.set()
        b.stop()


def test_the_server_batches_concurrent_clients_and_a_bad_photo_fails_only_its_request(
        tiny_model, tmp_path, photos, local_predictions):
    """The real tiny model behind gRPC with batching on: concurrent clients get the in-process
    answers for their own photos; a JPEG whose header reads but whose data does not fails only its
    own request."""
    base = str(tmp_path / MODEL_NAME)
    os.makedirs(base)
    shutil.copytree(tiny_model, os.path.join(base, "1"))
    params = batching.BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000, num_batch_threads=1)
    truncated = photos[0][:len(photos[0]) // 2]
    with LocalServer([model_config(MODEL_NAME, base)], ServerConfig(grpc_port=0, rest_port=-1,
                                                                    batching_parameters=params)) as srv:
        srv.wait_ready(300)
        batcher = srv.manager.batcher
        runs_before = len(batcher.batch_sizes)  # warm-up requests went through the batcher too

        def ask(k):
            c = ServingClient(ClientConfig(srv.grpc_target, retries=0))
            if k == len(photos):
                with pytest.raises(ServingError) as e:
                    c.predict([truncated])
                return e.value.code
            return c.predict([photos[k]])[0]

        with ThreadPoolExecutor(len(photos) + 1) as pool:
            answers = list(pool.map(ask, range(len(photos) + 1)))
    for got, want in zip(answers[:-1], local_predictions):  # a batch's size may change the last float bits
        assert got.face_count == want.face_count and got.like_ratio == pytest.approx(want.like_ratio, abs=1e-5)
    assert answers[-1] == "INVALID_ARGUMENT"
    assert len(batcher.batch_sizes) > runs_before and sum(batcher.batch_sizes[runs_before:]) == len(photos) + 1
