"""MTCNN face detection as TensorFlow ops, so it runs inside the Transform graph and the served model.

The cascade and its arithmetic follow the `mtcnn` 1.0.0 package (P-Net over an image pyramid,
R-Net, O-Net, bounding-box regression, its all-pairs NMS, the five landmarks) and use the
pretrained weights that package ships, read from the installed package when the graph is built
and stored in the graph as constants. Unlike the package (NumPy between stages), everything here
is graph ops on a whole batch at once: no tf.py_function, no NumPy at run time.

The pyramid starts, as the package's does, at min_face_size on the photo's own pixels, so a photo
gets the package's count whatever its size. Photos are placed, without upscaling, at the top-left of
a batch canvas as large as the batch's largest photo (the package pads a batch the same way); only a
photo whose longer side exceeds DetectorConfig.canvas is first shrunk to fit, which bounds memory and
the pyramid's static list of levels whatever the photo's size.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math

import numpy as np
import tensorflow as tf

from deepattraction.trainer import features

MAX_FACES = 8  # faces reported per photo (the most confident); face_count counts them all


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """The package's defaults, plus the longest photo side detection reads (canvas): photos up to
    it keep the package's count; a larger photo is shrunk to fit, and its smallest countable face
    grows with the shrink (features.FACE_CANVAS_FAST names the old, faster, 384 px setting)."""

    canvas: int = features.FACE_CANVAS
    min_face_size: int = 20
    scale_factor: float = 0.709
    threshold_pnet: float = 0.6
    threshold_rnet: float = 0.7
    threshold_onet: float = 0.8
    nms_pnet_scale: float = 0.5
    nms_pnet: float = 0.7
    nms_rnet: float = 0.7
    nms_onet: float = 0.7
    max_proposals: int = 4096  # per pyramid level and batch: bounds the NMS matrices

    def scales(self) -> list[float]:
        """The package's pyramid (build_scale_pyramid) for a photo of the canvas's size, keeping the
        levels P-Net can read; a batch of smaller photos skips the levels it is too small for."""
        count = round(-(math.log(self.canvas / 12) / math.log(self.scale_factor) + 1))
        m = 12 / self.min_face_size
        return [m * self.scale_factor ** k for k in range(count) if int(self.canvas * m * self.scale_factor ** k) >= 12]


def load_package_weights(name: str) -> list[np.ndarray]:
    """P/R/O-Net weights from the installed `mtcnn` package (MIT); never copied into this repo."""
    import joblib

    return joblib.load(importlib.resources.files("mtcnn.assets.weights") / f"{name}.lz4")


def _prelu(x, alpha):
    return tf.maximum(x, 0.0) + alpha * tf.minimum(x, 0.0)


def _conv(x, w, b):
    """BiasAdd, not an Add: Grappler fuses Conv2D + BiasAdd into one kernel."""
    return tf.nn.bias_add(tf.nn.conv2d(x, w, strides=1, padding="VALID"), b)


def nonempty(net, *batches):
    """net(*batches), run on one zero sample when the batch is empty and cut back to none.

    oneDNN's CPU convolution (TensorFlow 2.16 with its default TF_ENABLE_ONEDNN_OPTS=1, on CPUs
    with AMX such as Sapphire Rapids) returns an empty batch with the input's shape instead of the
    output's, and the bias add after it fails. R-Net and O-Net see no patch at all whenever no
    photo of a batch has a candidate left, and a serving request may hold no photo, so every net
    and backbone call on a batch of unknown size goes through here. net may return any nest of
    tensors batched on their first axis; a batch that is not empty passes unchanged."""
    n = tf.shape(batches[0])[0]

    def one(t):
        return tf.cond(n > 0, lambda: t, lambda: tf.zeros(tf.concat([[1], tf.shape(t)[1:]], 0), t.dtype))

    return tf.nest.map_structure(lambda out: out[:n], net(*(one(t) for t in batches)))


class MtcnnNets(tf.Module):
    """The three networks as plain ops over constant weights (layer order as in the package)."""

    def __init__(self):
        super().__init__()
        self.p = [tf.constant(a, tf.float32) for a in load_package_weights("pnet")]
        # P-Net's two 1x1 heads (box offsets: 4, face/not: 2) as one convolution: one pass over
        # the largest feature maps of every pyramid level instead of two.
        self.p_heads = (tf.concat([self.p[9], self.p[11]], -1), tf.concat([self.p[10], self.p[12]], -1))
        self.r = [tf.constant(a, tf.float32) for a in load_package_weights("rnet")]
        self.o = [tf.constant(a, tf.float32) for a in load_package_weights("onet")]

    def pnet(self, x, level_hw):
        """level_hw [B, 2]: each photo's size on this level. Beyond it the first convolution's
        outputs are masked out, so 'SAME' pooling at a photo's edge sees padding, as in the package."""
        w = self.p
        x = _prelu(_conv(x, w[0], w[1]), w[2])
        valid = level_hw - 2

        def masked():
            rows, cols = tf.range(tf.shape(x)[1]), tf.range(tf.shape(x)[2])
            inside = (rows[None, :, None] < valid[:, 0, None, None]) & (cols[None, None, :] < valid[:, 1, None, None])
            return tf.where(inside[..., None], x, -1e9)

        # A level of photos of one size fills its canvas exactly (Detector._level): nothing to mask.
        x = tf.cond(tf.reduce_any(valid < tf.shape(x)[1:3]), masked, lambda: x)
        x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        x = _prelu(_conv(x, w[3], w[4]), w[5])
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        heads = _conv(x, *self.p_heads)
        return heads[..., :4], tf.sigmoid(heads[..., 5] - heads[..., 4])  # softmax's face probability

    def rnet(self, x):
        w = self.r
        x = _prelu(_conv(x, w[0], w[1]), w[2])
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        x = _prelu(_conv(x, w[3], w[4]), w[5])
        x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [tf.shape(x)[0], -1])
        x = _prelu(tf.matmul(x, w[9]) + w[10], w[11])
        return tf.matmul(x, w[12]) + w[13], tf.nn.softmax(tf.matmul(x, w[14]) + w[15])[:, 1]

    def onet(self, x):
        w = self.o
        x = _prelu(_conv(x, w[0], w[1]), w[2])
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        x = _prelu(_conv(x, w[3], w[4]), w[5])
        x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        x = _prelu(_conv(x, w[9], w[10]), w[11])
        x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [tf.shape(x)[0], -1])
        x = _prelu(tf.matmul(x, w[12]) + w[13], w[14])
        return (tf.matmul(x, w[15]) + w[16], tf.matmul(x, w[17]) + w[18],
                tf.nn.softmax(tf.matmul(x, w[19]) + w[20])[:, 1])


