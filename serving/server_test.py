"""The local server against TF Serving's protos and semantics, on loopback: the tiny model for
the server's behaviour, the real one for parity."""
import base64
import json
import os
import shutil
import socket
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
from deepattraction.serving import warmup
from deepattraction.serving.client import ClientConfig, RestClient, ServingClient, ServingError
from deepattraction.serving.predict import LocalModel
from deepattraction.serving.push import push_version
from deepattraction.serving.rest import _json_depth_ok
from deepattraction.serving.servable import ServingError as ServableError
from deepattraction.serving.server import LocalServer, ServerConfig, State, _Gate, model_config, parse_model_config_file

MODEL = "deepattraction"


def _rest(url, body=None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _grpc_predict(server, req):
    with grpc.insecure_channel(server.grpc_target) as ch:
        return prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(req, timeout=60)


@pytest.mark.e2e  # the real model's export takes minutes on shared CPUs
def test_real_model_answers_over_grpc_and_rest_equal_the_in_process_savedmodel(exported_model, photos):
    """The one test on the real exported model (Transform graph, MTCNN, Keras); the others use the
    tiny model, since what they test is the server."""
    local = LocalModel(exported_model).predict_bytes(photos)
    assert len({p.like_ratio for p in local}) > 1  # outputs depend on the photo, so equality means something
    configs = [model_config(MODEL, os.path.dirname(exported_model))]
    with LocalServer(configs, ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.3)) as srv:
        srv.wait_ready(300)
        with ServingClient(ClientConfig(srv.grpc_target, batch_size=4)) as c:
            assert c.predict_many(photos) == local
        assert RestClient(ClientConfig(srv.rest_url)).predict(photos) == local
        code, body = _rest(f"{srv.rest_url}/v1/models/{MODEL}:predict",
                           {"instances": [{"b64": base64.b64encode(p).decode()} for p in photos[:2]]})
    assert code == 200 and [r["like_ratio"] for r in body["predictions"]] == pytest.approx(
        [p.like_ratio for p in local[:2]], abs=0)


def test_grpc_and_rest_answers_equal_the_in_process_savedmodel(server, local_predictions, photos):
    assert len({p.like_ratio for p in local_predictions}) > 1
    with ServingClient(ClientConfig(server.grpc_target, batch_size=4)) as c:
        assert c.predict_many(photos) == local_predictions
    assert RestClient(ClientConfig(server.rest_url)).predict(photos) == local_predictions


def test_status_metadata_and_readiness_report_the_loaded_version(server):
    c = ServingClient(ClientConfig(server.grpc_target))
    assert c.status()[0].state == "AVAILABLE"
    meta = c.metadata()
    assert meta["signatures"]["serving_default"]["inputs"] == {"image_bytes": "string"}
    assert {"like_ratio", "male_probability", "face_count"} <= set(meta["signatures"]["serving_default"]["outputs"])
    code, body = _rest(f"{server.rest_url}/healthz")
    assert code == 200 and body["ready"] and body["models"][MODEL][0]["state"] == "AVAILABLE"
    code, body = _rest(f"{server.rest_url}/v1/models/{MODEL}")
    assert code == 200 and body["model_version_status"][0]["status"]["error_code"] == "OK"
    code, body = _rest(f"{server.rest_url}/v1/models/{MODEL}/metadata")
    assert code == 200 and "serving_default" in body["metadata"]["signature_def"]["signatureDef"]


def test_model_spec_resolution_errors_use_tf_servings_codes(server, photos):
    def code(**kw):
        with pytest.raises(ServingError) as e:
            ServingClient(ClientConfig(server.grpc_target, retries=0, **kw)).predict(photos[:1])
        return e.value.code

    assert code(model_name="nope") == "NOT_FOUND"
    assert code(version=99) == "NOT_FOUND"
    assert code(version_label="stable") == "INVALID_ARGUMENT"  # no labels configured for this model
    assert code(signature_name="nope") == "FAILED_PRECONDITION"
    assert _rest(f"{server.rest_url}/v1/models/nope")[0] == 404
    status, body = _rest(f"{server.rest_url}/v1/models/{MODEL}/versions/99:predict", {"instances": []})
    assert status == 404 and "Specific(deepattraction, 99)" in body["error"]


