"""The local server under faults: broken and odd versions, failing polls, requests that would
expand without bound, stalled and surplus REST clients, SIGTERM with a request in flight. Each
waits on what the server reports (with generous deadlines), never on how long something took."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from conftest import encode
from deepattraction.serving import push, warmup
from deepattraction.serving.client import ClientConfig, ServingClient
from deepattraction.serving.servable import MAX_PHOTOS_PER_REQUEST, MAX_PIXELS_PER_REQUEST
from deepattraction.serving.server import LocalServer, ServerConfig, State, model_config

MODEL = "deepattraction"
WAIT_S = 240  # deadline for what the server reports; a bound on a hang, not a timing check


def _until(what, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout_s} s: {what.__doc__ or what}")


def _states(srv) -> dict[int, tuple[int, str]]:
    try:
        resp = srv.manager.status(model_pb2.ModelSpec(name=MODEL))
    except Exception:
        return {}
    return {s.version: (s.state, s.status.error_message) for s in resp.model_version_status}


def _rest(url: str):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _push_broken(tiny_model: str, base: str, version: int) -> str:
    """A complete version whose warmup fails (TF Serving fails the load): staged, then published."""
    staging = os.path.join(base, f"{push.STAGING_PREFIX}broken")
    shutil.copytree(tiny_model, staging)
    warmup.write(staging, warmup.warmup_logs(MODEL, [b"not a photo"], (1,)))
    push.publish(staging, os.path.join(base, str(version)))
    return os.path.join(base, str(version))


@pytest.fixture
def base(tiny_model, tmp_path):
    b = str(tmp_path / "served" / MODEL)
    os.makedirs(b)
    shutil.copytree(tiny_model, os.path.join(b, "1"))
    return b


def test_a_broken_new_version_leaves_the_old_one_serving_with_no_failed_request(tiny_model, base, photos):
    cfg = ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.1, max_num_load_retries=2,
                       load_retry_interval_seconds=0.1)
    with LocalServer([model_config(MODEL, base)], cfg) as srv:
        srv.wait_ready(WAIT_S)
        errors, answered_by, stop = [], [], threading.Event()

        def call():
            with ServingClient(ClientConfig(srv.grpc_target, retries=0)) as c:
                while not stop.is_set():
                    try:
                        answered_by.append(c.predict_raw(photos[:1])[1])
                    except Exception as e:
                        errors.append(e)

        clients = [threading.Thread(target=call) for _ in range(4)]
        for t in clients:
            t.start()
        _push_broken(tiny_model, base, 2)

        def gave_up():
            """version 2 failed its load and both retries"""
            return "retried 2 of 2 times" in _states(srv).get(2, (0, ""))[1]

        _until(gave_up)
        after = len(answered_by)
        _until(lambda: errors or len(answered_by) > after + 8)  # the old version still answers after the failed loads
        stop.set()
        for t in clients:
            t.join()
        assert not errors, errors[:3]
        assert set(answered_by) == {1}
        states = _states(srv)
        assert states[1][0] == State.AVAILABLE and states[2][0] == State.END
        assert "image_bytes[0]" in states[2][1] and base not in states[2][1]  # the reason, not the server's paths
        code, body = _rest(f"{srv.rest_url}/healthz")
        assert code == 200 and base not in json.dumps(body)
        # a good newer version is served, and only then is version 1 unloaded
        push.push_version(os.path.join(base, "1"), os.path.join(base, "3"), MODEL)
        _until(lambda: _states(srv).get(1, (0,))[0] == State.END and _states(srv).get(3, (0,))[0] == State.AVAILABLE)
        assert ServingClient(ClientConfig(srv.grpc_target)).predict_raw(photos[:1])[1] == 3


def test_a_failed_load_is_retried_so_a_version_repaired_in_place_is_served(tiny_model, base, photos):
    cfg = ServerConfig(grpc_port=0, rest_port=-1, poll_seconds=0.1, max_num_load_retries=10_000,
                       load_retry_interval_seconds=0.2)
    with LocalServer([model_config(MODEL, base)], cfg) as srv:
        srv.wait_ready(WAIT_S)
        path = _push_broken(tiny_model, base, 2)
        _until(lambda: "load failed" in _states(srv).get(2, (0, ""))[1])
        warmup.write(path, warmup.warmup_logs(MODEL, photos[:2], (1, 1)))  # a transient fault, gone
        _until(lambda: _states(srv).get(2, (0,))[0] == State.AVAILABLE)
        assert ServingClient(ClientConfig(srv.grpc_target)).predict_raw(photos[:1])[1] == 2


def test_odd_folders_are_never_served_and_a_failing_poll_is_reported_then_recovers(tiny_model, base, photos,
                                                                                   monkeypatch):
    shutil.copytree(tiny_model, os.path.join(base, "²"))  # str.isdigit() says yes, int() says no
    shutil.copytree(tiny_model, os.path.join(base, f"{push.STAGING_PREFIX}left-over"))
    shutil.copytree(tiny_model, os.path.join(base, "9"), ignore=shutil.ignore_patterns("saved_model.pb"))
    failing = threading.Event()
    listdir = tf.io.gfile.listdir

    def flaky_listdir(path):  # the file system (GCS, NFS) failing a listing
        if failing.is_set() and path.rstrip("/") == base:
            raise tf.errors.PermissionDeniedError(None, None, f"{base}: listing refused")
        return listdir(path)

    monkeypatch.setattr(tf.io.gfile, "listdir", flaky_listdir)
    cfg = ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.1)
    with LocalServer([model_config(MODEL, base)], cfg) as srv:
        srv.wait_ready(WAIT_S)
        assert set(_states(srv)) == {1}
        failing.set()
        _until(lambda: srv.manager.poll_errors().get(MODEL))
        code, body = _rest(f"{srv.rest_url}/healthz")
        assert code == 200 and "listing refused" in body["poll_errors"][MODEL]  # still serving version 1
        assert base not in json.dumps(body)  # reported without the server's paths
        latest = srv.manager.status(model_pb2.ModelSpec(name=MODEL)).model_version_status[0]
        assert latest.state == State.AVAILABLE and "poll failed" in latest.status.error_message
        failing.clear()
        push.push_version(os.path.join(base, "1"), os.path.join(base, "10"), MODEL)
        _until(lambda: _states(srv).get(10, (0,))[0] == State.AVAILABLE)  # the poller lived on
        assert not srv.manager.poll_errors()
        assert set(_states(srv)) == {1, 10}


def _refused(srv, req) -> str:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(req, timeout=120)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    return e.value.details()


def _bomb(width: int, height: int) -> bytes:
    png = encode(np.zeros((4, 6, 3)), "PNG")  # a few bytes whose header declares width x height
    return png[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:]


def test_requests_that_would_expand_are_refused_before_any_expansion(server, photos):
    over = predict_pb2.PredictRequest()
    over.model_spec.name = MODEL
    proto = over.inputs["image_bytes"]
    proto.dtype = tf.string.as_datatype_enum
    proto.tensor_shape.dim.add(size=100_000_000)  # one photo, declared as 10^8: 10^8 copies if expanded
    proto.string_val.append(photos[0])
    assert "declares 100,000,000 elements" in _refused(server, over)

    assert "max_photos" in _refused(server, warmup.predict_request(MODEL, photos[:1] * (MAX_PHOTOS_PER_REQUEST + 1)))
    each = 6000 * 6000  # under the per-photo limit; together over the request's
    n = MAX_PIXELS_PER_REQUEST // each + 1
    assert f"over the {MAX_PIXELS_PER_REQUEST:,}-pixel-per-request limit (max_pixels)" in _refused(
        server, warmup.predict_request(MODEL, [_bomb(6000, 6000)] * n))
    assert ServingClient(ClientConfig(server.grpc_target)).predict(photos[:2])[0].like_ratio is not None


def _http_head(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_rest_has_a_read_timeout_and_refuses_connections_beyond_its_bound(tiny_model, base):
    cfg = ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.2, rest_read_timeout_seconds=0.5,
                       max_rest_connections=2)
    with LocalServer([model_config(MODEL, base)], cfg) as srv:
        srv.wait_ready(WAIT_S)
        addr = ("127.0.0.1", srv.rest_port)
        with socket.create_connection(addr, timeout=120) as stalled:  # sends half its body, then nothing
            stalled.sendall(b"POST /v1/models/deepattraction:predict HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 100\r\n\r\n{\"instances\"")
            code, head = _http_head(stalled)
            assert code == 408  # its thread was freed, not held for as long as the client likes
        holders = []
        try:
            deadline = time.monotonic() + WAIT_S
            # each holder keeps a connection (and its thread) open; the stalled one's slot frees once its thread ends
            while len(holders) < 2 and time.monotonic() < deadline:
                h = socket.create_connection(addr, timeout=120)
                h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if _http_head(h)[0] == 200:
                    holders.append(h)
                else:
                    h.close()
            assert len(holders) == 2
            with socket.create_connection(addr, timeout=120) as third:
                third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                code, head = _http_head(third)
            assert code == 503 and b"max_rest_connections" in _body(head)
        finally:
            for h in holders:
                h.close()
        _until(lambda: _rest(f"{srv.rest_url}/healthz")[0] == 200)


def _body(head: bytes) -> bytes:
    return head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else head


def test_sigterm_lets_the_request_in_flight_finish_then_the_server_exits(base, photos):
    cmd = [sys.executable, "-m", "deepattraction.cli", "serve", "--model-base", base, "--grpc-port", "0",
           "--rest-port", "0", "--poll-seconds", "0.2", "--drain-seconds", "120"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        rest = None
        for line in proc.stdout:
            rest = rest or re.search(r"REST http://(\S+):(\d+);", line)
            if line.startswith("serve: ready"):
                break
        assert rest, "the server printed no REST address"
        body = json.dumps({"instances": [{"b64": base64.b64encode(photos[0]).decode()}]}).encode()
        with socket.create_connection((rest[1], int(rest[2])), timeout=120) as s:
            s.sendall(b"POST /v1/models/deepattraction:predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
            _until(lambda: _rest(f"http://{rest[1]}:{rest[2]}/healthz")[0] == 200)  # headers were handled...
            proc.send_signal(signal.SIGTERM)  # ... while the body is still on its way
            _until(lambda: "draining" in proc.stdout.readline() or proc.poll() is not None)
            s.sendall(body[10:])
            code, head = _http_head(s)
            rest_of = _body(head)
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])
            while len(rest_of) < length:
                rest_of += s.recv(4096)
        assert code == 200 and "predictions" in json.loads(rest_of)
        assert proc.wait(timeout=WAIT_S) == 0
        assert "drained" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
