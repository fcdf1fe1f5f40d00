"""Swipe aggregation as Beam transforms: tables in, tf.Examples, rejects and the gender table out.

A like ratio counts only swipes made strictly after the target's last photo update. Every input
row ends either in an example or in the rejects with its reason.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from datetime import datetime, timezone
from typing import Iterable, Iterator

import apache_beam as beam
import tensorflow as tf

from deepattraction.trainer import faces, features

USER_COLUMNS = ("user_id", "gender", "photo_uri", "photo_updated_at")
USER_OPTIONAL_COLUMNS = ("group",)  # a cohort label for evaluation slices, e.g. SCUT-FBP5500's AF/AM/CF/CM
SWIPE_COLUMNS = ("swiper_id", "target_id", "liked", "swiped_at")
REJECT = "reject"
REJECT_COLUMNS = ("kind", "id", "reason", "source")
TRUE_VALUES = {"1", "true", "t", "yes", "y", "like", "liked"}
FALSE_VALUES = {"0", "false", "f", "no", "n", "dislike", "disliked"}


@dataclasses.dataclass(frozen=True)
class Reject:
    kind: str  # "user" or "swipe"
    id: str
    reason: str
    source: str  # the file the row came from

    def csv_line(self) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([self.kind, self.id, self.reason, self.source])
        return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class User:
    user_id: str
    gender: str
    photo_uri: str
    photo_updated_at: float
    group: str = ""


@dataclasses.dataclass(frozen=True)
class Swipe:
    swiper_id: str
    target_id: str
    liked: bool
    swiped_at: float


def parse_time(value) -> float:
    """ISO 8601 (naive means UTC) or epoch seconds, to epoch seconds."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, (int, float)):
        return float(value)
    else:
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def resolve_uri(uri: str, base_dir: str) -> str:
    """Photo URIs may be absolute (path or gs://) or relative to the users table's folder."""
    if "://" in uri or os.path.isabs(uri):
        return uri
    return os.path.join(base_dir, uri)


def table_format(uri: str) -> str:
    ext = os.path.splitext(uri)[1].lower()
    if ext in (".csv", ".parquet"):
        return ext[1:]
    raise ValueError(f"{uri}: unsupported table format {ext!r}; use .csv or .parquet")


def check_columns(uri: str, required: tuple[str, ...]) -> list[str]:
    """Fail the run early, naming the file, when a table lacks a required column; the header."""
    if table_format(uri) == "csv":
        with tf.io.gfile.GFile(uri) as f:
            header = next(csv.reader([f.readline()]), [])
    else:
        import pyarrow.parquet as pq

        header = pq.read_schema(uri).names  # pyarrow reads local paths and gs:// itself
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{uri}: missing column(s) {missing}; found {header}")
    return list(header)


class ReadTable(beam.PTransform):
    """Reads a CSV (header row) or Parquet table as dicts of its columns; `optional` columns
    are read when the table has them."""

    def __init__(self, uri: str, columns: tuple[str, ...], optional: tuple[str, ...] = ()):
        super().__init__()
        self._uri = uri
        self._columns = columns
        self._optional = optional

    def expand(self, pbegin):
        header = check_columns(self._uri, self._columns)
        if table_format(self._uri) == "parquet":
            columns = list(self._columns) + [c for c in self._optional if c in header]
            return pbegin | beam.io.ReadFromParquet(self._uri, columns=columns)
        return (
            pbegin
            | beam.io.ReadFromText(self._uri, skip_header_lines=1)
            | "ParseCsv" >> beam.Map(lambda line, h=tuple(header): dict(zip(h, next(csv.reader([line]), []))))
        )


def validate_user(row: dict, source: str) -> Iterator:
    uid = str(row.get("user_id") or "").strip()
    if not uid:
        yield beam.pvalue.TaggedOutput(REJECT, Reject("user", repr(row), "empty user_id", source))
        return
    gender = str(row.get("gender") or "").strip().lower()
    if gender not in features.GENDERS:
        yield beam.pvalue.TaggedOutput(REJECT, Reject("user", uid, f"gender {gender!r} not in {features.GENDERS}", source))
        return
    try:
        updated = parse_time(row.get("photo_updated_at"))
    except (TypeError, ValueError):
        yield beam.pvalue.TaggedOutput(
            REJECT, Reject("user", uid, f"bad photo_updated_at {row.get('photo_updated_at')!r}", source))
        return
    yield User(uid, gender, str(row.get("photo_uri") or "").strip(), updated, str(row.get("group") or "").strip())


