"""TF Serving's warmup file: `assets.extra/tf_serving_warmup_requests`, PredictionLog TFRecords.

TF Serving replays these records against a freshly loaded version before it serves it, so the
first client request does not pay for graph tracing and kernel set-up. The local server replays
the same file the same way."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from deepattraction.trainer.train import IMAGE_BYTES_INPUT, SERVING_DEFAULT

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def warmup_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, WARMUP_DIR, WARMUP_FILE)


def demo_photos(n: int, size: int = 96, seed: int = 0) -> list[bytes]:
    """Procedural faces (the demo generator's), alternating JPEG and PNG: real photos of the
    formats clients send, with no external data."""
    from deepattraction.demo_data import _encode, _synthetic_face

    rng = np.random.default_rng(seed)
    return [_encode(_synthetic_face(rng, float(rng.random()), bool(i % 2), size), "JPEG" if i % 2 == 0 else "PNG")
            for i in range(n)]


def predict_request(model_name: str, photos: list[bytes], signature_name: str = SERVING_DEFAULT) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature_name
    req.inputs[IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto(photos, dtype=tf.string, shape=[len(photos)]))
    return req


def warmup_logs(model_name: str, photos: list[bytes], batch_sizes: tuple[int, ...] = (1, 1, 4)) -> list[prediction_log_pb2.PredictionLog]:
    """One PredictionLog per request; batch sizes vary so more than one shape gets warm."""
    logs, i = [], 0
    for b in batch_sizes:
        chunk = [photos[(i + k) % len(photos)] for k in range(b)]
        i += b
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=predict_request(model_name, chunk))))
    return logs


def write(saved_model_dir: str, logs: list[prediction_log_pb2.PredictionLog]) -> str:
    path = warmup_path(saved_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as w:
        for log in logs:
            w.write(log.SerializeToString())
    return path


def read(saved_model_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    """The records TF Serving would replay; [] when the version has no warmup file."""
    path = warmup_path(saved_model_dir)
    if not tf.io.gfile.exists(path):
        return []
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
