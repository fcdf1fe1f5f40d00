"""Clients for TensorFlow Serving (the official server or the local one): gRPC and REST.

Both return the same typed `Prediction`s as the in-process model, so a caller can switch between
them and compare results. Only TF Serving's public API is used, nothing of the local server."""
from __future__ import annotations

import base64
import dataclasses
import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from deepattraction.serving.predict import Prediction, from_outputs
from deepattraction.trainer.features import IMAGE_BYTES_INPUT, SERVING_DEFAULT


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    target: str  # gRPC: host:port (TF Serving's default 8500); REST: host:port or http://host:port (8501)
    model_name: str = "deepattraction"
    version: int | None = None  # pin a version ...
    version_label: str | None = None  # ... or a label from models.config (e.g. "stable"); neither: latest
    signature_name: str = SERVING_DEFAULT
    timeout_s: float = 30.0  # per call
    retries: int = 3  # further attempts on UNAVAILABLE only (server starting, overloaded, restarting)
    backoff_s: float = 0.2  # doubled after each retry
    batch_size: int = 16  # photos per request in predict_many
    max_message_bytes: int = 32 << 20

    def __post_init__(self):
        if self.version is not None and self.version_label:
            raise ValueError("pin a version or a version_label, not both")
        if self.batch_size < 1 or self.retries < 0:
            raise ValueError("batch_size must be >= 1 and retries >= 0")


class ServingError(Exception):
    """A failed call: the status code name (as TF Serving reports it) and its message."""

    def __init__(self, code: str, message: str, photos: str = ""):
        super().__init__(f"{code}: {message}" + (f" (photos {photos})" if photos else ""))
        self.code, self.message = code, message


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error: str = ""


def _retrying(cfg: ClientConfig, call, retryable):
    delay = cfg.backoff_s
    for attempt in range(cfg.retries + 1):
        try:
            return call()
        except Exception as e:
            if attempt == cfg.retries or not retryable(e):
                raise
            time.sleep(delay)
            delay *= 2


class _Batching:
    """predict_many for both clients: requests of cfg.batch_size photos each."""

    cfg: ClientConfig

    def predict(self, photos: list[bytes]) -> list[Prediction]:
        raise NotImplementedError

    def predict_many(self, photos: list[bytes]) -> list[Prediction]:
        """Many photos in requests of batch_size; an error names the batch's photo indexes."""
        out: list[Prediction] = []
        for i in range(0, len(photos), self.cfg.batch_size):
            try:
                out += self.predict(photos[i:i + self.cfg.batch_size])
            except ServingError as e:
                raise ServingError(e.code, e.message, f"{i}..{min(i + self.cfg.batch_size, len(photos)) - 1}") from None
        return out


class ServingClient(_Batching):
    """TF Serving's gRPC PredictionService + ModelService."""

    def __init__(self, cfg: ClientConfig):
        self.cfg = cfg
        opts = [("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", cfg.max_message_bytes)]
        self._channel = grpc.insecure_channel(cfg.target, options=opts)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spec(self, spec, signature: bool = True) -> None:
        spec.name = self.cfg.model_name
        if self.cfg.version is not None:
            spec.version.value = self.cfg.version
        elif self.cfg.version_label:
            spec.version_label = self.cfg.version_label
        if signature:
            spec.signature_name = self.cfg.signature_name

    def _call(self, method, request, photos: str = ""):
        try:
            return _retrying(self.cfg, lambda: method(request, timeout=self.cfg.timeout_s),
                             lambda e: isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.UNAVAILABLE)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details() or "", photos) from None

    def predict_raw(self, photos: list[bytes]) -> tuple[dict, int]:
        """One request: the output arrays by name, and the version that answered."""
        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec)
        req.inputs[IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto(photos, dtype=tf.string, shape=[len(photos)]))
        resp = self._call(self._predict.Predict, req)
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}, resp.model_spec.version.value

    def predict(self, photos: list[bytes]) -> list[Prediction]:
        outs, _ = self.predict_raw(photos)
        return [from_outputs(outs, i) for i in range(len(photos))]

    def status(self) -> list[VersionStatus]:
        req = get_model_status_pb2.GetModelStatusRequest()
        self._spec(req.model_spec, signature=False)
        resp = self._call(self._models.GetModelStatus, req)
        State = get_model_status_pb2.ModelVersionStatus.State
        return [VersionStatus(s.version, State.Name(s.state), s.status.error_message)
                for s in resp.model_version_status]

    def metadata(self) -> dict:
        """Signature name -> {"inputs": {alias: dtype}, "outputs": {alias: dtype}}, and the version."""
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(req.model_spec, signature=False)
        resp = self._call(self._predict.GetModelMetadata, req)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sig_map)
        dt = tf.dtypes.as_dtype
        return {"version": resp.model_spec.version.value, "signatures": {
            k: {"inputs": {a: dt(t.dtype).name for a, t in v.inputs.items()},
                "outputs": {a: dt(t.dtype).name for a, t in v.outputs.items()}}
            for k, v in sig_map.signature_def.items() if not k.startswith("__")}}


class RestClient(_Batching):
    """TF Serving's REST API (/v1/models/...), stdlib only."""

    def __init__(self, cfg: ClientConfig):
        self.cfg = cfg
        base = cfg.target if "://" in cfg.target else f"http://{cfg.target}"
        path = f"/v1/models/{cfg.model_name}"
        if cfg.version is not None:
            path += f"/versions/{cfg.version}"
        elif cfg.version_label:
            path += f"/labels/{cfg.version_label}"
        self.url = base.rstrip("/") + path

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None

        def once():
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as r:
                return json.loads(r.read())

        def retryable(e):
            return (isinstance(e, urllib.error.HTTPError) and e.code == 503) or (
                isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError))

        try:
            return _retrying(self.cfg, once, retryable)
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read()).get("error", "")
            except ValueError:
                msg = e.reason
            raise ServingError(f"HTTP {e.code}", msg) from None
        except urllib.error.URLError as e:
            raise ServingError("UNAVAILABLE", str(e.reason)) from None

    def predict_raw(self, photos: list[bytes]) -> dict:
        body = {"signature_name": self.cfg.signature_name,
                "inputs": {IMAGE_BYTES_INPUT: [{"b64": base64.b64encode(p).decode()} for p in photos]}}
        outputs = self._request(self.url + ":predict", body)["outputs"]
        if not isinstance(outputs, dict):  # TF Serving drops the name of a lone output
            raise ServingError("INVALID_ARGUMENT", "the model has a single unnamed output; use the gRPC client")
        return {k: np.asarray(v) for k, v in outputs.items()}

    def predict(self, photos: list[bytes]) -> list[Prediction]:
        outs = self.predict_raw(photos)
        return [from_outputs(outs, i) for i in range(len(photos))]

    def status(self) -> list[VersionStatus]:
        return [VersionStatus(int(s["version"]), s["state"], s.get("status", {}).get("error_message", ""))
                for s in self._request(self.url)["model_version_status"]]
