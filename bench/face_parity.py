"""Compares the in-graph MTCNN with the `mtcnn` package on the same photos (the lab's parity
check: bench/faces.py and bench/face_parity_test.py); the photos come from the product's
deepattraction/sample_photos.py."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from deepattraction.sample_photos import composites, encode_jpeg, group_photos, scut_photos  # noqa: F401
from deepattraction.trainer import faces


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
