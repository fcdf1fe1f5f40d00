"""TF Serving's REST API (/v1/models/...) over a ModelManager: the JSON codec (row and columnar
formats, {"b64": ...} binaries), TF Serving's HTTP status codes and error bodies, and the handler."""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from deepattraction.serving.servable import Code, ServingError
from deepattraction.trainer.features import SERVING_DEFAULT

State = get_model_status_pb2.ModelVersionStatus.State

# TF Serving's mapping from status codes to HTTP (http_server.cc: ToHTTPStatusCode).
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400, Code.OUT_OF_RANGE: 400, Code.NOT_FOUND: 404, Code.FAILED_PRECONDITION: 412,
    Code.UNAVAILABLE: 503, Code.UNIMPLEMENTED: 501, Code.RESOURCE_EXHAUSTED: 429, Code.DEADLINE_EXCEEDED: 504,
    Code.INTERNAL: 500, Code.UNKNOWN: 500,
}

_URL = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                  r"(?:(?P<meta>/metadata)|:(?P<verb>\w+))?$")


def _json_depth_ok(body: bytes, limit: int) -> bool:
    """Bracket depth before parsing (strings skipped), so a deeply nested body never reaches the parser."""
    depth, in_str, esc = 0, False, False
    for ch in body:
        if in_str:
            esc, in_str = (False, True) if esc else (ch == 0x5C, ch != 0x22)
        elif ch == 0x22:
            in_str = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif ch in (0x5D, 0x7D):
            depth -= 1
    return True


def _decode_value(v, alias: str, where: str):
    if isinstance(v, dict):
        if set(v) != {"b64"} or not isinstance(v["b64"], str):
            raise ServingError(Code.INVALID_ARGUMENT, f"{where}: a binary value must be {{\"b64\": \"...\"}}")
        try:
            return base64.b64decode(v["b64"], validate=True)
        except ValueError:
            raise ServingError(Code.INVALID_ARGUMENT, f"{where}: invalid base64 in b64 value") from None
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, list):
        return [_decode_value(x, alias, f"{where}[{i}]") for i, x in enumerate(v)]
    return v


def _tensor(values: list, info, alias: str):
    """JSON values -> TensorProto of the signature's dtype; a JSON type that cannot be that dtype is
    INVALID_ARGUMENT, never a crash."""
    want = info.dtype
    try:
        if want == types_pb2.DT_STRING:
            flat = np.asarray(values, dtype=object)
            if any(not isinstance(x, bytes) for x in flat.reshape(-1)):
                raise ValueError("expected strings (or {\"b64\": ...})")
            return tf.make_tensor_proto(flat, dtype=tf.string)
        arr = np.asarray(values)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"expected numbers, got {arr.dtype}")
        return tf.make_tensor_proto(arr, dtype=tf.dtypes.as_dtype(want))
    except (ValueError, TypeError) as e:
        raise ServingError(Code.INVALID_ARGUMENT, f"input {alias!r}: {e}") from None


def _json_value(arr: np.ndarray):
    if arr.dtype.kind in "SO":
        return [_json_value(x) for x in arr] if arr.ndim else {"b64": base64.b64encode(arr.item()).decode()}
    return arr.tolist()


