"""A local stand-in for TensorFlow Serving: gRPC and REST on loopback, TF Serving's protos.

No TF Serving binary or Docker runs on the development machines, so this server gives the client,
the CLI and the tests a real endpoint that follows TF Serving's API and semantics for our models:
models.config parsing, model_spec name / version / version_label resolution, the latest-version
policy with new versions loaded (and warmed up) while serving, TF Serving's status codes and REST
error bodies. Production runs the official TF Serving image; nothing here is meant to replace it.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from deepattraction.serving import model_dir, warmup
from deepattraction.trainer.features import IMAGE_BYTES_INPUT, SERVING_DEFAULT

State = get_model_status_pb2.ModelVersionStatus.State
Code = grpc.StatusCode

# TF Serving's mapping from status codes to HTTP (http_server.cc: ToHTTPStatusCode).
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400, Code.OUT_OF_RANGE: 400, Code.NOT_FOUND: 404, Code.FAILED_PRECONDITION: 412,
    Code.UNAVAILABLE: 503, Code.UNIMPLEMENTED: 501, Code.RESOURCE_EXHAUSTED: 429, Code.DEADLINE_EXCEEDED: 504,
    Code.INTERNAL: 500, Code.UNKNOWN: 500,
}
# Encoded formats tf.io.decode_image (the Transform graph's decoder) reads.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
DTYPE_NAMES = {v: k[3:].lower() for k, v in types_pb2.DataType.items()}


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    grpc_port: int = 8500  # 0: any free port
    rest_port: int = 8501  # 0: any free port; -1: no REST server
    poll_seconds: float = 1.0  # TF Serving's --file_system_poll_wait_seconds
    grpc_workers: int = 8
    max_inflight: int = 64  # Predict calls beyond this are refused with UNAVAILABLE (clients retry)
    max_request_bytes: int = 32 << 20  # gRPC message and REST body limit
    max_photo_bytes: int = 8 << 20  # one encoded photo
    max_json_depth: int = 16  # REST bodies nest 4 levels at most; deeper is an attack or a bug


class ServingError(Exception):
    """A request failure with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def parse_model_config_file(path: str) -> list[model_server_config_pb2.ModelConfig]:
    """TF Serving's --model_config_file (text ModelServerConfig); relative base paths are relative to it."""
    with tf.io.gfile.GFile(path) as f:
        cfg = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    if cfg.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: only model_config_list is supported")
    out = []
    for m in cfg.model_config_list.config:
        if not m.name or not m.base_path:
            raise ValueError(f"{path}: every config needs name and base_path")
        if m.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {m.name}: model_platform {m.model_platform!r} is not tensorflow")
        if not os.path.isabs(m.base_path) and "://" not in m.base_path:
            m.base_path = os.path.join(os.path.dirname(os.path.abspath(path)), m.base_path)
        out.append(m)
    return out


def model_config(name: str, base_path: str) -> model_server_config_pb2.ModelConfig:
    """What TF Serving's --model_name/--model_base_path flags mean: latest version only."""
    return model_server_config_pb2.ModelConfig(name=name, base_path=base_path, model_platform="tensorflow")