def _iou(boxes, method: str):
    """Pairwise IoU ("union") or intersection over the smaller area ("min"), as the package."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    area = (x2 - x1) * (y2 - y1)
    iw = tf.maximum(0.0, tf.minimum(x2[:, None], x2[None]) - tf.maximum(x1[:, None], x1[None]))
    ih = tf.maximum(0.0, tf.minimum(y2[:, None], y2[None]) - tf.maximum(y1[:, None], y1[None]))
    inter = iw * ih
    denom = area[:, None] + area[None] - inter if method == "union" else tf.minimum(area[:, None], area[None])
    return tf.math.divide_no_nan(inter, denom)


def nms(image_ids, boxes, scores, threshold: float, method: str = "union"):
    """The package's NMS: sorted by score, a box is dropped when any better box of the same photo
    overlaps it beyond the threshold, even a box that was itself dropped. Returns kept indices."""
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    ids, b = tf.gather(image_ids, order), tf.gather(boxes, order)
    n = tf.shape(order)[0]
    earlier = tf.linalg.band_part(tf.ones([n, n], tf.bool), 0, -1) & ~tf.eye(n, dtype=tf.bool)
    clash = (_iou(b, method) > threshold) & tf.equal(ids[:, None], ids[None]) & earlier
    return tf.boolean_mask(order, ~tf.reduce_any(clash, axis=0))


def _square(boxes):
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    w, h = x2 - x1, y2 - y1
    side = tf.maximum(w, h)
    nx1, ny1 = x1 + w * 0.5 - side * 0.5, y1 + h * 0.5 - side * 0.5
    return tf.stack([nx1, ny1, nx1 + side, ny1 + side], axis=1)


def _regress(boxes, offsets):
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    w, h = x2 - x1 + 1, y2 - y1 + 1
    return boxes + offsets * tf.stack([w, h, w, h], axis=1)


def _patches(canvas, image_ids, boxes, sizes, out: int):
    """Crops as the package's extract_patches: it normalises by the photo's own size (H, W), so
    the pixel a coordinate lands on is c * (H - 1) / H; on the canvas that is c_norm * (S - 1)."""
    s = tf.cast(tf.maximum(tf.shape(canvas)[1:3] - 1, 1), tf.float32)
    hw = tf.gather(sizes, image_ids)
    h, w = hw[:, 0], hw[:, 1]
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    norm = tf.stack([y1 * (h - 1) / h / s[0], x1 * (w - 1) / w / s[1],
                     y2 * (h - 1) / h / s[0], x2 * (w - 1) / w / s[1]], axis=1)
    return tf.image.crop_and_resize(canvas, norm, image_ids, [out, out])


def _no_proposals():
    """A pyramid level no photo of the batch is large enough for."""
    return tf.zeros([0], tf.int32), tf.zeros([0, 4]), tf.zeros([0])


class Detector(tf.Module):
    """Batched MTCNN: normalised canvases in, per-photo faces out, all as graph ops."""

    def __init__(self, cfg: DetectorConfig = DetectorConfig()):
        super().__init__()
        self.cfg = cfg
        self.nets = MtcnnNets()

    def _level(self, canvas, sizes, scale: float, level_side):
        """One pyramid level: each photo area-resized by its own size (as the package resizes
        each photo), then placed on the level's canvas for one batched P-Net call; photos of one
        size make a canvas of exactly their size."""

        def one(args):
            img, hw = args
            h, w = tf.cast(hw[0], tf.int32), tf.cast(hw[1], tf.int32)
            target = tf.maximum(tf.cast(tf.cast(hw, tf.float64) * scale, tf.int32), 1)  # truncated, as the package
            small = tf.image.resize(img[:h, :w], target, method="area")
            return _pad_to(small, level_side)

        def together():  # photos of one size (a batch of 1; the Transform's SCUT batches): one resize op
            hw = sizes[0]
            h, w = tf.cast(hw[0], tf.int32), tf.cast(hw[1], tf.int32)
            target = tf.maximum(tf.cast(tf.cast(hw, tf.float64) * scale, tf.int32), 1)
            return tf.image.resize(canvas[:, :h, :w], target, method="area")  # the level's whole canvas

        return tf.cond(tf.reduce_all(tf.equal(sizes, sizes[:1])), together, lambda: tf.map_fn(
            one, (canvas, sizes), fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32)))

    def _pnet(self, canvas, sizes):
        """Proposals from every pyramid level: image id, box, score (package: StagePNet)."""
        c = self.cfg
        ids, boxes, scores = [], [], []
        canvas_hw = tf.shape(canvas)[1:3]
        for scale in c.scales():
            level_side = tf.cast(tf.cast(canvas_hw, tf.float64) * scale, tf.int32)
            i, b, sc = tf.cond(tf.reduce_min(level_side) >= 12, functools.partial(
                self._level_proposals, canvas, sizes, scale, level_side), _no_proposals)
            ids.append(i)
            boxes.append(b)
            scores.append(sc)
        ids, boxes, scores = tf.concat(ids, 0), tf.concat(boxes, 0), tf.concat(scores, 0)
        kept = nms(ids, boxes, scores, c.nms_pnet)
        return tf.gather(ids, kept), _square(tf.gather(boxes, kept))

    def _level_proposals(self, canvas, sizes, scale: float, level_side):
        """One level's proposals after its own NMS (package: generate_bounding_box, nms_pnet1)."""
        c = self.cfg
        level_hw = tf.maximum(tf.cast(tf.cast(sizes, tf.float64) * scale, tf.int32), 1)
        reg, prob = nonempty(self.nets.pnet, self._level(canvas, sizes, scale, level_side), level_hw)
        # Only windows inside the photo, where the package's valid convolutions reach.
        out_hw = (level_hw - 1) // 2 - 4  # ceil((n - 2) / 2) - 4
        rows, cols = tf.range(tf.shape(prob)[1]), tf.range(tf.shape(prob)[2])
        inside = (rows[None, :, None] < out_hw[:, 0, None, None]) & (cols[None, None, :] < out_hw[:, 1, None, None])
        prob = tf.where(inside, prob, 0.0)
        flat = tf.reshape(prob, [-1])
        keep = tf.cast(tf.where(flat > c.threshold_pnet)[:, 0], tf.int32)
        # Sorting only what passes the threshold: a top_k over every window of a level cost more
        # than P-Net's last layers. Beyond max_proposals, the most probable are kept.
        keep = tf.cond(tf.size(keep) > c.max_proposals,
                       lambda: tf.gather(keep, tf.math.top_k(tf.gather(flat, keep), k=c.max_proposals).indices),
                       lambda: keep)
        where = tf.transpose(tf.unravel_index(keep, tf.shape(prob, out_type=tf.int32)))  # [n, 3] b, row, col
        r = tf.gather_nd(reg, where)
        col, row = tf.cast(where[:, 2], tf.float32), tf.cast(where[:, 1], tf.float32)
        b = tf.stack([col * 2 + 1 + r[:, 0] * 11, row * 2 + 1 + r[:, 1] * 11,
                      col * 2 + 12 + r[:, 2] * 11, row * 2 + 12 + r[:, 3] * 11], axis=1) / scale
        sc = tf.gather(flat, keep)
        kept = nms(where[:, 0], b, sc, c.nms_pnet_scale)
        return tf.gather(where[:, 0], kept), tf.gather(b, kept), tf.gather(sc, kept)

    def _rnet(self, canvas, sizes, ids, boxes):
        reg, prob = nonempty(self.nets.rnet, _patches(canvas, ids, boxes, sizes, 24))
        boxes = _regress(boxes, reg)
        keep = tf.where(prob > self.cfg.threshold_rnet)[:, 0]
        ids, boxes, prob = tf.gather(ids, keep), tf.gather(boxes, keep), tf.gather(prob, keep)
        kept = nms(ids, boxes, prob, self.cfg.nms_rnet)
        return tf.gather(ids, kept), _square(tf.gather(boxes, kept))

    def _onet(self, canvas, sizes, ids, boxes):
        reg, marks, prob = nonempty(self.nets.onet, _patches(canvas, ids, boxes, sizes, 48))
        x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
        w, h = (x2 - x1 + 1)[:, None], (y2 - y1 + 1)[:, None]
        marks = tf.concat([w * marks[:, :5] + x1[:, None] - 1, h * marks[:, 5:] + y1[:, None] - 1], axis=1)
        boxes = _regress(boxes, reg)
        keep = tf.where(prob > self.cfg.threshold_onet)[:, 0]
        ids, boxes, marks, prob = (tf.gather(t, keep) for t in (ids, boxes, marks, prob))
        kept = nms(ids, boxes, prob, self.cfg.nms_onet, method="min")
        return tuple(tf.gather(t, kept) for t in (ids, boxes, marks, prob))

    def detect(self, canvas, sizes):
        """canvas: [B, H, W, 3] pixels in [0, 255] (photo at top-left); sizes: [B, 2] its (h, w).

        Returns per photo: count [B], boxes [B, MAX_FACES, 4] (x1, y1, x2, y2, clipped to the photo),
        confidence [B, MAX_FACES], landmarks [B, MAX_FACES, 10] (x1..x5, y1..y5), most confident first.
        """
        sizes = tf.cast(sizes, tf.float32)
        norm = (tf.cast(canvas, tf.float32) - 127.5) / 128.0
        ids, boxes = self._pnet(norm, sizes)
        ids, boxes = self._rnet(norm, sizes, ids, boxes)
        ids, boxes, marks, prob = self._onet(norm, sizes, ids, boxes)
        hw = tf.gather(sizes, ids)
        lim = tf.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], axis=1) - 1
        boxes = tf.clip_by_value(boxes, 0.0, lim)
        return _per_photo(ids, boxes, marks, prob, tf.shape(canvas)[0])