def rest_predict(manager, gate, spec_kwargs: dict, body: dict) -> dict:
    """TF Serving's REST predict: row ("instances") or columnar ("inputs") request formats."""
    if not isinstance(body, dict):
        raise ServingError(Code.INVALID_ARGUMENT, "request body must be a JSON object")
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(Code.INVALID_ARGUMENT, 'JSON object must have exactly one of "instances" or "inputs"')
    req = predict_pb2.PredictRequest()
    for k, v in spec_kwargs.items():
        if k == "version":
            req.model_spec.version.value = v
        else:
            setattr(req.model_spec, k, v)
    sig_name = body.get("signature_name", SERVING_DEFAULT)
    if not isinstance(sig_name, str):
        raise ServingError(Code.INVALID_ARGUMENT, "signature_name must be a string")
    req.model_spec.signature_name = sig_name
    with gate:
        servable = manager.resolve(req.model_spec)
        sig = servable.signature_defs.get(sig_name)
        if sig is None:
            raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{sig_name}" not found.')
        row = "instances" in body
        data = body["instances"] if row else body["inputs"]
        if row:
            if not isinstance(data, list):
                raise ServingError(Code.INVALID_ARGUMENT, '"instances" must be a JSON list')
            if len(sig.inputs) == 1 and not (data and isinstance(data[0], dict) and set(data[0]) != {"b64"}):
                cols = {next(iter(sig.inputs)): data}
            else:
                if not all(isinstance(x, dict) for x in data):
                    raise ServingError(Code.INVALID_ARGUMENT, "instances must all be objects named by input")
                cols = {k: [x.get(k) for x in data] for k in {k for x in data for k in x}}
        else:
            cols = data if isinstance(data, dict) else {next(iter(sig.inputs)): data}
        for alias, values in cols.items():
            if alias not in sig.inputs:
                continue  # reported with TF Serving's message by predict()
            if row and any(v is None for v in values):
                raise ServingError(Code.INVALID_ARGUMENT, f"every instance needs input {alias!r}")
            req.inputs[alias].CopyFrom(_tensor(_decode_value(values, alias, alias), sig.inputs[alias], alias))
        for alias in set(cols) - set(sig.inputs):
            req.inputs[alias].CopyFrom(tf.make_tensor_proto([0]))
        resp = servable.predict(req)
    outs = {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}
    if not row:  # TF Serving drops the name when there is a single output
        if len(outs) == 1:
            return {"outputs": _json_value(next(iter(outs.values())))}
        return {"outputs": {k: _json_value(v) for k, v in outs.items()}}
    n = len(next(iter(outs.values()))) if outs else 0
    if len(outs) == 1:
        return {"predictions": _json_value(next(iter(outs.values())))}
    return {"predictions": [{k: _json_value(v[i:i + 1])[0] for k, v in outs.items()} for i in range(n)]}


def status_json(resp: get_model_status_pb2.GetModelStatusResponse) -> dict:
    return {"model_version_status": [
        {"version": str(s.version), "state": State.Name(s.state),
         "status": {"error_code": grpc.StatusCode.OK.name if not s.status.error_code else "UNKNOWN",
                    "error_message": s.status.error_message}} for s in resp.model_version_status]}


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, as ThreadingHTTPServer, but at most max_connections of them: one
    more is answered 503 at once and closed, instead of a thread (and its buffers) each without end.
    It also counts requests being handled (a connection's first from its accept, later ones from
    their request line: an idle kept-alive connection is not a request), so a drain can wait for
    them (wait_idle)."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._busy = 0
        self._idle = threading.Condition()
        self.draining = False

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            _refuse(request, f"server overloaded: more than {self._slots._initial_value} open REST connections "
                             "(max_rest_connections); retry")
            self.shutdown_request(request)
            return
        self.request_started()  # from accept on, so a drain waits for a request not yet parsed
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.request_done()
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def request_started(self) -> None:
        with self._idle:
            self._busy += 1

    def request_done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no request is being handled (False: timeout_s passed first)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout_s)


