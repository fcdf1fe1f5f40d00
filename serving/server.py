"""A local stand-in for TensorFlow Serving: gRPC and REST on loopback, TF Serving's protos.

No TF Serving binary or Docker runs on the development machines, so this server gives the client,
the CLI and the tests a real endpoint that follows TF Serving's API and semantics for our models:
models.config parsing, model_spec name / version / version_label resolution, the latest-version
policy with new versions loaded (and warmed up) while serving, TF Serving's status codes and REST
error bodies. Production runs the official TF Serving image; nothing here is meant to replace it.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from concurrent import futures

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
from deepattraction.serving.rest import BoundedHTTPServer, rest_handler
from deepattraction.serving.servable import (
    MAX_PHOTO_BYTES,
    MAX_PHOTOS_PER_REQUEST,
    MAX_PIXELS_PER_REQUEST,
    Code,
    RequestLimits,
    Servable,
    ServingError,
)

State = get_model_status_pb2.ModelVersionStatus.State
log = logging.getLogger(__name__)

# One gRPC message or REST body. TF Serving's Deployment must be given the same bound:
# --grpc_channel_arguments=grpc.max_receive_message_length=33554432 (TF_SERVING_GRPC_ARGS below).
MAX_REQUEST_BYTES = 32 << 20
TF_SERVING_GRPC_ARGS = f"grpc.max_receive_message_length={MAX_REQUEST_BYTES}"
# TF Serving's defaults for a version that fails to load: retried 5 times, a minute apart.
MAX_NUM_LOAD_RETRIES = 5
LOAD_RETRY_INTERVAL_SECONDS = 60.0
REST_READ_TIMEOUT_SECONDS = 30.0  # a client that stalls mid-request holds a REST thread this long at most
MAX_REST_CONNECTIONS = 64  # open REST connections; beyond it 503 at once, not a thread each
DRAIN_SECONDS = 30.0  # on SIGTERM: in-flight requests get this long to finish (Kubernetes' grace period)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    grpc_port: int = 8500  # 0: any free port
    rest_port: int = 8501  # 0: any free port; -1: no REST server
    poll_seconds: float = 1.0  # TF Serving's --file_system_poll_wait_seconds
    grpc_workers: int = 8
    max_inflight: int = 64  # Predict calls beyond this are refused with UNAVAILABLE (clients retry)
    max_concurrent_rpcs: int = 256  # gRPC calls queued or running; beyond it RESOURCE_EXHAUSTED
    max_request_bytes: int = MAX_REQUEST_BYTES  # gRPC message and REST body limit
    max_photo_bytes: int = MAX_PHOTO_BYTES  # one encoded photo
    max_photos: int = MAX_PHOTOS_PER_REQUEST
    max_pixels: int = MAX_PIXELS_PER_REQUEST
    max_json_depth: int = 16  # REST bodies nest 4 levels at most; deeper is an attack or a bug
    max_num_load_retries: int = MAX_NUM_LOAD_RETRIES  # TF Serving's --max_num_load_retries
    load_retry_interval_seconds: float = LOAD_RETRY_INTERVAL_SECONDS  # TF Serving's --load_retry_interval_micros
    rest_read_timeout_seconds: float = REST_READ_TIMEOUT_SECONDS
    max_rest_connections: int = MAX_REST_CONNECTIONS
    drain_seconds: float = DRAIN_SECONDS

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(self.max_photo_bytes, self.max_photos, self.max_pixels)
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
    error: str = ""  # shown to clients (GetModelStatus, /healthz): no server paths
    attempts: int = 0  # failed loads so far
    failed_at: float = 0.0  # time.monotonic() of the last failed load


def public_error(e: BaseException, base_path: str) -> str:
    """An exception as clients may see it: the model's base path (and anything under it) is named
    relative to the base, so the server's file system layout is not shown."""
    text = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    return text.replace(base_path.rstrip("/"), "<base_path>")