def _per_photo(ids, boxes, marks, prob, batch):
    """Scatters the flat detections into fixed-size per-photo slots, most confident first."""
    order = tf.argsort(prob + tf.cast(batch - ids, tf.float32) * 10.0, direction="DESCENDING", stable=True)
    ids, boxes, marks, prob = (tf.gather(t, order) for t in (ids, boxes, marks, prob))
    count = tf.math.bincount(tf.cast(ids, tf.int32), minlength=batch, maxlength=batch)
    starts = tf.cumsum(count, exclusive=True)
    rank = tf.range(tf.shape(ids)[0]) - tf.gather(starts, ids)
    keep = rank < MAX_FACES
    idx = tf.stack([tf.boolean_mask(ids, keep), tf.boolean_mask(rank, keep)], axis=1)

    def scatter(values, shape):
        return tf.scatter_nd(idx, tf.boolean_mask(values, keep), shape)

    return {
        "count": tf.cast(count, tf.int64),
        "boxes": scatter(boxes, [batch, MAX_FACES, 4]),
        "confidence": scatter(prob, [batch, MAX_FACES]),
        "landmarks": scatter(marks, [batch, MAX_FACES, 10]),
    }


def fit(image, canvas: int):
    """One decoded photo [h, w, 3] -> (float pixels [h', w', 3], (h', w'), the factor from original
    to fitted pixels). A photo whose longer side exceeds `canvas` shrinks to fit; others are
    unchanged (the package reads them at their own size)."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = tf.minimum(1.0, canvas / tf.reduce_max(hw))
    new_hw = tf.maximum(tf.cast(tf.math.floor(hw * factor), tf.int32), 1)
    img = tf.cast(image, tf.float32)
    img = tf.cond(factor < 1.0, lambda: tf.image.resize(img, new_hw, method="area"), lambda: img)
    return img, tf.cast(new_hw, tf.float32), factor


_EXIF_SEARCH = 65536  # APP1 (EXIF) comes right after the JPEG's start marker
_EXIF_PAD = b"\0" * 1024


def _uint(b, little):
    """Bytes (uint8 vector) as an unsigned integer of either byte order."""
    b = tf.cast(b, tf.int64)
    weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), 8 * tf.range(tf.size(b), dtype=tf.int64))
    return tf.reduce_sum(b * tf.where(little, weights, tf.reverse(weights, [0])))


def exif_orientation(data):
    """The EXIF orientation tag (1-8) of a JPEG, 1 when there is none or it is malformed. Pure
    string and integer ops: offsets are clamped and the data padded, so no input can fail here."""
    parts = tf.strings.split(tf.strings.substr(data, 0, _EXIF_SEARCH), "Exif\0\0", maxsplit=1)
    tiff = tf.strings.join([parts[-1], _EXIF_PAD + _EXIF_PAD])
    n = tf.strings.length(tiff)
    head = tf.io.decode_raw(tf.strings.substr(tiff, 0, 8), tf.uint8)
    little = tf.equal(head[0], 0x49)
    ifd = tf.minimum(_uint(head[4:8], little), tf.cast(n, tf.int64) - 2 - 12 * 32)
    ifd = tf.cast(tf.maximum(ifd, 0), tf.int32)
    entries = tf.reshape(tf.io.decode_raw(tf.strings.substr(tiff, ifd + 2, 12 * 32), tf.uint8), [32, 12])
    count = tf.minimum(_uint(tf.io.decode_raw(tf.strings.substr(tiff, ifd, 2), tf.uint8), little), 32)
    two = tf.where(little, tf.constant([1, 256], tf.int64), tf.constant([256, 1], tf.int64))  # all rows at once
    tags = tf.reduce_sum(tf.cast(entries[:, 0:2], tf.int64) * two, axis=1)
    values = tf.reduce_sum(tf.cast(entries[:, 8:10], tf.int64) * two, axis=1)
    hit = tf.equal(tags, 0x0112) & (tf.range(32, dtype=tf.int64) < count)
    value = tf.reduce_max(tf.where(hit, values, 0))
    valid = (tf.size(parts) == 2) & (value >= 1) & (value <= 8)
    return tf.where(valid, value, 1)


def _pad_to(image, side, value: float = 0.0):
    """[h, w, c] -> [side_h, side_w, c] (side: one int or a (h, w) pair), the photo at the top left.
    tf.pad, unlike tf.image.pad_to_bounding_box, adds no Assert ops (see apply_orientation)."""
    shape = tf.shape(image)
    side = side * tf.ones([2], tf.int32)
    return tf.pad(image, [[0, side[0] - shape[0]], [0, side[1] - shape[1]], [0, 0]], constant_values=value)


def apply_orientation(image, orientation):
    """Turns the pixels upright as EXIF orientation says (camera photos are often stored sideways).

    Plain reverse and transpose ops, as tf.image.rot90 and the flips compute them but without their
    Assert ops: an Assert is stateful, so it would make TF Transform believe the photo must be
    analysed, and pass over every photo (running MTCNN) even though no analyzer needs it."""
    def t(x):
        return tf.transpose(x, [1, 0, 2])

    def rev(x, axes):
        return tf.reverse(x, axes)

    branches = [
        lambda: image, lambda: rev(image, [1]), lambda: rev(image, [0, 1]), lambda: rev(image, [0]),
        lambda: t(image), lambda: rev(t(image), [1]), lambda: rev(t(image), [0, 1]), lambda: t(rev(image, [1])),
    ]
    return tf.switch_case(tf.cast(orientation - 1, tf.int32), branches)


_HEADER = 32  # bytes that hold the size of a PNG, GIF or BMP


def header_hw(data):
    """(height, width), int64, from the photo's header alone: JPEG's frame header, PNG's IHDR,
    GIF's logical screen, BMP's info header; (0, 0) for other bytes (the decoder refuses those).
    Only a JPEG whose header libjpeg cannot read fails here, as its decoding would."""
    head = tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, b"\0" * _HEADER]), 0, _HEADER), tf.uint8)

    def le(a, b):
        return _uint(head[a:b], True)

    def be(a, b):
        return _uint(head[a:b], False)

    def int32(v):  # BMP's sizes are signed (a negative height stores rows top-down)
        return tf.abs(tf.where(v >= 1 << 31, v - (1 << 32), v))

    start = tf.strings.substr(data, 0, 8)
    core = le(14, 18) == 12  # BITMAPCOREHEADER: 16-bit sizes
    bmp = tf.where(core, tf.stack([le(20, 22), le(18, 20)]), tf.stack([int32(le(22, 26)), int32(le(18, 22))]))
    zero = tf.zeros([2], tf.int64)
    hw = tf.where(tf.equal(start, b"\x89PNG\r\n\x1a\n"), tf.stack([be(20, 24), be(16, 20)]), zero)
    hw = tf.where(tf.equal(tf.strings.substr(start, 0, 3), b"GIF"), tf.stack([le(8, 10), le(6, 8)]), hw)
    hw = tf.where(tf.equal(tf.strings.substr(start, 0, 2), b"BM"), bmp, hw)
    return tf.cond(tf.io.is_jpeg(data), lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
                   lambda: hw)


def gif_frames(data, cap):
    """How many images (frames) a GIF holds, counted up to `cap` + 1 by walking its blocks
    (extensions, image descriptors and their data sub-blocks) without decoding; 1 for a GIF
    whose blocks end early or are malformed. TensorFlow's decoder decodes every frame even when
    only the first is kept, so an animation costs its frames times its screen."""
    raw = tf.io.decode_raw(tf.strings.join([data, b"\0" * 16]), tf.uint8)
    n = tf.cast(tf.size(raw) - 16, tf.int64)

    def at(i):
        return tf.cast(tf.gather(raw, tf.minimum(tf.cast(i, tf.int64), n + 15)), tf.int64)

    def table(packed):  # a colour table's bytes, when the packed field's top bit says it is there
        return tf.where(packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0)

    # size_byte: pos is at a data sub-block's size byte (0 ends the data), else at a block's first byte.
    def body(pos, size_byte, frames, done):
        b = at(pos)
        pos_next = tf.where(size_byte, pos + 1 + b,
                            tf.where(b == 0x21, pos + 2, tf.where(b == 0x2C, pos + 11 + table(at(pos + 9)), pos)))
        frames_next = frames + tf.cast(~size_byte & (b == 0x2C), tf.int64)
        done_next = ~size_byte & (b != 0x21) & (b != 0x2C)
        return pos_next, ~size_byte | (b != 0), frames_next, done_next

    _, _, frames, _ = tf.while_loop(
        lambda pos, size_byte, frames, done: ~done & (pos < n) & (frames <= cap), body,
        (13 + table(at(10)), tf.constant(False), tf.constant(0, tf.int64), tf.constant(False)))
    return tf.maximum(frames, 1)


def declared_size(data):
    """(height, width, frames), int64, as the photo's header and blocks declare them: frames is
    1 but for a GIF's animation (gif_frames, counted up to just past the pixel limit)."""
    hw = header_hw(data)
    cap = features.MAX_PHOTO_PIXELS // tf.maximum(hw[0] * hw[1], 1)
    frames = tf.cond(tf.equal(tf.strings.substr(data, 0, 3), b"GIF"), lambda: gif_frames(data, cap),
                     lambda: tf.constant(1, tf.int64))
    return tf.concat([hw, [frames]], 0)


