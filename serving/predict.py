"""In-process prediction from a pushed model, through the same signature TF Serving exposes."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from deepattraction.serving import model_dir
from deepattraction.trainer import faces
from deepattraction.trainer.features import (
    IMAGE_BYTES_INPUT,
    MAX_PHOTO_BYTES,
    OUT_FACE_BOX,
    OUT_FACE_CONFIDENCE,
    OUT_FACE_COUNT,
    OUT_MALE,
    OUT_RATIO,
    SERVING_DEFAULT,
)

# Encoded formats tf.io.decode_image (the Transform graph's decoder) reads.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


@functools.cache
def _pixel_check():
    return tf.function(faces.within_pixel_limit, input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


def not_a_photo(photo: bytes) -> str | None:
    """Why the graph would refuse these bytes, in the words TF Serving's checks use (servable.py),
    or None; checked before the graph runs, whose own error names no photo: not an image, or a
    header over the pixel limit (faces.within_pixel_limit, the graph's own check)."""
    if not photo:
        return "empty photo (0 bytes)"
    if not photo.startswith(IMAGE_MAGIC):
        return f"not an encoded JPEG, PNG, GIF or BMP image (starts {bytes(photo[:8])!r})"
    try:
        _pixel_check()(tf.constant(photo))
    except tf.errors.InvalidArgumentError as e:  # the refusal's own words; an unreadable JPEG
        return faces.refusal(e.message)  # header is left to the graph's decoder to name
    return None


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One photo's outputs; None for an output the model does not have (task ratio or gender only,
    no face detector yet). Outputs this client does not know land in `extras`, so a newer model
    never breaks an older client."""
    like_ratio: float | None
    male_probability: float | None
    face_count: int | None
    face_box: tuple[float, ...] | None = None  # x1, y1, x2, y2 in the photo's pixels
    face_confidence: float | None = None
    extras: dict = dataclasses.field(default_factory=dict)

    def line(self) -> str:
        parts = []
        if self.like_ratio is not None:
            parts.append(f"like_ratio {self.like_ratio:.4f}")
        if self.male_probability is not None:
            parts.append(f"gender {'male' if self.male_probability >= 0.5 else 'female'} (p_male "
                         f"{self.male_probability:.3f})")
        if self.face_count is not None:
            parts.append(f"face_count {self.face_count}")
        if self.face_box is not None:
            parts.append("face_box " + ",".join(f"{v:.3f}" for v in self.face_box))
        return ", ".join(parts)


def from_outputs(outputs: dict, i: int) -> Prediction:
    """Row i of a batch of named outputs (numpy arrays), from in-process or TF Serving calls alike."""
    def get(key, cast):
        return cast(outputs[key][i]) if key in outputs else None

    known = {OUT_RATIO, OUT_MALE, OUT_FACE_COUNT, OUT_FACE_BOX, OUT_FACE_CONFIDENCE}
    box = outputs.get(OUT_FACE_BOX)
    extras = {k: _plain(v[i]) for k, v in outputs.items() if k not in known}
    return Prediction(get(OUT_RATIO, float), get(OUT_MALE, float), get(OUT_FACE_COUNT, int),
                      tuple(float(x) for x in np.ravel(box[i])) if box is not None else None,
                      get(OUT_FACE_CONFIDENCE, float), extras)


def _plain(v):
    v = np.asarray(v)
    if v.dtype.kind in "SO":
        return v.tolist() if v.ndim else v.item().decode("utf-8", "replace")
    return v.tolist()


class LocalModel:
    """Loads a SavedModel (or the latest version under a base path) once, predicts many photos."""

    def __init__(self, path: str):
        self.path = model_dir.resolve(path)
        self._fn = tf.saved_model.load(self.path).signatures[SERVING_DEFAULT]

    def predict_bytes(self, photos: list[bytes]) -> list[Prediction]:
        for i, photo in enumerate(photos):
            problem = not_a_photo(photo)
            if problem:
                raise ValueError(f"{IMAGE_BYTES_INPUT}[{i}]: {problem}")
        out = {k: v.numpy() for k, v in self._fn(**{IMAGE_BYTES_INPUT: tf.constant(photos)}).items()}
        return [from_outputs(out, i) for i in range(len(photos))]

    def predict_files(self, paths: list[str]) -> list[Prediction]:
        photos = []
        for p in paths:
            with tf.io.gfile.GFile(p, "rb") as f:
                photos.append(f.read())
        return self.predict_bytes(photos)


@dataclasses.dataclass(frozen=True)
class PhotoResult:
    """One photo's prediction, or why there is none (first line of the reader's or model's error)."""
    path: str
    prediction: Prediction | None = None
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.path}: error: {self.error}"
        return f"{self.path}: {self.prediction.line()}"

    def as_dict(self) -> dict:
        if self.error is not None:
            return {"photo": self.path, "error": self.error}
        return {"photo": self.path, **dataclasses.asdict(self.prediction)}


def error_words(err: Exception) -> str:
    """The error's own words. A TF graph error's first line is only "Graph execution error:",
    followed by where the node was defined; the op's message is its last unindented line."""
    lines = [ln for ln in getattr(err, "message", str(err)).splitlines() if ln.strip()] or [type(err).__name__]
    if isinstance(err, tf.errors.OpError):
        said = [ln for ln in lines if not ln[0].isspace()
                and not ln.startswith(("Graph execution error", "Detected at node"))]
        return (said or lines)[-1].strip()
    return lines[0].strip()


def predict_paths(paths: list[str], predict: Callable[[list[bytes]], list[Prediction]],
                  batch_size: int = 16) -> Iterator[PhotoResult]:
    """Reads photo files and predicts them `batch_size` at a time, one result per path in order.
    When a batch fails (one undecodable photo fails the whole call), its photos are retried one
    by one, so a bad photo never hides the others' predictions."""
    for i in range(0, len(paths), batch_size):
        batch, read_errors, photos = paths[i:i + batch_size], {}, []
        for path in batch:
            try:
                with open(path, "rb") as f:
                    photo = f.read(MAX_PHOTO_BYTES + 1)  # never more: a huge file cannot take the memory
            except OSError as e:
                read_errors[path] = error_words(e)
                continue
            if len(photo) > MAX_PHOTO_BYTES:
                read_errors[path] = f"photo file is over the {MAX_PHOTO_BYTES:,}-byte limit"
                continue
            photos.append(photo)
        preds = None
        if photos:
            try:
                preds = predict(photos)
            except Exception:  # retried one by one below
                preds = None
        j = 0
        for path in batch:  # in the paths' order, read errors where they fall
            if path in read_errors:
                yield PhotoResult(path, error=read_errors[path])
                continue
            try:
                yield PhotoResult(path, preds[j] if preds is not None else predict([photos[j]])[0])
            except Exception as e:
                yield PhotoResult(path, error=error_words(e))
            j += 1