class Servable:
    """One loaded version: its SignatureDefs (from saved_model.pb, as TF Serving reads them) and
    concrete functions."""

    def __init__(self, name: str, version: int, path: str, cfg: ServerConfig):
        self.name, self.version, self.path, self.cfg = name, version, path, cfg
        sm = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        self.meta_graph: meta_graph_pb2.MetaGraphDef = sm.meta_graphs[0]
        self.signature_defs = {k: v for k, v in self.meta_graph.signature_def.items() if not k.startswith("__")}
        self._loaded = tf.saved_model.load(path)
        self._fns = {k: self._loaded.signatures[k] for k in self.signature_defs}

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; a failing record fails the load, as in TF Serving."""
        logs = warmup.read(self.path)
        for log in logs:
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{self.path}: warmup supports predict_log records only")
            self.predict(log.predict_log.request)
        return len(logs)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        sig_name = request.model_spec.signature_name or SERVING_DEFAULT
        if sig_name not in self.signature_defs:
            raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{sig_name}" not found.')
        sig = self.signature_defs[sig_name]
        sent, expected = set(request.inputs), set(sig.inputs)
        if sent != expected:
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
                f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
        for alias in request.output_filter:
            if alias not in sig.outputs:
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(sig.outputs))}}}."))
        args = {alias: self._input(alias, sig.inputs[alias], request.inputs[alias]) for alias in sorted(sent)}
        try:
            out = self._fns[sig_name](**args)
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(Code.INVALID_ARGUMENT, e.message.splitlines()[0]) from None
        keep = set(request.output_filter) or set(out)
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = self.name, sig_name
        resp.model_spec.version.value = self.version
        for k in sorted(keep):
            resp.outputs[k].CopyFrom(tf.make_tensor_proto(out[k].numpy()))
        return resp

    def _input(self, alias: str, info, proto) -> tf.Tensor:
        if proto.dtype != info.dtype:
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"Expects arg[0] to be {DTYPE_NAMES.get(info.dtype, info.dtype)} but "
                f"{DTYPE_NAMES.get(proto.dtype, proto.dtype)} is provided (input {alias!r})"))
        try:
            value = tf.make_ndarray(proto)
        except Exception as e:  # malformed TensorProto: sizes that do not match the content
            raise ServingError(Code.INVALID_ARGUMENT, f"input {alias!r}: malformed TensorProto: {e}") from None
        want = [d.size for d in info.tensor_shape.dim]
        if not info.tensor_shape.unknown_rank and (value.ndim != len(want) or any(
                w >= 0 and w != g for w, g in zip(want, value.shape))):
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"input {alias!r}: shape {list(value.shape)} does not match the signature's {want} (-1: any)"))
        if alias == IMAGE_BYTES_INPUT:
            for i, photo in enumerate(value.reshape(-1)):
                if len(photo) > self.cfg.max_photo_bytes:
                    raise ServingError(Code.INVALID_ARGUMENT, (
                        f"{alias}[{i}]: {len(photo)} bytes is over the {self.cfg.max_photo_bytes}-byte photo limit"))
                if not photo.startswith(IMAGE_MAGIC):
                    raise ServingError(Code.INVALID_ARGUMENT, (
                        f"{alias}[{i}]: not an encoded JPEG, PNG, GIF or BMP image (starts {bytes(photo[:8])!r})"))
        return tf.constant(value)


@dataclasses.dataclass
class _Version:
    state: int
    servable: Servable | None = None
    error: str = ""


class ModelManager:
    """Versions per model: polls base paths, loads + warms up what the policy aspires to, then
    unloads what it no longer does (load before unload, so serving never has a gap)."""

    def __init__(self, configs: list[model_server_config_pb2.ModelConfig], cfg: ServerConfig):
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        self.cfg = cfg
        self.configs = {c.name: c for c in configs}
        self._versions: dict[str, dict[int, _Version]] = {c.name: {} for c in configs}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.cfg.poll_seconds)

    def aspired(self, c: model_server_config_pb2.ModelConfig) -> list[int]:
        on_disk = model_dir.versions(c.base_path)
        policy = c.model_version_policy.WhichOneof("policy_choice")
        if policy == "all":
            return on_disk
        if policy == "specific":
            return [v for v in on_disk if v in set(c.model_version_policy.specific.versions)]
        n = c.model_version_policy.latest.num_versions if policy == "latest" else 0
        return on_disk[-max(n, 1):]

    def poll(self) -> None:
        for name, c in self.configs.items():
            want = set(self.aspired(c))
            with self._lock:
                have = dict(self._versions[name])
            for v in sorted(want):
                s = have.get(v)
                if s is None or (s.state == State.END and not s.error):  # failed loads are not retried, as in TF Serving
                    self._load(name, v, os.path.join(c.base_path, str(v)))
            for v, s in have.items():
                if v not in want and s.state == State.AVAILABLE:
                    with self._lock:  # in-flight requests keep their reference; new ones go to the newer version
                        self._versions[name][v] = _Version(State.END)

    def _load(self, name: str, version: int, path: str) -> None:
        with self._lock:
            self._versions[name][version] = _Version(State.LOADING)
        try:
            servable = Servable(name, version, path, self.cfg)
            servable.warm_up()
            new = _Version(State.AVAILABLE, servable)
        except Exception as e:  # a broken version must not stop the others from serving
            new = _Version(State.END, error=f"{path}: {type(e).__name__}: {e}")
        with self._lock:
            self._versions[name][version] = new

    def resolve(self, spec) -> Servable:
        """model_spec -> the servable TF Serving would pick (specific version, label, or latest)."""
        name = spec.name
        if name not in self.configs:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
        with self._lock:
            available = {v: s.servable for v, s in self._versions[name].items() if s.state == State.AVAILABLE}
            loading = any(s.state == State.LOADING for s in self._versions[name].values())
        which = spec.WhichOneof("version_choice")
        if which == "version_label":
            labels = self.configs[name].version_labels
            if spec.version_label not in labels:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}")
            version = labels[spec.version_label]
        elif which == "version":
            version = spec.version.value
        else:
            if not available:
                if loading:  # TF Serving does not listen before its first load: clients see UNAVAILABLE too
                    raise ServingError(Code.UNAVAILABLE, f"model {name} is still loading its first version")
                raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return available[max(available)]
        if version not in available:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
        return available[version]

    def status(self, spec) -> get_model_status_pb2.GetModelStatusResponse:
        if spec.name not in self.configs:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        with self._lock:
            versions = dict(self._versions[spec.name])
        which = spec.WhichOneof("version_choice")
        if which == "version_label":
            labels = self.configs[spec.name].version_labels
            if spec.version_label not in labels:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}")
            versions = {k: s for k, s in versions.items() if k == labels[spec.version_label]}
        elif which == "version":
            versions = {k: s for k, s in versions.items() if k == spec.version.value}
        if not versions:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}"
                               + (f" {spec.version.value}" if which == "version" else ""))
        resp = get_model_status_pb2.GetModelStatusResponse()
        for v in sorted(versions, reverse=True):
            s = versions[v]
            st = resp.model_version_status.add(version=v, state=s.state)
            if s.error:
                st.status.error_code = Code.UNKNOWN.value[0]
                st.status.error_message = s.error
        return resp

    def ready(self) -> dict[str, bool]:
        """Per model: does it have an AVAILABLE (so loaded and warmed-up) version?"""
        with self._lock:
            return {n: any(s.state == State.AVAILABLE for s in vs.values()) for n, vs in self._versions.items()}

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        if not request.metadata_field:
            raise ServingError(Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
        for f in request.metadata_field:
            if f != "signature_def":
                raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {f} is not supported")
        s = self.resolve(request.model_spec)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = s.name
        resp.model_spec.version.value = s.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, v in s.meta_graph.signature_def.items():
            sig_map.signature_def[k].CopyFrom(v)
        resp.metadata["signature_def"].Pack(sig_map)
        return resp


class _Gate:
    """Bounded in-flight Predict calls: beyond the bound, UNAVAILABLE at once instead of a queue
    that grows without end (TF Serving's batching queue answers UNAVAILABLE when full, too)."""

    def __init__(self, limit: int):
        self._sem = threading.BoundedSemaphore(max(limit, 1)) if limit > 0 else None

    def __enter__(self):
        if self._sem is None or not self._sem.acquire(blocking=False):
            raise ServingError(Code.UNAVAILABLE, "server overloaded: too many requests in flight; retry")

    def __exit__(self, *exc):
        self._sem.release()


def _grpc_call(fn):
    def wrapped(self, request, context):
        try:
            return fn(self, request)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:  # never crash the worker; report like TF Serving's INTERNAL
            context.abort(Code.INTERNAL, f"{type(e).__name__}: {e}")
    return wrapped


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, gate: _Gate):
        self.manager, self.gate = manager, gate

    @_grpc_call
    def Predict(self, request):
        with self.gate:
            return self.manager.resolve(request.model_spec).predict(request)

    @_grpc_call
    def GetModelMetadata(self, request):
        return self.manager.metadata(request)

    @_grpc_call
    def Classify(self, request):
        raise ServingError(Code.UNIMPLEMENTED, "Classify: our models export predict signatures only")

    @_grpc_call
    def Regress(self, request):
        raise ServingError(Code.UNIMPLEMENTED, "Regress: our models export predict signatures only")

    @_grpc_call
    def MultiInference(self, request):
        raise ServingError(Code.UNIMPLEMENTED, "MultiInference: our models export predict signatures only")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_grpc_call
    def GetModelStatus(self, request):
        return self.manager.status(request.model_spec)

    @_grpc_call
    def HandleReloadConfigRequest(self, request):
        raise ServingError(Code.UNIMPLEMENTED, "config reload: restart the local server with the new config")