# within_pixel_limit's refusal: "photo is WxH pixels[ in at least N frames], over the M-pixel limit", after
# this prefix.
_REFUSED_BY = "could not correctly convert string: "
_LIMIT_END = "-pixel limit"


def within_pixel_limit(data):
    """The photo's bytes, unchanged, when its header declares at most features.MAX_PHOTO_PIXELS
    (all frames of a GIF together); otherwise the graph fails before decoding, so a few kB that
    declare gigapixels cannot take a worker's or a server's memory. It fails through
    StringToNumber, which quotes its input: an Assert would be stateful (see apply_orientation)."""
    h, w, frames = tf.unstack(declared_size(data))
    over = h * w * frames > features.MAX_PHOTO_PIXELS
    in_frames = tf.where(frames > 1, tf.strings.join([" in at least ", tf.strings.as_string(frames), " frames"]), "")
    why = tf.strings.join(["photo is ", tf.strings.as_string(w), "x", tf.strings.as_string(h), " pixels", in_frames,
                           f", over the {features.MAX_PHOTO_PIXELS:,}{_LIMIT_END}"])
    zero = tf.strings.to_number(tf.where(over, why, "0"), tf.int32)
    # A data dependency: a control dependency on tf.identity(data) let the decode run unchecked.
    return tf.strings.substr(data, zero, tf.strings.length(data))