def validate_swipe(row: dict, source: str) -> Iterator:
    swiper, target = str(row.get("swiper_id") or "").strip(), str(row.get("target_id") or "").strip()
    rid = f"{swiper}->{target}@{row.get('swiped_at')}"
    liked = str(row.get("liked")).strip().lower()
    if not swiper or not target:
        reason = "empty swiper_id or target_id"
    elif liked not in TRUE_VALUES | FALSE_VALUES:
        reason = f"liked {row.get('liked')!r} is not a boolean"
    else:
        try:
            yield Swipe(swiper, target, liked in TRUE_VALUES, parse_time(row.get("swiped_at")))
            return
        except (TypeError, ValueError):
            reason = f"bad swiped_at {row.get('swiped_at')!r}"
    yield beam.pvalue.TaggedOutput(REJECT, Reject("swipe", rid, reason, source))


def _single_user(users: list, source: str) -> tuple[User | None, list[Reject]]:
    if len(users) > 1:
        return None, [Reject("user", u.user_id, f"duplicate user_id ({len(users)} rows)", source) for u in users]
    return (users[0] if users else None), []


def join_swiper(element, swipes_source: str) -> Iterator:
    """Attach the swiper's gender to each swipe, keyed by target; reject unknown swipers."""
    swiper_id, grouped = element
    users = list(grouped["users"])
    for swipe in grouped["swipes"]:
        if len(users) != 1:
            why = "unknown swiper_id" if not users else "swiper_id names a duplicate user"
            yield beam.pvalue.TaggedOutput(REJECT, Reject("swipe", f"{swiper_id}->{swipe.target_id}", why, swipes_source))
        else:
            yield swipe.target_id, (users[0].gender, swipe)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A user with counted swipes, before its photo is read."""

    user: User
    likes: int
    swipes: int
    by_source_gender: tuple  # ((source_gender, likes, swipes), ...)


def aggregate_target(element, users_source: str, swipes_source: str) -> Iterator:
    """Counts post-update likes per target. Outputs a Candidate, or rejects with reasons."""
    target_id, grouped = element
    user, dup_rejects = _single_user(list(grouped["users"]), users_source)
    for r in dup_rejects:
        yield beam.pvalue.TaggedOutput(REJECT, r)
    swipes = list(grouped["swipes"])
    if user is None:
        if not dup_rejects:
            for _, s in swipes:
                yield beam.pvalue.TaggedOutput(REJECT, Reject("swipe", f"{s.swiper_id}->{target_id}", "unknown target_id", swipes_source))
        else:
            for _, s in swipes:
                yield beam.pvalue.TaggedOutput(REJECT, Reject("swipe", f"{s.swiper_id}->{target_id}", "target_id names a duplicate user", swipes_source))
        return
    counts: dict[str, list[int]] = {}
    pre_update = 0
    for source_gender, s in swipes:
        if s.swiped_at <= user.photo_updated_at:
            pre_update += 1
            continue
        c = counts.setdefault(source_gender, [0, 0])
        c[0] += int(s.liked)
        c[1] += 1
    yield beam.pvalue.TaggedOutput("pre_update", pre_update)
    total = sum(c[1] for c in counts.values())
    if not user.photo_uri:
        yield beam.pvalue.TaggedOutput(REJECT, Reject("user", user.user_id, "no photo_uri (swiper only)", users_source))
    elif total == 0:
        yield beam.pvalue.TaggedOutput(REJECT, Reject(
            "user", user.user_id, f"no swipes after the photo update ({pre_update} before)", users_source))
    else:
        yield Candidate(user, sum(c[0] for c in counts.values()), total,
                        tuple(sorted((g, c[0], c[1]) for g, c in counts.items())))


class ReadPhoto(beam.DoFn):
    """Reads and decodes each candidate's photo; a missing or undecodable one is a reject."""

    def __init__(self, photo_base_dir: str, users_source: str):
        self._base = photo_base_dir
        self._source = users_source

    def process(self, cand: Candidate) -> Iterator:
        uri = resolve_uri(cand.user.photo_uri, self._base)
        try:
            with tf.io.gfile.GFile(uri, "rb") as f:
                data = f.read()
        except (tf.errors.NotFoundError, tf.errors.OpError, OSError) as e:
            yield beam.pvalue.TaggedOutput(REJECT, Reject("user", cand.user.user_id, f"photo not readable: {uri} ({type(e).__name__})", self._source))
            return
        error = photo_error(data)
        if error:
            yield beam.pvalue.TaggedOutput(REJECT, Reject("user", cand.user.user_id, f"photo {uri}: {error}", self._source))
            return
        yield to_example(cand, data)
        for g, likes, n in cand.by_source_gender:
            yield beam.pvalue.TaggedOutput("gender_cells", ((g, cand.user.gender), (likes, n)))


def photo_error(data: bytes) -> str | None:
    """Why the photo cannot be used, with the same decoder as Transform; None when it can."""
    if not data:
        return "empty file"
    try:
        img = faces.decode(data)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return f"undecodable image ({_tf_message(e)})"
    if img.shape[0] < 1 or img.shape[1] < 1:
        return "image has no pixels"
    return None


