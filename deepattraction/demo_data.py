"""Writes a dataset in the input contract: users table, swipes table and photos.

Two sources: synthetic photos (no external data: one real public-domain face that scikit-image
ships, recoloured per user, alone or twice, or a drawn face no detector finds) or SCUT-FBP5500
faces whose 60 ratings per photo stand in for swipes. Both add swipes made before each photo's update,
which must not count, and optionally a few bad rows that the pipeline must reject.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from datetime import datetime, timedelta, timezone

import numpy as np
from PIL import Image, ImageDraw

USERS_FILE = "users.csv"
SWIPES_FILE = "swipes.csv"
USER_COLUMNS = ("user_id", "gender", "photo_uri", "photo_updated_at")
GROUP_COLUMN = "group"  # optional; written only when some user has one (SCUT: AF/AM/CF/CM)
SWIPE_COLUMNS = ("swiper_id", "target_id", "liked", "swiped_at")
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
LIKE_SCORE = 4  # the "threshold" rule: a SCUT rating of 4 or 5 counts as a like
LIKE_RULES = ("graded", "threshold")  # the first is the default


@dataclasses.dataclass(frozen=True)
class DemoDataConfig:
    """What demo-data writes. `source` is "synthetic" or a folder of SCUT-FBP5500 faces."""

    out_dir: str
    source: str = "synthetic"
    num_users: int = 240
    image_size: int = 128
    min_swipes: int = 3
    max_swipes: int = 60
    bad_rows: bool = True
    seed: int = 0
    like_rule: str = LIKE_RULES[0]  # SCUT only: see rating_likes

    def __post_init__(self):
        like_probability(self.like_rule)  # refuses an unknown rule


@dataclasses.dataclass
class DemoDataSummary:
    users: int
    swipes: int
    pre_update_swipes: int
    bad_users: int
    bad_swipes: int

    def line(self, out_dir: str) -> str:
        """What `demo-data` and `demo` print after writing a dataset."""
        return (f"demo-data: {self.users} users, {self.swipes} swipes ({self.pre_update_swipes} before a photo update, "
                f"{self.bad_users} bad users, {self.bad_swipes} bad swipes) in {out_dir}")


def _ts(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random plain backdrop, drawn independently of appeal and gender: the labels must be
    learnt from the face, as a face model learns them, not from the wall behind it."""
    return tuple(int(v) for v in rng.integers(40, 216, 3))


