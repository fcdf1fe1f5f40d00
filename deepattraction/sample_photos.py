"""Real face photos for tests and benchmarks: SCUT-FBP5500 faces as they are, composites of
0, 2 and 3 faces, and group photos of 640 and 1080 px with faces 24-96 px wide (the sizes profile
photos come in). Inputs only: the lab's parity check against the `mtcnn` package (bench/face_parity.py)
and the product's own tests both draw their photos from here."""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image


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


FACE_WIDTHS = (24, 32, 48, 64, 96)  # about how wide each pasted face is, in the photo's pixels
PHOTO_SIZES = {640: (480, 640), 1080: (810, 1080)}  # long side -> (h, w) of the group photos
_FACE_CROP = (50, 30, 300, 330)  # x1, y1, x2, y2 of a SCUT photo around its face
_FACE_IN_CROP = 190  # about how wide MTCNN finds a SCUT face (its box), in the crop's pixels


def group_photo(faces_: list[np.ndarray], widths: list[int], hw: tuple[int, int], rng) -> np.ndarray:
    """Real faces pasted, each scaled to about its width, on distinct cells of a grid over a
    blurred real background (scikit-image's coffee, which holds no face)."""
    from skimage import data

    h, w = hw
    canvas = np.asarray(Image.fromarray(data.coffee()).resize((w, h), Image.BILINEAR)).copy()
    rows, cols = 2, 3
    cells = rng.choice(rows * cols, size=len(faces_), replace=False)
    for face, width, cell in zip(faces_, widths, cells):
        crop = Image.fromarray(face).crop(_FACE_CROP)
        fw = max(2, round(width * crop.width / _FACE_IN_CROP))
        fh = max(2, round(fw * crop.height / crop.width))
        small = np.asarray(crop.resize((fw, fh), Image.LANCZOS))
        ch, cw = h // rows, w // cols
        y = (cell // cols) * ch + int(rng.integers(0, max(1, ch - fh)))
        x = (cell % cols) * cw + int(rng.integers(0, max(1, cw - fw)))
        canvas[y:y + fh, x:x + fw] = small[:h - y, :w - x]
    return canvas


def group_photos(folder: str, long_side: int, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """`count` JPEGs of `long_side` px (PHOTO_SIZES) holding 1 to 4 real SCUT faces each, of
    widths drawn from FACE_WIDTHS (the smallest the package finds at its defaults is ~24 px)."""
    rng = np.random.default_rng(seed)
    pool = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for _, b in scut_photos(folder, 4 * count, seed + 7)]
    out = []
    for i in range(count):
        n = int(rng.integers(1, 5))
        widths = [int(FACE_WIDTHS[(i + k) % len(FACE_WIDTHS)]) for k in range(n)]
        img = group_photo(pool[4 * i:4 * i + n], widths, PHOTO_SIZES[long_side], rng)
        out.append((f"group{long_side}_{i}_{'-'.join(map(str, widths))}px.jpg", encode_jpeg(img)))
    return out
