"""A local stand-in for TensorFlow Serving: gRPC and REST on loopback, TF Serving's protos.

No TF Serving binary or Docker runs on the development machines, so this server gives the client,
the CLI and the tests a real endpoint that follows TF Serving's API and semantics for our models:
models.config parsing, model_spec name / version / version_label resolution, the latest-version
policy with new versions loaded (and warmed up) while serving, TF Serving's status codes and REST
error bodies. Production runs the official TF Serving image; nothing here is meant to replace it.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent import futures
from http.server import ThreadingHTTPServer

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from deepattraction.serving import batching, model_dir
from deepattraction.serving.rest import rest_handler
from deepattraction.serving.servable import Code, Servable, ServingError

State = get_model_status_pb2.ModelVersionStatus.State


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
    batching_parameters: batching.BatchingParameters | None = None  # --enable_batching: requests batched


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
        self.batcher = batching.Batcher(cfg.batching_parameters) if cfg.batching_parameters else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)
        if self.batcher:
            self.batcher.stop()

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
                if s is None or (s.state == State.END
                                 and not s.error):  # failed loads are not retried, as in TF Serving
                    self._load(name, v, os.path.join(c.base_path, str(v)))
            for v, s in have.items():
                if v not in want and s.state == State.AVAILABLE:
                    with self._lock:  # in-flight requests keep their reference; new ones go to the newer version
                        self._versions[name][v] = _Version(State.END)

    def _load(self, name: str, version: int, path: str) -> None:
        with self._lock:
            self._versions[name][version] = _Version(State.LOADING)
        try:
            servable = Servable(name, version, path, self.cfg.max_photo_bytes)
            servable.batcher = self.batcher
            servable.warm_up()
            new = _Version(State.AVAILABLE, servable)
        except Exception as e:  # a broken version must not stop the others from serving
            new = _Version(State.END, error=f"{path}: {type(e).__name__}: {e}")
        with self._lock:
            self._versions[name][version] = new

    def _requested_version(self, spec) -> int | None:
        """The version a model_spec names, by number or by one of the config's labels; None: the latest."""
        which = spec.WhichOneof("version_choice")
        if which == "version_label":
            labels = self.configs[spec.name].version_labels
            if spec.version_label not in labels:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}")
            return labels[spec.version_label]
        return spec.version.value if which == "version" else None

    def resolve(self, spec) -> Servable:
        """model_spec -> the servable TF Serving would pick (specific version, label, or latest)."""
        name = spec.name
        if name not in self.configs:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
        with self._lock:
            available = {v: s.servable for v, s in self._versions[name].items() if s.state == State.AVAILABLE}
            loading = any(s.state == State.LOADING for s in self._versions[name].values())
        version = self._requested_version(spec)
        if version is None:
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
        version = self._requested_version(spec)
        if version is not None:
            versions = {k: s for k, s in versions.items() if k == version}
        if not versions:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}"
                               + (f" {version}" if spec.WhichOneof("version_choice") == "version" else ""))
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
            raise ServingError(Code.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
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
        self._sem = threading.BoundedSemaphore(limit) if limit > 0 else None

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
            self._http = ThreadingHTTPServer((cfg.host, cfg.rest_port), rest_handler(self.manager, self.gate, cfg))
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