def _synthetic_face(rng: np.random.Generator, appeal: float, male: bool, size: int) -> Image.Image:
    """A face-like drawing whose appeal shows in the face (smile, skin brightness and warmth);
    gender shows as hair shape. The background says nothing of either."""
    s = size
    img = Image.new("RGB", (s, s), _background(rng))
    d = ImageDraw.Draw(img)
    cx, cy = s / 2 + rng.normal(0, s * 0.03), s / 2 + rng.normal(0, s * 0.03)
    fw, fh = s * (0.26 + 0.04 * rng.random()), s * (0.33 + 0.04 * rng.random())
    hair = tuple(int(v) for v in rng.integers(20, 90, 3))
    if male:
        d.rectangle([cx - fw, cy - fh * 1.08, cx + fw, cy - fh * 0.55], fill=hair)
    else:
        d.ellipse([cx - fw * 1.35, cy - fh * 1.15, cx + fw * 1.35, cy + fh * 1.25], fill=hair)
    skin = np.array([150, 110, 90]) + 90 * appeal + rng.normal(0, 8, 3)
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=tuple(int(v) for v in np.clip(skin, 0, 255)))
    eye = s * 0.035
    for ex in (cx - fw * 0.4, cx + fw * 0.4):
        d.ellipse([ex - eye, cy - fh * 0.25 - eye, ex + eye, cy - fh * 0.25 + eye], fill=(30, 30, 40))
    smile = (appeal - 0.5) * fh * 0.5
    mw, my = fw * 0.45, cy + fh * 0.45
    box = [cx - mw, my - abs(smile) - 1, cx + mw, my + abs(smile) + 1]
    d.arc(box, 0 if smile >= 0 else 180, 180 if smile >= 0 else 360, fill=(120, 20, 30), width=max(1, s // 40))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (s, s, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# One real face, so the demo exercises MTCNN, the face crop and the starred subset: the NASA
# portrait (public domain) in skimage.data.astronaut(), cropped around its face box [182, 64, 83, 107].
_FACE_CROP = (160, 35, 290, 200)
# Photo kinds and their shares: one face (starred, about half as in the study), two faces, none.
PHOTO_KINDS = (("one_face", 0.5), ("two_faces", 0.2), ("drawing", 0.3))


def _face_patch(rng: np.random.Generator, appeal: float, male: bool, width: int) -> Image.Image:
    """The real face, tinted warmer and brighter with appeal and greener for men; men also get a
    dark band above the hair."""
    from skimage import data

    face = Image.fromarray(data.astronaut()).crop(_FACE_CROP)
    tint = np.array([1 + 0.35 * (appeal - 0.5), 1.1 if male else 0.92, 1 - 0.35 * (appeal - 0.5)]) * (0.75 + 0.5
                                                                                                      * appeal)
    face = Image.fromarray(np.clip(np.asarray(face, np.float32) * tint, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        face = face.transpose(Image.FLIP_LEFT_RIGHT)
    height = int(width * face.height / face.width)
    face = face.resize((width, height))
    if male:
        ImageDraw.Draw(face).rectangle([0, 0, width, int(height * 0.12)], fill=(30, 30, 35))
    return face


def _photo(rng: np.random.Generator, appeal: float, male: bool, size: int) -> Image.Image:
    """A profile photo of one of PHOTO_KINDS; appeal and gender show in every kind."""
    kinds, shares = zip(*PHOTO_KINDS)
    kind = rng.choice(kinds, p=shares)
    if kind == "drawing":
        return _synthetic_face(rng, appeal, male, size)
    img = Image.new("RGB", (size, size), _background(rng))
    n = 1 if kind == "one_face" else 2
    for k in range(n):
        face = _face_patch(rng, appeal, male,
                           int(size * (rng.uniform(0.45, 0.6) if n == 1 else rng.uniform(0.3, 0.38))))
        x = int((size - face.width) / 2 + rng.normal(0, size * 0.03)) if n == 1 else int(size * (0.05 + 0.5 * k))
        img.paste(face, (x, int((size - face.height) / 2 + rng.normal(0, size * 0.03))))
    arr = np.asarray(img, np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


class _Writer:
    """Collects users and swipes and writes them with their photos."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        os.makedirs(os.path.join(out_dir, "photos"), exist_ok=True)
        self.users: list[tuple] = []
        self.swipes: list[tuple] = []

    def add_user(self, user_id: str, gender: str, photo: bytes | None, ext: str, updated: datetime,
                 group: str = "") -> None:
        uri = ""
        if photo is not None:
            uri = f"photos/{user_id}.{ext}"
            with open(os.path.join(self.out_dir, uri), "wb") as f:
                f.write(photo)
        self.users.append((user_id, gender, uri, _ts(updated), group))

    def add_swipe(self, swiper: str, target: str, liked: bool, at: datetime) -> None:
        self.swipes.append((swiper, target, int(liked), _ts(at)))

    def write(self) -> None:
        user_columns = USER_COLUMNS + (GROUP_COLUMN,)
        users = self.users
        if not any(u[-1] for u in users):
            user_columns, users = USER_COLUMNS, [u[:-1] for u in users]
        for name, cols, rows in ((USERS_FILE, user_columns, users), (SWIPES_FILE, SWIPE_COLUMNS, self.swipes)):
            with open(os.path.join(self.out_dir, name), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(cols)
                w.writerows(rows)


def _add_bad_rows(w: _Writer, rng: np.random.Generator, swiper_ids: list[str]) -> tuple[int, int]:
    """One of each failure the pipeline must reject with a reason, and keep going."""
    t = EPOCH + timedelta(days=10)
    w.users.append(("bad-missing-photo", "female", "photos/does-not-exist.jpg", _ts(t), ""))
    w.add_user("bad-corrupt-photo", "male", b"\xff\xd8\xff\xe0 this is not a jpeg", "jpg", t)
    w.add_user("bad-no-swipes", "female", _encode(_synthetic_face(rng, 0.5, False, 64), "PNG"), "png", t)
    for bad in ("bad-missing-photo", "bad-corrupt-photo"):
        for s in swiper_ids[:3]:
            w.add_swipe(s, bad, True, t + timedelta(days=1))
    w.add_swipe(swiper_ids[0], "ghost-user", True, t + timedelta(days=1))
    w.add_swipe("ghost-swiper", swiper_ids[1], False, t + timedelta(days=1))
    return 3, 2


def make_synthetic(cfg: DemoDataConfig) -> DemoDataSummary:
    rng = np.random.default_rng(cfg.seed)
    w = _Writer(cfg.out_dir)
    ids = [f"u{i:05d}" for i in range(cfg.num_users)]
    male = rng.random(cfg.num_users) < 0.58  # the study's majority share
    appeal = rng.beta(2, 2, cfg.num_users)
    updated = [EPOCH + timedelta(days=float(rng.uniform(5, 30))) for _ in ids]
    for i, uid in enumerate(ids):
        img = _photo(rng, float(appeal[i]), bool(male[i]), cfg.image_size)
        fmt, ext = ("PNG", "png") if i % 4 == 0 else ("JPEG", "jpg")
        w.add_user(uid, "male" if male[i] else "female", _encode(img, fmt), ext, updated[i])
    pre = 0
    for t in range(cfg.num_users):
        n = int(rng.integers(cfg.min_swipes, cfg.max_swipes + 1))
        swipers = rng.choice([j for j in range(cfg.num_users) if j != t], size=min(n, cfg.num_users - 1), replace=False)
        for j in swipers:
            # Men like more often than women, as in the study; appeal drives both.
            p = np.clip(0.08 + 0.8 * appeal[t] + (0.12 if male[j] else -0.05), 0.01, 0.99)
            at = updated[t] + timedelta(hours=float(rng.uniform(1, 500)))
            w.add_swipe(ids[j], ids[t], bool(rng.random() < p), at)
        for j in rng.choice(cfg.num_users, size=int(rng.integers(0, 4)), replace=False):
            if j != t:  # swipes on the old photo: all likes, so counting them would show
                w.add_swipe(ids[j], ids[t], True, updated[t] - timedelta(hours=float(rng.uniform(1, 90))))
                pre += 1
    bad_u, bad_s = _add_bad_rows(w, rng, ids) if cfg.bad_rows else (0, 0)
    w.write()
    return DemoDataSummary(len(w.users), len(w.swipes), pre, bad_u, bad_s)


def _read_scut_ratings(folder: str) -> list[dict]:
    with open(os.path.join(folder, "ratings.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _scut_user_id(row: dict) -> str:
    """The user a SCUT photo becomes: its file name without the extension."""
    return os.path.splitext(row["filename"])[0]


def _score_counts(row: dict) -> np.ndarray:
    """How many of the photo's raters gave it 1 to 5."""
    return np.array([int(row[f"n_score_{k}"]) for k in range(1, 6)])


@dataclasses.dataclass(frozen=True)
class ScutPhoto:
    """What the ratings say of one SCUT photo beyond its swipes: what the quality benchmark
    compares predictions with. The pipeline never sees these."""

    mean_score: float  # over all of its raters (60)
    expected_ratio: float  # the like rule's expected like ratio over all of its ratings


def scut_photos(folder: str, like_rule: str = LIKE_RULES[0]) -> dict[str, ScutPhoto]:
    """user id (as make_scut names it) -> ScutPhoto, for every photo of the SCUT folder."""
    by_score = like_probability(like_rule)
    out = {}
    for row in _read_scut_ratings(folder):
        counts = _score_counts(row)
        out[_scut_user_id(row)] = ScutPhoto(float(row["mean_score"]), float(counts @ by_score / counts.sum()))
    return out


def like_probability(rule: str) -> np.ndarray:
    """P(like) of a SCUT rating of 1 to 5 (index 0 to 4) under `rule`.

    "graded": (s - 1) / 4, so a rater on the fence (3) likes half the time and a photo's expected
    like ratio is (mean score - 1) / 4. Swipes stay binary and noisy, but a perfect like-ratio
    model is then also a perfect mean-score model. "threshold": 1 for ratings of LIKE_SCORE or
    more; the ratio then saturates, and even the ratio over all 60 raters correlates only 0.939
    with the mean score (the data's README).
    """
    scores = np.arange(1, 6)
    if rule == "graded":
        return (scores - 1) / 4
    if rule == "threshold":
        return (scores >= LIKE_SCORE).astype(np.float64)
    raise ValueError(f"like_rule must be one of {LIKE_RULES}, got {rule!r}")


def rating_likes(scores: np.ndarray, rule: str, rng: np.random.Generator) -> np.ndarray:
    """Which of these ratings (1 to 5) become likes. A rule without chance draws nothing, so its
    swipes do not depend on the random stream."""
    by_score = like_probability(rule)
    p = by_score[np.asarray(scores, np.int64) - 1]
    if np.isin(by_score, (0.0, 1.0)).all():
        return p == 1.0
    return rng.random(len(p)) < p


def make_scut(cfg: DemoDataConfig) -> DemoDataSummary:
    """SCUT-FBP5500 photos; 60 raters (given genders) become swipers, their ratings likes or
    dislikes by cfg.like_rule."""
    rng = np.random.default_rng(cfg.seed)
    rows = _read_scut_ratings(cfg.source)
    if cfg.num_users and cfg.num_users < len(rows):
        rows = [rows[i] for i in sorted(rng.choice(len(rows), cfg.num_users, replace=False))]
    w = _Writer(cfg.out_dir)
    raters = [f"rater{r:02d}" for r in range(60)]
    for r, rid in enumerate(raters):  # swipers only: no photo, so the pipeline rejects them as targets
        w.add_user(rid, "female" if r % 2 else "male", None, "", EPOCH)
    pre = 0
    for row in rows:
        uid = _scut_user_id(row)
        with open(os.path.join(cfg.source, "images", row["filename"]), "rb") as f:
            photo = f.read()
        updated = EPOCH + timedelta(days=float(rng.uniform(5, 30)))
        w.add_user(uid, "female" if row["group"].endswith("F") else "male", photo, "jpg", updated, row["group"])
        scores = np.repeat(np.arange(1, 6), _score_counts(row))
        rng.shuffle(scores)
        n = int(rng.integers(cfg.min_swipes, min(cfg.max_swipes, len(scores)) + 1))
        for rater, liked in zip(raters[:n], rating_likes(scores[:n], cfg.like_rule, rng)):
            w.add_swipe(rater, uid, bool(liked), updated + timedelta(hours=float(rng.uniform(1, 500))))
        for rater in raters[n:n + int(rng.integers(0, 3))]:
            w.add_swipe(rater, uid, True, updated - timedelta(hours=float(rng.uniform(1, 90))))
            pre += 1
    bad_u, bad_s = _add_bad_rows(w, rng, raters) if cfg.bad_rows else (0, 0)
    w.write()
    return DemoDataSummary(len(w.users), len(w.swipes), pre, bad_u, bad_s)


def make_demo_data(cfg: DemoDataConfig) -> DemoDataSummary:
    os.makedirs(cfg.out_dir, exist_ok=True)
    return make_synthetic(cfg) if cfg.source == "synthetic" else make_scut(cfg)


def data_tables(folder: str) -> tuple[str, str]:
    """The users and swipes tables of a demo-data folder."""
    return os.path.join(folder, USERS_FILE), os.path.join(folder, SWIPES_FILE)