def refusal(message: str) -> str | None:
    """within_pixel_limit's reason, from a TensorFlow error message; None for any other error."""
    for line in message.splitlines():
        if _REFUSED_BY + "photo is " in line:
            why = line.split(_REFUSED_BY, 1)[1]
            return why[:why.find(_LIMIT_END) + len(_LIMIT_END)] if _LIMIT_END in why else why.strip()
    return None


def decode(data):
    """Encoded JPEG/PNG/GIF/BMP -> [h, w, 3] uint8, upright: grayscale is expanded, CMYK converted,
    alpha dropped, 16-bit PNG scaled to 8 bits, EXIF orientation applied. Undecodable bytes, and a
    photo over features.MAX_PHOTO_PIXELS, raise InvalidArgumentError naming the problem."""
    img = tf.io.decode_image(within_pixel_limit(data), channels=3, dtype=tf.uint8, expand_animations=False)
    return apply_orientation(img, exif_orientation(data))


def photo_canvas(image_bytes, canvas: int):
    """[B] encoded photos -> canvases [B, H, W, 3] float (each photo, shrunk to fit `canvas` when
    larger, at the top left, mid-grey beyond it: what the package's crops see beyond a photo's
    edge; H, W those of the batch's largest fitted photo), each photo's (h, w) on it, and the
    canvas/original factor."""

    n = tf.shape(image_bytes)[0]

    def body(i, pixels, sizes, factors):  # photos of any sizes, their pixels one flat list
        img, hw, factor = fit(decode(image_bytes[i]), canvas)
        return i + 1, pixels.write(i, tf.reshape(img, [-1, 3])), sizes.write(i, hw), factors.write(i, factor)

    _, pixels, sizes, factors = tf.while_loop(lambda i, *_: i < n, body, (
        0, tf.TensorArray(tf.float32, n, infer_shape=False, element_shape=[None, 3]),
        tf.TensorArray(tf.float32, n, element_shape=[2]), tf.TensorArray(tf.float32, n, element_shape=[])))
    hws, factors = sizes.stack(), factors.stack()
    flat = tf.concat([pixels.concat(), tf.fill([1, 3], 127.5)], 0)  # never empty
    h, w = tf.cast(hws[:, 0], tf.int32)[:, None, None], tf.cast(hws[:, 1], tf.int32)[:, None, None]
    # One mid-grey row and column beyond the largest photo: a crop sampling just past any photo's
    # edge then blends with grey whatever photos share its batch (the Transform's batches and a
    # serving request's differ), and a batch of no photo still has a 1 x 1 canvas.
    side = tf.reduce_max(tf.concat([tf.cast(hws, tf.int32), tf.zeros([1, 2], tf.int32)], 0), axis=0) + 1
    rows, cols = tf.range(side[0])[None, :, None], tf.range(side[1])[None, None, :]
    start = tf.cumsum(tf.reshape(h * w, [-1]), exclusive=True)[:, None, None]
    inside = (rows < h) & (cols < w)
    index = tf.where(inside, start + rows * w + cols, tf.shape(flat)[0] - 1)
    canvases = tf.gather(flat, index)
    return tf.ensure_shape(canvases, [None, None, None, 3]), hws, factors