class ModelManager:
    """Versions per model: polls base paths, loads + warms up what the policy aspires to, and
    unloads a version the policy no longer aspires to only once an aspired one is AVAILABLE: TF
    Serving's availability-preserving policy, so a broken new version never takes serving down.
    A failed load is retried (max_num_load_retries, load_retry_interval_seconds), and a failed poll
    is logged, reported, and tried again at the next poll."""

    def __init__(self, configs: list[model_server_config_pb2.ModelConfig], cfg: ServerConfig):
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        self.cfg = cfg
        self.configs = {c.name: c for c in configs}
        self._versions: dict[str, dict[int, _Version]] = {c.name: {} for c in configs}
        self._poll_errors: dict[str, str] = {}
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
            try:
                self.poll()
            except Exception:  # poll() already guards each model; this keeps the thread alive whatever happens
                log.exception("model poll failed")
            self._stop.wait(self.cfg.poll_seconds)

    def poller_alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def poll_errors(self) -> dict[str, str]:
        """Per model, why its last poll failed (absent: it succeeded)."""
        with self._lock:
            return dict(self._poll_errors)

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
            try:
                self._poll_model(name, c)
            except Exception as e:  # a listing error or an odd folder name: the next poll tries again
                log.exception("model %s: poll of %s failed", name, c.base_path)
                with self._lock:
                    self._poll_errors[name] = "poll failed: " + public_error(e, c.base_path)
            else:
                with self._lock:
                    self._poll_errors.pop(name, None)

    def _poll_model(self, name: str, c: model_server_config_pb2.ModelConfig) -> None:
        want = set(self.aspired(c))
        with self._lock:
            have = dict(self._versions[name])
        for v in sorted(want):
            s = have.get(v)
            if s is None or (s.state == State.END and not s.error):  # new, or unloaded and aspired again
                self._load(name, v, c.base_path)
            elif s.state == State.END and self._retry_due(s):
                self._load(name, v, c.base_path, s.attempts)
        with self._lock:
            have = dict(self._versions[name])
        if not any(have[v].state == State.AVAILABLE for v in want if v in have):
            return  # availability first: what serves now keeps serving until an aspired version does
        for v, s in have.items():
            if v not in want and s.state == State.AVAILABLE:
                with self._lock:  # in-flight requests keep their reference; new ones go to the aspired version
                    self._versions[name][v] = _Version(State.END)

    def _retry_due(self, s: _Version) -> bool:
        return (s.attempts <= self.cfg.max_num_load_retries
                and time.monotonic() - s.failed_at >= self.cfg.load_retry_interval_seconds)

    def _load(self, name: str, version: int, base_path: str, attempts: int = 0) -> None:
        path = os.path.join(base_path, str(version))
        with self._lock:
            self._versions[name][version] = _Version(State.LOADING, attempts=attempts)
        try:
            servable = Servable(name, version, path, self.cfg.limits)
            servable.batcher = self.batcher
            servable.warm_up()
            new = _Version(State.AVAILABLE, servable)
        except Exception as e:  # a broken version must not stop the others from serving
            log.warning("model %s version %d: load %d failed: %s", name, version, attempts + 1, e)
            retries = (f"; retried {attempts} of {self.cfg.max_num_load_retries} times" if attempts
                       else "")
            new = _Version(State.END, error=f"load failed: {public_error(e, base_path)}{retries}",
                           attempts=attempts + 1, failed_at=time.monotonic())
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
        poll_error = self.poll_errors().get(spec.name, "")
        if not versions:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}"
                               + (f" {version}" if spec.WhichOneof("version_choice") == "version" else "")
                               + (f" ({poll_error})" if poll_error else ""))
        resp = get_model_status_pb2.GetModelStatusResponse()
        for i, v in enumerate(sorted(versions, reverse=True)):
            s = versions[v]
            st = resp.model_version_status.add(version=v, state=s.state)
            # A failed poll has no version of its own: the newest entry carries it (state unchanged),
            # so a client watching GetModelStatus learns that new versions are not being picked up.
            error = s.error or (poll_error if i == 0 else "")
            if error:
                st.status.error_code = Code.UNKNOWN.value[0]
                st.status.error_message = error
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
        self._grpc = grpc.server(futures.ThreadPoolExecutor(cfg.grpc_workers, thread_name_prefix="grpc"), options=opts,
                                 maximum_concurrent_rpcs=cfg.max_concurrent_rpcs)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager, self.gate), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC to {cfg.host}:{cfg.grpc_port}")
        self._http = None
        self.rest_port = -1
        if cfg.rest_port >= 0:
            self._http = BoundedHTTPServer((cfg.host, cfg.rest_port), rest_handler(self.manager, self.gate, cfg),
                                           cfg.max_rest_connections)
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

    def stop(self, grace_s: float = 2.0) -> bool:
        """Stops taking requests, lets those in flight finish (up to grace_s), then closes; True when
        none was cut off. gRPC refuses new calls at once (UNAVAILABLE, which clients retry elsewhere)."""
        grpc_done = self._grpc.stop(grace=grace_s)
        drained = True
        if self._http:
            self._http.draining = True
            self._http.shutdown()  # no new connection is accepted
            drained = self._http.wait_idle(grace_s)
            self._http.server_close()
        drained = grpc_done.wait(grace_s + 1) and drained
        self.manager.stop()
        return drained

    def serve_until_signalled(self, ready_timeout_s: float, on_ready=lambda: None, on_signal=lambda: None) -> bool:
        """Runs until SIGTERM or SIGINT, then drains (cfg.drain_seconds) and stops: what Kubernetes
        expects of a pod it stops. Call from the main thread. True when no request was cut off."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not all(self.manager.ready().values()):
                if stop.wait(0.1):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"models not ready after {ready_timeout_s} s: {self.manager.ready()}")
            else:
                on_ready()
            while not stop.wait(0.5):
                pass
            on_signal()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            drained = self.stop(self.cfg.drain_seconds if stop.is_set() else 2.0)
        return drained

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