# ---- REST: TF Serving's /v1/models API -------------------------------------------------------

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


def rest_predict(manager: ModelManager, gate: _Gate, spec_kwargs: dict, body: dict) -> dict:
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


def _rest_handler(manager: ModelManager, gate: _Gate, cfg: ServerConfig):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # one line per request would drown the test and bench output
            pass

        def _send(self, code: int, obj: dict):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
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
                    models = {n: status_json(manager.status(self._model_spec({"name": n})))["model_version_status"]
                              if manager._versions[n] else [] for n in manager.configs}
                    self._send(200 if all(ready.values()) else 503, {"ready": all(ready.values()), "models": models})
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
                body = self.rfile.read(length)
                m = _URL.match(self.path)
                if not m or m["verb"] != "predict":
                    if m and m["verb"] in ("classify", "regress"):
                        raise ServingError(Code.UNIMPLEMENTED, f"{m['verb']}: our models export predict signatures only")
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


class LocalServer:
    """gRPC (PredictionService, ModelService) and REST servers over one ModelManager."""

    def __init__(self, configs: list[model_server_config_pb2.ModelConfig], cfg: ServerConfig = ServerConfig()):
        self.cfg = cfg
        self.manager = ModelManager(configs, cfg)
        self.gate = _Gate(cfg.max_inflight)
        opts = [("grpc.max_receive_message_length", cfg.max_request_bytes),
                ("grpc.max_send_message_length", cfg.max_request_bytes)]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(cfg.grpc_workers, thread_name_prefix="grpc"), options=opts)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager, self.gate), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC to {cfg.host}:{cfg.grpc_port}")
        self._http = None
        self.rest_port = -1
        if cfg.rest_port >= 0:
            self._http = ThreadingHTTPServer((cfg.host, cfg.rest_port), _rest_handler(self.manager, self.gate, cfg))
            self._http.daemon_threads = True
            self.rest_port = self._http.server_address[1]

    @property
    def grpc_target(self) -> str:
        return f"{self.cfg.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.cfg.host}:{self.rest_port}"

    def start(self) -> "LocalServer":
        self._grpc.start()
        if self._http:
            threading.Thread(target=self._http.serve_forever, name="rest", daemon=True).start()
        self.manager.start()
        return self

    def wait_ready(self, timeout_s: float = 300) -> None:
        """Blocks until every model has a loaded, warmed-up version."""
        deadline = time.monotonic() + timeout_s
        while not all(self.manager.ready().values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"models not ready after {timeout_s} s: {self.manager.ready()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.manager.stop()
        if self._http:
            self._http.shutdown()
            self._http.server_close()
        self._grpc.stop(grace=2).wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