def _tf_message(e: tf.errors.OpError) -> str:
    """The readable part of a TF error message, without the {{function_node ...}} prefix."""
    return e.message.split("}}")[-1].strip().splitlines()[0][:160]


def to_example(cand: Candidate, photo: bytes) -> tf.train.Example:
    f = tf.train.Feature
    by_source = {g: (likes, n) for g, likes, n in cand.by_source_gender}
    source_counts = {}
    for g in features.GENDERS:
        likes, n = by_source.get(g, (0, 0))
        source_counts[features.likes_from_key(g)] = f(int64_list=tf.train.Int64List(value=[likes]))
        source_counts[features.swipes_from_key(g)] = f(int64_list=tf.train.Int64List(value=[n]))
    return tf.train.Example(features=tf.train.Features(feature={
        features.USER_ID_KEY: f(bytes_list=tf.train.BytesList(value=[cand.user.user_id.encode()])),
        features.IMAGE_KEY: f(bytes_list=tf.train.BytesList(value=[photo])),
        features.GENDER_KEY: f(bytes_list=tf.train.BytesList(value=[cand.user.gender.encode()])),
        features.LIKE_RATIO_KEY: f(float_list=tf.train.FloatList(value=[cand.likes / cand.swipes])),
        features.SWIPE_COUNT_KEY: f(int64_list=tf.train.Int64List(value=[cand.swipes])),
        features.GROUP_KEY: f(bytes_list=tf.train.BytesList(value=[cand.user.group.encode()])),
        **source_counts,
    }))


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    likes = swipes = 0
    for a, b in pairs:
        likes += a
        swipes += b
    return likes, swipes


@dataclasses.dataclass
class Aggregated:
    """The PCollections that SwipesToExamples produces."""

    examples: beam.PCollection
    rejects: beam.PCollection
    gender_table: beam.PCollection  # ((source_gender, target_gender), (likes, swipes))
    counts: dict  # name -> singleton PCollection of int


def aggregate(pipeline, users_uri: str, swipes_uri: str) -> Aggregated:
    """The whole join: validate rows, attach swiper genders, count post-update swipes, read photos."""
    users = (pipeline | "ReadUsers" >> ReadTable(users_uri, USER_COLUMNS, USER_OPTIONAL_COLUMNS)
             | "ValidateUsers" >> beam.FlatMap(validate_user, users_uri).with_outputs(REJECT, main="ok"))
    swipes = (pipeline | "ReadSwipes" >> ReadTable(swipes_uri, SWIPE_COLUMNS)
              | "ValidateSwipes" >> beam.FlatMap(validate_swipe, swipes_uri).with_outputs(REJECT, main="ok"))
    users_by_id = users.ok | "KeyUsers" >> beam.Map(lambda u: (u.user_id, u))
    by_swiper = (
        {"users": users_by_id, "swipes": swipes.ok | "KeySwiper" >> beam.Map(lambda s: (s.swiper_id, s))}
        | "GroupBySwiper" >> beam.CoGroupByKey()
        | "JoinSwiper" >> beam.FlatMap(join_swiper, swipes_uri).with_outputs(REJECT, main="ok"))
    targets = (
        {"users": users_by_id, "swipes": by_swiper.ok}
        | "GroupByTarget" >> beam.CoGroupByKey()
        | "CountSwipes" >> beam.FlatMap(aggregate_target, users_uri, swipes_uri).with_outputs(REJECT, "pre_update", main="ok"))
    photos = targets.ok | "ReadPhotos" >> beam.ParDo(
        ReadPhoto(os.path.dirname(users_uri), users_uri)).with_outputs(REJECT, "gender_cells", main="ok")
    rejects = ((users[REJECT], swipes[REJECT], by_swiper[REJECT], targets[REJECT], photos[REJECT])
               | "AllRejects" >> beam.Flatten())
    gender_table = photos.gender_cells | "GenderTable" >> beam.CombinePerKey(_sum_pairs)

    def count(label, pcoll):
        return pcoll | label >> beam.combiners.Count.Globally()

    counts = {
        "users_in": count("CountUsersIn", (users.ok, users[REJECT]) | "UsersIn" >> beam.Flatten()),
        "swipes_in": count("CountSwipesIn", (swipes.ok, swipes[REJECT]) | "SwipesIn" >> beam.Flatten()),
        "examples": count("CountExamples", photos.ok),
        "users_rejected": count("CountUserRejects", rejects | "UserRejects" >> beam.Filter(lambda r: r.kind == "user")),
        "swipes_rejected": count("CountSwipeRejects", rejects | "SwipeRejects" >> beam.Filter(lambda r: r.kind == "swipe")),
        "swipes_before_update": targets.pre_update | "SumPreUpdate" >> beam.CombineGlobally(sum),
    }
    return Aggregated(photos.ok, rejects, gender_table, counts)