# Photos share a detection chunk only when they fall in the same size bucket (each side's
# floor(log_CHUNK_SIDE_RATIO)): a chunk's pyramid is as large as its largest photo, for every photo
# in it, so a 350 px face must not pay for a 1080 px photo's levels.
CHUNK_SIDE_RATIO = 1.25


def chunk_ids(hws, chunk: int):
    """[B, 2] photo sizes -> (order, chunk of each photo in that order, chunk count): photos
    sorted by size bucket, a new chunk wherever the bucket changes or a chunk holds `chunk`."""
    b = tf.shape(hws)[0]
    bucket = tf.cast(tf.floor(tf.math.log(tf.maximum(hws, 1.0)) / math.log(CHUNK_SIDE_RATIO)), tf.int32)
    bucket = bucket[:, 0] * 4096 + bucket[:, 1]
    order = tf.argsort(bucket, stable=True)
    key = tf.gather(bucket, order)
    pos = tf.range(b)
    new_run = tf.concat([[True], key[1:] != key[:-1]], 0)[:b]
    run = tf.cumsum(tf.cast(new_run, tf.int32)) - 1
    start = tf.gather(tf.math.unsorted_segment_min(pos, run, tf.maximum(tf.reduce_max(run) + 1, 1)), run)
    ids = tf.cumsum(tf.cast(new_run | tf.equal((pos - start) % chunk, 0), tf.int32)) - 1
    return order, ids, tf.maximum(tf.reduce_max(ids) + 1, 1)