def test_malformed_grpc_requests_are_invalid_argument_and_the_server_keeps_answering(server, photos):
    def bad(inputs: dict) -> str:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL
        for k, v in inputs.items():
            req.inputs[k].CopyFrom(v)
        with pytest.raises(grpc.RpcError) as e:
            _grpc_predict(server, req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        # the next good request is answered
        assert ServingClient(ClientConfig(server.grpc_target)).predict(photos[:1])[0].like_ratio is not None
        return e.value.details()

    assert "Missing but required: {image_bytes}" in bad({})
    assert "Sent extra: {pixels}" in bad({"image_bytes": tf.make_tensor_proto(photos[:1]),
                                         "pixels": tf.make_tensor_proto([1.0])})
    assert "to be string but float is provided" in bad({"image_bytes": tf.make_tensor_proto([1.0, 2.0])})
    assert "image_bytes[1]: not an encoded JPEG" in bad({"image_bytes": tf.make_tensor_proto([photos[0], b"hello"])})
    assert bad({"image_bytes": tf.make_tensor_proto([photos[0], b""])}) == "image_bytes[1]: empty photo (0 bytes)"
    assert "shape [1, 1]" in bad({"image_bytes": tf.make_tensor_proto([[photos[0]]])})
    big = photos[0] + b"\0" * (ServerConfig().max_photo_bytes + 1)
    assert "image_bytes[0]" in bad({"image_bytes": tf.make_tensor_proto([big])})
    truncated = photos[0][: len(photos[0]) // 3]  # JPEG header, broken body: the graph's decoder refuses it
    # in its own words, at its place in the request (a graph error names neither: "Graph execution error:")
    cut = bad({"image_bytes": tf.make_tensor_proto([photos[0], truncated, photos[2]])})
    assert cut.startswith("image_bytes[1]: ") and "JPEG" in cut and "Graph execution" not in cut, cut
    assert bad({"image_bytes": tf.make_tensor_proto([truncated])}).startswith("image_bytes[0]: ")
    png = encode(np.zeros((4, 6, 3)), "PNG")  # its header says 40000 x 40000: a decompression bomb
    bomb = png[:16] + (40000).to_bytes(4, "big") * 2 + png[24:]
    assert bad({"image_bytes": tf.make_tensor_proto([photos[0], bomb])}) == (
        "image_bytes[1]: photo is 40000x40000 pixels, over the 67,108,864-pixel limit")


def test_malformed_rest_requests_get_400_and_the_server_keeps_answering(server, photos):
    url = f"{server.rest_url}/v1/models/{MODEL}:predict"
    good = {"instances": [{"b64": base64.b64encode(photos[0]).decode()}]}
    cases = {
        "JSON nests deeper": b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "JSON Parse error": b'{"instances": [',
        "Missing but required: {image_bytes}": json.dumps({"inputs": {"photo": ["x"]}}).encode(),
        "expected strings": json.dumps({"instances": [1.5, 2.5]}).encode(),
        "invalid base64": json.dumps({"instances": [{"b64": "***"}]}).encode(),
        "not an encoded JPEG": json.dumps({"instances": [{"b64": base64.b64encode(b"text").decode()}]}).encode(),
        "exactly one of": json.dumps({"signature_name": "serving_default"}).encode(),
    }
    for needle, raw in cases.items():
        status, body = _rest(url, raw=raw)
        assert status == 400 and needle in body["error"], (needle, status, body)
        status, body = _rest(url, good)
        assert status == 200 and body["predictions"][0]["face_count"] is not None
    # an oversized body is refused from its Content-Length, before it is read
    req = urllib.request.Request(url, data=b"{}", headers={"Content-Length": str(1 << 40)})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and "over the" in json.loads(e.value.read())["error"]
    assert _rest(url, good)[0] == 200


def test_version_labels_and_failed_warmup_from_a_model_config_file(tiny_model, tmp_path, photos):
    broken = tmp_path / "broken" / "7"
    shutil.copytree(tiny_model, broken)
    warmup.write(str(broken), warmup.warmup_logs(MODEL, [b"not a photo"], (1,)))
    cfg = tmp_path / "models.config"
    cfg.write_text(f"""model_config_list {{
  config {{ name: "{MODEL}" base_path: "{os.path.dirname(tiny_model)}" model_platform: "tensorflow"
           model_version_policy {{ specific {{ versions: 1 }} }}
           version_labels {{ key: "stable" value: 1 }} }}
  config {{ name: "broken" base_path: "broken" model_platform: "tensorflow" }}
}}""")
    configs = parse_model_config_file(str(cfg))
    assert configs[1].base_path == str(tmp_path / "broken")  # relative to the config file, as in TF Serving
    with LocalServer(configs, ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.2)) as srv:
        def settled():
            try:
                return srv.manager.ready()[MODEL] and srv.manager.status(
                    model_pb2.ModelSpec(name="broken")).model_version_status[0].state == State.END
            except Exception:  # no version seen yet
                return False

        deadline = time.time() + 240
        while time.time() < deadline and not settled():
            time.sleep(0.2)
        stable = ServingClient(ClientConfig(srv.grpc_target, version_label="stable")).predict_raw(photos[:1])
        assert stable[1] == 1
        assert RestClient(ClientConfig(srv.rest_url,
                                       version_label="stable")).predict(photos[:1])[0].like_ratio is not None
        with pytest.raises(ServingError, match="INVALID_ARGUMENT: Unrecognized servable version label: canary"):
            ServingClient(ClientConfig(srv.grpc_target, version_label="canary")).predict(photos[:1])
        # a version whose warmup fails never becomes AVAILABLE, and readiness says so
        st = ServingClient(ClientConfig(srv.grpc_target, model_name="broken")).status()[0]
        assert st.state == "END" and "image_bytes[0]" in st.error
        code, body = _rest(f"{srv.rest_url}/healthz")
        assert code == 503 and not body["ready"] and body["models"][MODEL][0]["state"] == "AVAILABLE"


def test_a_version_pushed_while_clients_call_is_picked_up_with_no_failed_request(server, photos):
    errors, versions, stop = [], [], threading.Event()

    def call():
        c = ServingClient(ClientConfig(server.grpc_target, retries=0))
        while not stop.is_set():
            try:
                versions.append(c.predict_raw(photos[:2])[1])
            except Exception as e:
                errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    push_version(os.path.join(server.base_path, "1"), os.path.join(server.base_path, "2"), MODEL)
    deadline = time.time() + 240
    while time.time() < deadline and (not versions or versions[-1] != 2):
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert versions[0] == 1 and versions[-1] == 2
    states = {s.version: s.state for s in ServingClient(ClientConfig(server.grpc_target)).status()}
    assert states == {2: "AVAILABLE", 1: "END"}  # latest policy: the old version is unloaded after the new one serves


def test_client_retries_unavailable_then_reports_the_servers_answer(tmp_path):
    """UNAVAILABLE (nothing listening yet) is retried; the first real answer (NOT_FOUND) is not."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ClientConfig(f"127.0.0.1:{port}", retries=6, backoff_s=0.2, timeout_s=5)
    with pytest.raises(ServingError) as e:
        ServingClient(ClientConfig(cfg.target, retries=1, backoff_s=0.05, timeout_s=2)).status()
    assert e.value.code == "UNAVAILABLE"
    srv = LocalServer([model_config(MODEL, str(tmp_path / "empty"))],
                      ServerConfig(grpc_port=port, rest_port=-1, poll_seconds=0.2))
    timer = threading.Timer(0.8, srv.start)
    timer.start()
    try:
        t0 = time.time()
        with pytest.raises(ServingError) as e:
            ServingClient(cfg).status()
        assert e.value.code == "NOT_FOUND" and time.time() - t0 >= 0.6
    finally:
        timer.join()
        srv.stop()


def test_model_config_file_rejects_other_platforms(tmp_path):
    cfg = tmp_path / "models.config"
    cfg.write_text('model_config_list { config { name: "m" base_path: "/m" model_platform: "pytorch" } }')
    with pytest.raises(ValueError, match="pytorch"):
        parse_model_config_file(str(cfg))


def test_json_depth_check_skips_brackets_in_strings():
    assert _json_depth_ok(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[["}', 3)
    assert not _json_depth_ok(b"[[[[]]]]", 3)
    assert _json_depth_ok(b"[1, [2]]", 2)


def test_requests_beyond_the_in_flight_bound_are_unavailable_not_queued():
    gate = _Gate(1)
    with gate:
        with pytest.raises(ServableError) as e:
            with gate:
                pass
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
    with gate:  # released: the next request gets in
        pass
