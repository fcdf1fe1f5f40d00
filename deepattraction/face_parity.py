"""Compares the in-graph MTCNN with the `mtcnn` package on the same photos (test and benchmark)."""
from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from deepattraction.trainer import faces


def encode_jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def scut_photos(folder: str, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    names = sorted(os.listdir(os.path.join(folder, "images")))
    pick = np.random.default_rng(seed).choice(len(names), size=min(count, len(names)), replace=False)
    out = []
    for i in sorted(pick):
        with open(os.path.join(folder, "images", names[i]), "rb") as f:
            out.append((names[i], f.read()))
    return out


def composites(folder: str, seed: int = 0) -> list[tuple[str, bytes]]:
    """Photos with 0, 2 and 3 faces made from SCUT faces and scikit-image's public-domain photos."""
    from skimage import data

    faces_ = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for _, b in scut_photos(folder, 5, seed + 1)]
    two = np.concatenate(faces_[:2], axis=1)
    three = np.concatenate(faces_[2:5], axis=1)
    return [("astronaut.jpg", encode_jpeg(data.astronaut())), ("two_faces.jpg", encode_jpeg(two)),
            ("three_faces.jpg", encode_jpeg(three)), ("coffee_no_face.jpg", encode_jpeg(data.coffee())),
            ("rocket_no_face.jpg", encode_jpeg(data.rocket()))]


def iou_xywh(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax2, bx2) - max(a[0], b[0])), max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class GraphDetector:
    """The in-graph cascade behind one compiled tf.function, as Transform and serving run it."""

    def __init__(self, cfg: faces.DetectorConfig = faces.DetectorConfig()):
        self.detector = faces.Detector(cfg)
        self.cfg = cfg
        self.fn = tf.function(self._detect, input_signature=[tf.TensorSpec([None], tf.string)])

    def _detect(self, image_bytes):
        _, _, factors, d = faces.detect_photos(image_bytes, self.cfg, self.detector)
        inv = (1.0 / factors)[:, None, None]
        return d["count"], d["boxes"] * inv, d["confidence"]

    def __call__(self, photos: list[bytes]) -> list[list[dict]]:
        count, boxes, conf = (t.numpy() for t in self.fn(tf.constant(photos)))
        out = []
        for n, bs, cs in zip(count, boxes, conf):
            out.append([{"box": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "confidence": float(c)}
                        for b, c in zip(bs[: min(n, faces.MAX_FACES)], cs)])
        return out


@dataclasses.dataclass
class Parity:
    photos: int
    counts_equal: int
    faces_both: int
    boxes_iou_ok: int
    mismatches: list

    @property
    def counts_pct(self) -> float:
        return 100.0 * self.counts_equal / max(self.photos, 1)

    @property
    def boxes_pct(self) -> float:
        return 100.0 * self.boxes_iou_ok / max(self.faces_both, 1)


def compare(names: list[str], ours: list[list[dict]], theirs: list[list[dict]], min_iou: float = 0.9) -> Parity:
    """Counts per photo; each package face matched to our best-overlapping face by IoU."""
    p = Parity(len(names), 0, 0, 0, [])
    for name, a, b in zip(names, ours, theirs):
        if len(a) == len(b):
            p.counts_equal += 1
        else:
            p.mismatches.append((name, len(a), len(b)))
        for fb in b:
            if not a:
                continue
            best = max(iou_xywh(fa["box"], fb["box"]) for fa in a)
            p.faces_both += 1
            p.boxes_iou_ok += best >= min_iou
    return p
