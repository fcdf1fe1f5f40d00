"""TF Serving's warmup file: `assets.extra/tf_serving_warmup_requests`, PredictionLog TFRecords.

TF Serving replays these records against a freshly loaded version before it serves it, so the
first client request does not pay for graph tracing and kernel set-up. The local server replays
the same file the same way."""
from __future__ import annotations

import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from deepattraction.trainer.features import IMAGE_BYTES_INPUT, SERVING_DEFAULT

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def warmup_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, WARMUP_DIR, WARMUP_FILE)


def demo_photos(n: int, size: int = 96, seed: int = 0) -> list[bytes]:
    """Drawn faces, alternating JPEG and PNG: photos of the formats clients send, made here so the
    push needs no data and no demo generator."""
    rng = np.random.default_rng(seed)
    return [_encode(_face(rng, size), "JPEG" if i % 2 == 0 else "PNG") for i in range(n)]


def _face(rng: np.random.Generator, s: int) -> Image.Image:
    """A head with hair, eyes and a mouth on a random background, with pixel noise."""
    img = Image.new("RGB", (s, s), tuple(int(v) for v in rng.integers(60, 220, 3)))
    d = ImageDraw.Draw(img)
    cx, cy = s / 2 + rng.normal(0, s * 0.03), s / 2 + rng.normal(0, s * 0.03)
    fw, fh = s * rng.uniform(0.24, 0.3), s * rng.uniform(0.31, 0.37)
    hair = tuple(int(v) for v in rng.integers(20, 90, 3))
    d.ellipse([cx - fw * 1.2, cy - fh * 1.15, cx + fw * 1.2, cy + fh * 0.6], fill=hair)
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=tuple(int(v) for v in rng.integers(150, 240, 3)))
    eye = s * 0.035
    for ex in (cx - fw * 0.4, cx + fw * 0.4):
        d.ellipse([ex - eye, cy - fh * 0.25 - eye, ex + eye, cy - fh * 0.25 + eye], fill=(30, 30, 40))
    mouth = [cx - fw * 0.45, cy + fh * 0.3, cx + fw * 0.45, cy + fh * 0.6]
    d.arc(mouth, 0, 180, fill=(120, 20, 30), width=max(1, s // 40))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (s, s, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def predict_request(model_name: str, photos: list[bytes],
                    signature_name: str = SERVING_DEFAULT) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature_name
    req.inputs[IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto(photos, dtype=tf.string, shape=[len(photos)]))
    return req


def warmup_logs(model_name: str, photos: list[bytes],
                batch_sizes: tuple[int, ...] = (1, 1, 4)) -> list[prediction_log_pb2.PredictionLog]:
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


WARMUP_PHOTOS = 4  # procedural faces: real JPEG/PNG requests with no external data