def detect_canvases(canvases, hws, detector: "Detector", chunk: int = 16):
    """Detector.detect over a batch in chunks of at most `chunk` photos of about one size
    (chunk_ids), one after another: that bounds the NMS matrices for any batch size, and each
    chunk reads only as much of the canvas as its largest photo (plus the grey row and column).
    A batch of 1, or of 8 photos of one size, is one chunk of its own size, never padded."""
    b = tf.shape(canvases)[0]
    order, ids, n = chunk_ids(hws, chunk)
    sizes = tf.cast(hws, tf.int32)
    specs = {"count": (tf.int64, []), "boxes": (tf.float32, [MAX_FACES, 4]), "confidence": (tf.float32, [MAX_FACES]),
             "landmarks": (tf.float32, [MAX_FACES, 10])}  # Detector.detect's outputs, per photo
    keys = tuple(specs)

    def body(k, *arrays):
        idx = tf.boolean_mask(order, tf.equal(ids, k))
        side = tf.clip_by_value(tf.reduce_max(tf.gather(sizes, idx), axis=0) + 1, 1, tf.shape(canvases)[1:3])
        d = detector.detect(tf.gather(canvases, idx)[:, :side[0], :side[1]], tf.gather(hws, idx))
        return (k + 1, *(a.write(k, d[key]) for a, key in zip(arrays, keys)))

    arrays = tuple(tf.TensorArray(dtype, size=n, infer_shape=False, element_shape=[None, *shape])
                   for dtype, shape in specs.values())
    _, *arrays = tf.while_loop(lambda k, *_: k < n, body, (0, *arrays), parallel_iterations=1)
    back = tf.math.invert_permutation(order)  # chunk order -> the batch's order
    return {key: tf.gather(a.concat(), back)[:b] for key, a in zip(keys, arrays)}


def detect_photos(image_bytes, cfg: DetectorConfig = DetectorConfig(), detector: "Detector | None" = None,
                  chunk: int = 16):
    """[B] encoded photos -> canvases (photo_canvas), each photo's (h, w) on them, detections in
    canvas pixels, and the canvas/original factor."""
    canvases, hws, factors = photo_canvas(image_bytes, cfg.canvas)
    return canvases, hws, factors, detect_canvases(canvases, hws, detector or Detector(cfg), chunk)