def _refuse(sock, message: str) -> None:
    """HTTP 503 on a connection no handler thread will read: TF Serving's body, sent best effort."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        sock.settimeout(1.0)
        sock.sendall(head + body)
    except OSError:
        pass


def rest_handler(manager, gate, cfg):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = cfg.rest_read_timeout_seconds  # socket timeout: a stalled client frees its thread

        def setup(self):
            super().setup()
            self._counted = True  # the connection's first request was counted when it was accepted

        def parse_request(self):
            if not self._counted:  # a later request on a kept-alive connection: counted once it arrives
                self.server.request_started()
                self._counted = True
            if self.server.draining:
                self.close_connection = True
            return super().parse_request()

        def handle_one_request(self):
            try:
                super().handle_one_request()
            finally:
                if self._counted:
                    self._counted = False
                    self.server.request_done()

        def _send(self, code: int, obj: dict):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection or self.server.draining:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, e: ServingError):
            self._send(HTTP_STATUS.get(e.code, 500), {"error": e.message})

        def _spec(self, m) -> dict:
            spec = {"name": m["name"]}
            if m["version"]:
                spec["version"] = int(m["version"])
            if m["label"]:
                spec["version_label"] = m["label"]
            return spec

        def _model_spec(self, spec: dict):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = spec["name"]
            if "version" in spec:
                req.model_spec.version.value = spec["version"]
            if "version_label" in spec:
                req.model_spec.version_label = spec["version_label"]
            return req.model_spec

        def do_GET(self):
            try:
                if self.path == "/healthz":
                    ready = manager.ready()
                    ok = all(ready.values()) and manager.poller_alive()
                    models = {n: status_json(manager.status(self._model_spec({"name": n})))["model_version_status"]
                              if manager._versions[n] else [] for n in manager.configs}
                    self._send(200 if ok else 503, {"ready": ok, "models": models,
                                                    "poll_errors": manager.poll_errors()})
                    return
                m = _URL.match(self.path)
                if not m or m["verb"]:
                    raise ServingError(Code.NOT_FOUND, f"Malformed request: GET {self.path}")
                spec = self._spec(m)
                if m["meta"]:
                    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                    req.model_spec.CopyFrom(self._model_spec(spec))
                    resp = manager.metadata(req)
                    sig_map = get_model_metadata_pb2.SignatureDefMap()
                    resp.metadata["signature_def"].Unpack(sig_map)
                    self._send(200, {"model_spec": {"name": resp.model_spec.name, "signature_name": "",
                                                    "version": str(resp.model_spec.version.value)},
                                     "metadata": {"signature_def": json_format.MessageToDict(sig_map)}})
                else:
                    self._send(200, status_json(manager.status(self._model_spec(spec))))
            except ServingError as e:
                self._error(e)
            except Exception as e:  # the server keeps answering whatever the request
                self._error(ServingError(Code.INTERNAL, f"{type(e).__name__}: {e}"))

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length") or -1)
                if length < 0:
                    raise ServingError(Code.INVALID_ARGUMENT, "Content-Length required")
                if length > cfg.max_request_bytes:
                    self.close_connection = True  # the unread body must not be parsed as the next request
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       f"request body of {length} bytes is over the {cfg.max_request_bytes}-byte limit")
                try:
                    body = self.rfile.read(length)
                except TimeoutError:
                    self.close_connection = True
                    self._send(408, {"error": f"request body not received within {cfg.rest_read_timeout_seconds} s"})
                    return
                m = _URL.match(self.path)
                if not m or m["verb"] != "predict":
                    if m and m["verb"] in ("classify", "regress"):
                        raise ServingError(Code.UNIMPLEMENTED,
                                           f"{m['verb']}: our models export predict signatures only")
                    raise ServingError(Code.NOT_FOUND, f"Malformed request: POST {self.path}")
                if not _json_depth_ok(body, cfg.max_json_depth):
                    raise ServingError(Code.INVALID_ARGUMENT, f"JSON nests deeper than {cfg.max_json_depth} levels")
                try:
                    parsed = json.loads(body)
                except (ValueError, RecursionError) as e:
                    raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: {e}") from None
                self._send(200, rest_predict(manager, gate, self._spec(m), parsed))
            except ServingError as e:
                self._error(e)
            except Exception as e:  # the server keeps answering whatever the request
                self._error(ServingError(Code.INTERNAL, f"{type(e).__name__}: {e}"))

    return Handler
