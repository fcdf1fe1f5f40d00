"""Swipe aggregation as Beam transforms: tables in, tf.Examples, rejects and the gender table out.

A like ratio counts only swipes made strictly after the target's last photo update. Every input
row ends in exactly one place: an example's swipe count, the before-update count, or a reject
with its reason. Swipes move as Arrow/NumPy columns (one Beam element per batch, not per row):
at 40M swipes a per-element pipeline spends an hour on the Python DirectRunner alone.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import os
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io import fileio

from deepattraction.trainer import faces, features

USER_COLUMNS = ("user_id", "gender", "photo_uri", "photo_updated_at")
USER_OPTIONAL_COLUMNS = ("group",)  # a cohort label for evaluation slices, e.g. SCUT-FBP5500's AF/AM/CF/CM
SWIPE_COLUMNS = ("swiper_id", "target_id", "liked", "swiped_at")
REJECT = "reject"
REJECT_COLUMNS = ("kind", "id", "reason", "source")
# 1.0/0.0: what pandas writes for an integer column with gaps.
TRUE_VALUES = {"1", "1.0", "true", "t", "yes", "y", "like", "liked"}
FALSE_VALUES = {"0", "0.0", "false", "f", "no", "n", "dislike", "disliked"}
MILLISECONDS_FROM = 1e11  # an epoch value this large is milliseconds: 1e11 seconds is the year 5138
CSV_BLOCK_BYTES = 1 << 26  # the largest CSV row pyarrow can read; a 1 MB cell fits
ID_CHARS = 100  # a rejected row's ids are cut to this length in rejects.csv
SWIPE_SHARDS = 16  # swipes are grouped by a hash of the target into this many columnar shards

# Tagged outputs besides REJECT: each a number summed into summary.json.
SWIPES_IN, BEFORE_UPDATE, COUNTED, TIMES = "swipes_in", "before_update", "counted", "times"
# Stages timed into summary.json, in pipeline order (README, "Data contract").
STAGES = ("index_users", "check_swipes", "count_swipes", "candidates", "photos", "write_examples")


@dataclasses.dataclass(frozen=True)
class Reject:
    kind: str  # "user", "swipe", or "swipes": every post-update swipe of a rejected target, `rows` of them
    id: str
    reason: str
    source: str  # the file the row came from
    rows: int = 1  # input rows this reject stands for (not written: the reason says it)
    names: str = ""  # a malformed row's presumed key (its user_id field), so swipes naming it can quote why

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
class Candidate:
    """A user with counted swipes, before its photo is read."""

    user: User
    likes: int
    swipes: int
    by_source_gender: tuple  # ((source_gender, likes, swipes), ...)


def _numpy(col) -> np.ndarray:
    """An Arrow array or chunked array as NumPy (nulls as NaN or None)."""
    return (col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).to_numpy(zero_copy_only=False)


def _epoch(value: float) -> float:
    return value / 1000.0 if abs(value) >= MILLISECONDS_FROM else value


def parse_time(value) -> float:
    """ISO 8601 (naive means UTC) or epoch seconds (milliseconds when >= 1e11), to epoch seconds;
    NaN and infinities raise ValueError."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"not a finite time: {value!r}")
        return _epoch(float(value))
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            t = datetime.fromisoformat(text)
        else:
            return parse_time(number)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def epoch_seconds(col) -> tuple[np.ndarray, np.ndarray]:
    """A time column (text, numbers or Parquet timestamps) -> (epoch seconds, unparseable text).

    Null, NaN and infinite values come out NaN and are not `unparseable`: they have their own reason."""
    t = col.type
    if pa.types.is_timestamp(t):
        micros = pc.cast(pc.cast(col, pa.timestamp("us", t.tz)), pa.int64())
        return _numpy(pc.divide(pc.cast(micros, pa.float64()), 1e6)).astype(float), np.zeros(len(col), bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        v = _numpy(pc.cast(col, pa.float64())).astype(float)
        return np.where(np.abs(v) >= MILLISECONDS_FROM, v / 1000.0, v), np.zeros(len(col), bool)
    text = pd.Series(_numpy(pc.cast(col, pa.string())), dtype=object).fillna("").str.strip()
    v = pd.to_numeric(text, errors="coerce").to_numpy(float)
    iso = np.isnan(v) & text.ne("").to_numpy() & ~text.str.lower().isin({"nan", "-nan", "+nan"}).to_numpy()
    if iso.any():
        parsed = pd.to_datetime(text[iso], utc=True, errors="coerce")
        ok = parsed.notna().to_numpy()
        v[np.flatnonzero(iso)[ok]] = parsed[ok].astype("int64").to_numpy() / 1e9
        iso[np.flatnonzero(iso)[ok]] = False
    return np.where(np.abs(v) >= MILLISECONDS_FROM, v / 1000.0, v), iso


def id_strings(col) -> pa.Array:
    """Ids as trimmed text, so Parquet's int 7 and CSV's " 7" name one user; null becomes ""."""
    t = col.type
    if pa.types.is_floating(t):  # an int column with gaps, as pandas writes it
        v = _numpy(pc.cast(col, pa.float64()))
        whole = np.isfinite(v) & (np.mod(np.where(np.isfinite(v), v, 0), 1) == 0)
        col = pa.array(np.where(whole, v, 0).astype(np.int64), mask=~whole)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return pc.fill_null(pc.utf8_trim_whitespace(pc.cast(col, pa.string())), "")


def liked_values(col) -> tuple[np.ndarray, np.ndarray]:
    """A liked column -> (liked, valid): booleans, 1/0 numbers, or the words in TRUE/FALSE_VALUES."""
    t = col.type
    if pa.types.is_boolean(t):
        valid = _numpy(pc.is_valid(col))
        return _numpy(pc.fill_null(col, False)).astype(bool), valid
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        v = _numpy(pc.cast(col, pa.float64()))
        return v == 1, (v == 1) | (v == 0)
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(pc.cast(col, pa.string()), "")))
    liked = _numpy(pc.is_in(text, value_set=pa.array(sorted(TRUE_VALUES))))
    disliked = _numpy(pc.is_in(text, value_set=pa.array(sorted(FALSE_VALUES))))
    return liked, liked | disliked


@dataclasses.dataclass(frozen=True)
class PhotoSources:
    """Where a users table's photo_uri may point: the table's own folder (always), and the GCS
    buckets or bucket prefixes in `buckets` (none by default). A table must not reach files its
    owner did not ship: a local path of the worker, or another tenant's bucket that the runner's
    account can read."""

    buckets: tuple[str, ...] = ()  # "gs://bucket" or "gs://bucket/prefix"

    def __post_init__(self):
        for b in self.buckets:
            if not b.startswith("gs://") or not b[5:].split("/")[0] or _has_dot_segment(b[5:]):
                raise ValueError(f"photo bucket {b!r}: give gs://BUCKET or gs://BUCKET/PREFIX")

    @classmethod
    def parse(cls, text: str | None) -> "PhotoSources":
        """From the component's comma-separated `photo_buckets` parameter."""
        return cls(tuple(b.strip().rstrip("/") for b in (text or "").split(",") if b.strip()))

    def allows(self, uri: str) -> bool:
        return any(uri.startswith(b.rstrip("/") + "/") for b in self.buckets)


def _has_dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


@functools.lru_cache(maxsize=64)
def _real_dir(path: str) -> str:
    return os.path.realpath(path)


def confined_uri(uri: str, base_dir: str, sources: PhotoSources = PhotoSources()) -> tuple[str, str | None]:
    """(what to read, why it is refused). Every form of photo_uri is resolved, then must lie
    inside the users table's folder (local paths after `..` and symlinks are resolved) or in an
    allowed bucket: a relative path, an absolute path, file:// and gs:// alike. GCS names are
    literal (`..` in one is no parent), so a gs:// name with a `.` or `..` segment is refused."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme not in ("", "file", "gs"):
        return uri, f"photo_uri {uri!r}: {scheme}:// is not a photo source (a path, file:// or gs://)"
    if scheme == "file":
        netloc, _, path = uri[len("file://"):].partition("/")
        if netloc not in ("", "localhost"):
            return uri, f"photo_uri {uri!r}: a file:// URI on another host ({netloc})"
        target = "/" + urllib.parse.unquote(path)
    elif scheme == "gs" or os.path.isabs(uri):
        target = uri
    elif "://" in base_dir:
        target = base_dir.rstrip("/") + "/" + uri
    else:
        target = os.path.join(base_dir, uri)
    allowed = ", ".join(sources.buckets) or "none"
    outside = (f"photo_uri {uri!r} leaves the data folder {base_dir} and no allowed photo bucket holds it "
               f"(allowed: {allowed})")
    if target.startswith("gs://"):
        if _has_dot_segment(target[5:]):
            return target, f"photo_uri {uri!r}: a gs:// name with a '.' or '..' segment"
        in_base = "://" in base_dir and target.startswith(base_dir.rstrip("/") + "/")
        return target, None if in_base or sources.allows(target) else outside
    if "://" in base_dir:  # a local path next to a table on GCS: the worker's own files
        return target, outside
    inside = os.path.realpath(target).startswith(_real_dir(base_dir) + os.sep)
    return target, None if inside else outside


def table_format(uri: str) -> str:
    ext = os.path.splitext(uri)[1].lower()
    if ext in (".csv", ".parquet"):
        return ext[1:]
    raise ValueError(f"{uri}: unsupported table format {ext!r}; use .csv or .parquet")


def check_columns(uri: str, required: tuple[str, ...]) -> list[str]:
    """Fail the run early, naming the file, when a table lacks a required column; the header."""
    if table_format(uri) == "csv":
        with tf.io.gfile.GFile(uri, "rb") as f:
            first = f.readline()
        try:
            line = first.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"{uri}: the header is not UTF-8 text ({e}); save the table as UTF-8") from e
        header = [h.strip() for h in next(csv.reader([line]), [])]
    else:
        header = pq.read_schema(uri).names  # pyarrow reads local paths and gs:// itself
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{uri}: missing column(s) {missing}; found {header}")
    return list(header)


class _ReadCsv(beam.DoFn):
    """One CSV file -> Arrow tables of text columns, through pyarrow's reader: it handles a BOM,
    CRLF, blank lines and quoted newlines. A row with too few or too many fields is a reject."""

    def __init__(self, uri: str, header: list[str], columns: list[str], kind: str, key: str | None = None):
        self._uri, self._header, self._columns, self._kind = uri, header, columns, kind
        self._key = header.index(key) if key in header else None

    def _presumed_key(self, text: str) -> str:
        """The key field of a row with the wrong field count, where the row reaches that far."""
        if self._key is None:
            return ""
        fields = next(csv.reader(io.StringIO(text)), [])
        return fields[self._key].strip() if self._key < len(fields) else ""

    def process(self, readable) -> Iterator:
        bad: list[Reject] = []

        def on_invalid(row) -> str:
            where = f"line {row.number}" if row.number and row.number > 0 else f"row {row.text[:60]!r}"
            bad.append(Reject(self._kind, where,
                              f"{row.actual_columns} fields where the header has {row.expected_columns}", self._uri,
                              names=self._presumed_key(row.text)))
            return "skip"

        with readable.open() as f:
            try:
                reader = pacsv.open_csv(
                    f, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
                    convert_options=pacsv.ConvertOptions(
                        column_types={c: pa.string() for c in self._header}, include_columns=self._columns,
                        strings_can_be_null=False))
                for batch in reader:
                    yield pa.Table.from_batches([batch])
                    yield from (beam.pvalue.TaggedOutput(REJECT, r) for r in bad)
                    bad.clear()
            except pa.ArrowInvalid as e:
                if "utf8" in str(e).lower():
                    raise ValueError(f"{self._uri}: not UTF-8 text ({e}); save the table as UTF-8") from e
                raise ValueError(f"{self._uri}: {e}") from e
        yield from (beam.pvalue.TaggedOutput(REJECT, r) for r in bad)


class ReadTable(beam.PTransform):
    """A CSV (header row) or Parquet table as Arrow tables of its columns (main output) and the
    CSV rows that could not be split into fields (REJECT); `optional` columns when present."""

    def __init__(self, uri: str, columns: tuple[str, ...], kind: str, optional: tuple[str, ...] = (),
                 key: str | None = None):
        super().__init__()
        self._uri, self._columns, self._kind, self._optional, self._key = uri, columns, kind, optional, key

    def expand(self, pbegin):
        header = check_columns(self._uri, self._columns)
        columns = list(self._columns) + [c for c in self._optional if c in header]
        if table_format(self._uri) == "parquet":
            tables = pbegin | beam.io.ReadFromParquetBatched(self._uri, columns=columns)
            return {"ok": tables, REJECT: pbegin | "NoRejects" >> beam.Create([])}
        out = (pbegin | fileio.MatchFiles(self._uri) | fileio.ReadMatches()
               | beam.ParDo(_ReadCsv(self._uri, header, columns, self._kind, self._key))
               .with_outputs(REJECT, main="ok"))
        return {"ok": out.ok, REJECT: out[REJECT]}


def timed(stage: str, outputs: Iterable, downstream: str | None = None) -> Iterator:
    """Passes `outputs` on, then a TIMES output: (stage, (CPU seconds, wall-clock start, end)).

    A runner that fuses steps runs the next ones inside each `yield`: that time is not the stage's
    own. It is left out, or, given `downstream`, timed as that stage (main outputs only)."""
    start, cpu, later = time.time(), 0.0, [0.0, None, None]
    it = iter(outputs)
    while True:
        t = time.process_time()
        try:
            out = next(it)
        except StopIteration:
            cpu += time.process_time() - t
            end = time.time()
            break
        cpu += time.process_time() - t
        if downstream and not isinstance(out, beam.pvalue.TaggedOutput):
            t, w = time.process_time(), time.time()
            yield out
            later = [later[0] + time.process_time() - t, later[1] or w, time.time()]
        else:
            yield out
    yield beam.pvalue.TaggedOutput(TIMES, (stage, (cpu, start, end)))
    if downstream and later[1] is not None:
        yield beam.pvalue.TaggedOutput(TIMES, (downstream, tuple(later)))


class _StageTimes(beam.CombineFn):
    """(CPU seconds, start, end) records of one stage -> (summed CPU, first start, last end)."""

    def create_accumulator(self):
        return 0.0, math.inf, -math.inf

    def add_input(self, acc, record):
        return acc[0] + record[0], min(acc[1], record[1]), max(acc[2], record[2])

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), min(a[1] for a in accs), max(a[2] for a in accs)

    def extract_output(self, acc):
        return acc


def stage_times(times: dict, since: float) -> dict:
    """{stage: (CPU, start, end)} -> summary.json's `stages`: CPU seconds summed over workers, and
    when its first element began and its last one ended, in seconds after `since`."""
    return {stage: {"cpu_seconds": round(cpu, 6), "start_s": round(start - since, 3), "end_s": round(end - since, 3)}
            for stage, (cpu, start, end) in sorted(times.items(), key=lambda kv: kv[1][1])}


@dataclasses.dataclass
class UserIndex:
    """The users table, validated: row i of the columns is valid user i (the swipes' join key),
    and `rejected` says why each other user row failed, so a swipe naming it can say so too."""

    ids: pa.Array
    genders: np.ndarray  # int8 index into features.GENDERS
    updated_at: np.ndarray  # epoch seconds
    photo_uris: list[str]
    groups: list[str]
    rejected: dict[str, str]  # user_id -> reason
    rows_in: int

    def user(self, i: int) -> User:
        return User(self.ids[i].as_py(), features.GENDERS[self.genders[i]], self.photo_uris[i],
                    float(self.updated_at[i]), self.groups[i])


def _index_users(tables: list[pa.Table], source: str, malformed: list[Reject]) -> Iterator:
    def index():  # a generator, so that the index is built inside `timed`
        yield build_user_index(tables, source, malformed)

    yield from timed("index_users", index())


def build_user_index(tables: list[pa.Table], source: str,
                     malformed: Iterable[Reject] = ()) -> tuple[UserIndex, list[Reject]]:
    """Validates every user row; a user_id on two rows rejects both (neither can be trusted).
    `malformed`: the rows the reader rejected (wrong field count), already in rejects.csv; the
    id each presumably carries is recorded with its failure, for the swipes that name it."""
    table = pa.concat_tables(tables,
                             promote=True) if tables else pa.table({c: pa.array([], pa.string()) for c in USER_COLUMNS})
    n = table.num_rows
    ids = id_strings(table["user_id"]).to_pylist()
    genders = [str(g or "").strip().lower() for g in table["gender"].to_pylist()] if n else []
    uris = [str(u or "").strip() for u in table["photo_uri"].to_pylist()] if n else []
    groups = [str(g or "").strip() for g in table["group"].to_pylist()] if "group" in table.column_names else [""] * n
    times, unparseable = epoch_seconds(table["photo_updated_at"]) if n else (np.zeros(0), np.zeros(0, bool))
    raw_times = table["photo_updated_at"].to_pylist() if n else []
    seen: dict[str, int] = {}
    for uid in ids:
        seen[uid] = seen.get(uid, 0) + 1
    rejects, keep, rejected = [], [], {}
    for i, uid in enumerate(ids):
        if not uid:
            why, uid = "empty user_id", f"row {i + 1}"
        elif seen[uid] > 1:
            why = f"duplicate user_id ({seen[uid]} rows)"
        elif genders[i] not in features.GENDERS:
            why = f"gender {genders[i]!r} not in {features.GENDERS}"
        elif unparseable[i] or not np.isfinite(times[i]):
            why = f"bad photo_updated_at {raw_times[i]!r}"
        else:
            keep.append(i)
            continue
        rejected[uid] = why
        rejects.append(Reject("user", uid, why, source))
    kept = {ids[i] for i in keep}
    for r in malformed:
        if r.names and r.names not in kept:
            rejected.setdefault(r.names, f"{r.id}: {r.reason}")
    index = UserIndex(
        ids=pa.array([ids[i] for i in keep], pa.string()),
        genders=np.array([features.GENDERS.index(genders[i]) for i in keep], np.int8),
        updated_at=times[keep] if keep else np.zeros(0), photo_uris=[uris[i] for i in keep],
        groups=[groups[i] for i in keep], rejected=rejected, rows_in=n)
    return index, rejects


@dataclasses.dataclass(frozen=True)
class SwipeRules:
    """What makes a swipe row usable; `now` is the run's start (swipes after it are refused)."""

    now: float


class CheckSwipes(beam.DoFn):
    """One Arrow table of swipes -> per-shard columns of usable swipes (int user indexes), the
    before-update count, and rejects; the users table arrives as a side input."""

    def __init__(self, source: str, rules: SwipeRules):
        self._source, self._rules = source, rules

    def process(self, table: pa.Table, index: UserIndex) -> Iterator:
        yield from timed("check_swipes", self._check(table, index))

    def _check(self, table: pa.Table, index: UserIndex) -> Iterator:
        n = table.num_rows
        yield beam.pvalue.TaggedOutput(SWIPES_IN, n)
        swiper, target = id_strings(table["swiper_id"]), id_strings(table["target_id"])
        si = _numpy(pc.index_in(swiper, value_set=index.ids))
        ti = _numpy(pc.index_in(target, value_set=index.ids))
        liked, liked_ok = liked_values(table["liked"])
        t, unparseable = epoch_seconds(table["swiped_at"])
        reason = np.zeros(n, np.int8)  # 0: usable; else the index into `why` below
        known_s, known_t = ~np.isnan(si), ~np.isnan(ti)
        empty = (_numpy(pc.equal(swiper, ""))) | (_numpy(pc.equal(target, "")))
        checks = [
            empty, ~known_s, ~known_t, _numpy(pc.equal(swiper, target)), ~liked_ok,
            unparseable, ~unparseable & ~np.isfinite(t), t < 0, t > self._rules.now]
        for code, bad in enumerate(checks, start=1):
            reason[(reason == 0) & bad] = code
        if (reason > 0).any():
            yield from self._rejects(table, swiper, target, reason, index)
        ok = reason == 0
        si, ti, t, liked = si[ok].astype(np.int32), ti[ok].astype(np.int32), t[ok], liked[ok]
        before = t <= index.updated_at[ti]
        yield beam.pvalue.TaggedOutput(BEFORE_UPDATE, int(before.sum()))
        after = ~before
        si, ti, t, liked = si[after], ti[after], t[after], liked[after]
        shard = ti % SWIPE_SHARDS
        for s in np.unique(shard):
            m = shard == s
            yield int(s), (si[m], ti[m], t[m], liked[m])

    def _rejects(self, table, swiper, target, reason, index: UserIndex) -> Iterator:
        rows = np.flatnonzero(reason)
        sw = [v[:ID_CHARS] for v in swiper.take(pa.array(rows)).to_pylist()]
        tg = [v[:ID_CHARS] for v in target.take(pa.array(rows)).to_pylist()]
        liked_raw = table["liked"].take(pa.array(rows)).to_pylist()
        times = table["swiped_at"].take(pa.array(rows)).to_pylist()

        def unknown(role: str, uid: str) -> str:
            if uid in index.rejected:
                return f"{role} names a rejected user row ({index.rejected[uid]})"
            return f"unknown {role}"

        for k, row in enumerate(rows):
            code = reason[row]
            why = {1: "empty swiper_id or target_id", 2: lambda k=k: unknown("swiper_id", sw[k]),
                   3: lambda k=k: unknown("target_id", tg[k]), 4: "swiper_id equals target_id (a self-swipe)",
                   5: f"liked {liked_raw[k]!r} is not a boolean", 6: f"bad swiped_at {times[k]!r}",
                   7: f"swiped_at {times[k]!r} is not a finite time", 8: f"swiped_at {times[k]!r} is before 1970",
                   9: f"swiped_at {times[k]!r} is after the run started"}[int(code)]
            yield beam.pvalue.TaggedOutput(REJECT,
                                           Reject("swipe", f"{sw[k]}->{tg[k]}@{times[k]}",
                                                  why() if callable(why) else why, self._source))


class CountTargets(beam.DoFn):
    """All post-update swipes of one shard of targets -> per-target counts by source gender.

    Each post-update swipe counts, re-swipes of a pair at other times too (the data cannot tell a
    changed mind from a second look); rows repeating a pair's time are one swipe (a like when they
    disagree), and the repeats are rejects."""

    def __init__(self, source: str):
        self._source = source

    def process(self, element, index: UserIndex) -> Iterator:
        yield from timed("count_swipes", self._count(element, index))

    def _count(self, element, index: UserIndex) -> Iterator:
        _, parts = element
        parts = list(parts)
        si = np.concatenate([p[0] for p in parts])
        ti = np.concatenate([p[1] for p in parts])
        t = np.concatenate([p[2] for p in parts])
        liked = np.concatenate([p[3] for p in parts])
        order = np.lexsort((liked, t, si, ti))
        si, ti, t, liked = si[order], ti[order], t[order], liked[order]
        last = np.ones(len(si), bool)
        last[:-1] = (si[1:] != si[:-1]) | (ti[1:] != ti[:-1]) | (t[1:] != t[:-1])
        for k in np.flatnonzero(~last):
            yield beam.pvalue.TaggedOutput(REJECT, Reject(
                "swipe", f"{index.ids[int(si[k])].as_py()}->{index.ids[int(ti[k])].as_py()}@{t[k]:.3f}",
                "a duplicate of the same pair's swipe at the same time, which counts once", self._source))
        si, ti, liked = si[last], ti[last], liked[last]
        g = index.genders[si].astype(np.int64)
        n_users, n_genders = len(index.updated_at), len(features.GENDERS)
        key = ti.astype(np.int64) * n_genders + g
        likes = np.bincount(key, weights=liked, minlength=n_users * n_genders).reshape(n_users, n_genders)
        swipes = np.bincount(key, minlength=n_users * n_genders).reshape(n_users, n_genders)
        targets = np.flatnonzero(swipes.sum(axis=1))
        yield targets, likes[targets].astype(np.int64), swipes[targets]


class _DenseSum(beam.CombineFn):
    """(target indexes, likes [k, G], swipes [k, G]) parts -> dense [users, G] likes and swipes."""

    def create_accumulator(self):
        return np.zeros((0, 2 * len(features.GENDERS)), np.int64)

    @staticmethod
    def _grow(acc, n):
        return acc if len(acc) >= n else np.concatenate([acc, np.zeros((n - len(acc), acc.shape[1]), np.int64)])

    def add_input(self, acc, part):
        targets, likes, swipes = part
        if len(targets):
            acc = self._grow(acc, int(targets.max()) + 1)
            acc[targets] += np.concatenate([likes, swipes], axis=1)
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        n = max(len(a) for a in accs)
        total = self._grow(self.create_accumulator(), n)
        for a in accs:
            total[: len(a)] += a
        return total

    def extract_output(self, acc):
        return acc


def candidates(_, index: UserIndex, counts: np.ndarray, users_source: str) -> Iterator:
    """Every valid user -> a Candidate, or a reject when it has no photo or no post-update swipe
    (its post-update swipes, if any, become one `swipes` reject)."""
    g = len(features.GENDERS)
    counts = _DenseSum._grow(counts, len(index.updated_at))
    for i in range(len(index.updated_at)):
        likes, swipes = counts[i, :g], counts[i, g:]
        user = index.user(i)
        total = int(swipes.sum())
        if not user.photo_uri:
            if total:
                yield beam.pvalue.TaggedOutput(REJECT,
                                               Reject("user", user.user_id, "no photo_uri: swipes on it cannot count",
                                                      users_source))
                yield beam.pvalue.TaggedOutput(REJECT,
                                               swipes_reject(user.user_id, total, "the target has no photo_uri",
                                                             users_source))
            else:
                yield beam.pvalue.TaggedOutput("swiper_only", 1)
        elif total == 0:
            yield beam.pvalue.TaggedOutput(REJECT,
                                           Reject("user", user.user_id, "no swipes after the photo update",
                                                  users_source))
        else:
            yield Candidate(user, int(likes.sum()), total, tuple(
                (features.GENDERS[k], int(likes[k]), int(swipes[k])) for k in range(g) if swipes[k]))


def swipes_reject(target_id: str, rows: int, why: str, source: str) -> Reject:
    return Reject("swipes", target_id, f"{rows} post-update swipe(s) to this target do not count: {why}", source, rows)


# The full JPEG decoder refuses an output of 2^29 bytes or more; a JPEG whose 1/8-scale size could reach
# that (with a factor 2 for row padding) is checked by the full decode, so the limit is its own.
_FULL_DECODE_FROM = (1 << 28) // (3 * 64)
PHOTO_BATCH = 64  # photos checked per graph call: a call costs about 1 ms whatever it does


def _full_hw(data):
    return tf.shape(tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False))[:2]


def _jpeg_hw(data):
    """A JPEG decoded at 1/8 scale: the same header parsing and entropy decoding as the full decode
    (so the same refusals), without most of the IDCT and upsampling. Its size is nonzero exactly
    when the full size is, which is all the check needs."""
    hw = tf.shape(tf.io.decode_jpeg(data, channels=3, ratio=8))[:2]
    big = hw[0] * hw[1] >= _FULL_DECODE_FROM
    return tf.cond(big, lambda: _full_hw(data), lambda: hw)


@tf.autograph.experimental.do_not_convert
def _decoded_sizes(photos):
    """[B] encoded photos -> [B, 2] sizes, nonzero exactly when Transform's decode would be.

    `faces.decode` fails exactly when its pixel limit or its `decode_image` does (its EXIF step
    cannot fail and only turns the pixels), so the check runs those two alone; JPEGs at 1/8 scale
    (`_jpeg_hw`)."""
    def one(data):
        data = faces.within_pixel_limit(data)
        return tf.cond(tf.io.is_jpeg(data), lambda: _jpeg_hw(data), lambda: _full_hw(data))

    return tf.map_fn(one, photos, fn_output_signature=tf.TensorSpec([2], tf.int32))


def photo_check() -> tf.types.experimental.GenericFunction:
    """The batch photo check, as a graph traced once (build it once per worker): eager decoding
    retraces `faces.decode`'s tf.map_fn on every call (~180 ms a photo), and each graph call
    costs about as much as decoding a photo, so photos go in batches."""
    return tf.function(_decoded_sizes, input_signature=[tf.TensorSpec([None], tf.string)])


def photo_error(data: bytes, check=None) -> str | None:
    """Why the photo cannot be used, with the same decoder as Transform; None when it can."""
    if not data:
        return "empty file"
    try:
        size = (check or photo_check())(tf.constant([data])).numpy()[0]
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return faces.refusal(e.message) or f"undecodable image ({_tf_message(e)})"
    if size[0] < 1 or size[1] < 1:
        return "image has no pixels"
    return None


def photo_errors(photos: list[bytes], check) -> list[str | None]:
    """`photo_error` of each photo with one graph call for the batch; a batch with a refused photo
    is checked again photo by photo, so each error is that photo's own."""
    if photos and all(photos):
        try:
            sizes = check(tf.constant(photos)).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            pass
        else:
            return [None if h >= 1 and w >= 1 else "image has no pixels" for h, w in sizes]
    return [photo_error(d, check) for d in photos]


_TRACE_LINES = ("Graph execution error", "Detected at node", "File ", "[[")


def _tf_message(e: tf.errors.OpError) -> str:
    """The readable line of a TF error: eager ops prefix it with {{function_node ...}}, traced
    functions surround it with where the op was defined and the node's name."""
    for line in e.message.splitlines():
        line = line.split("}}")[-1].strip() if line.lstrip().startswith("{{function_node") else line.strip()
        if line and not line.startswith(_TRACE_LINES):
            return line[:160]
    return e.message.strip()[:160]


class ReadPhotos(beam.DoFn):
    """Reads and checks a batch of candidates' photos (one graph call per batch); a refused photo
    rejects the user and its swipes."""

    def __init__(self, photo_base_dir: str, users_source: str, sources: PhotoSources = PhotoSources()):
        self._base = photo_base_dir
        self._source = users_source
        self._sources = sources
        self._check = None

    def setup(self):
        self._check = photo_check()

    def process(self, cands: list[Candidate]) -> Iterator:
        yield from timed("photos", self._photos(cands), downstream="write_examples")

    def _photos(self, cands: list[Candidate]) -> Iterator:
        read = [self._read(c.user.photo_uri) for c in cands]
        checked = iter(photo_errors([data for _, error, data in read if error is None], self._check))
        for cand, (uri, error, data) in zip(cands, read):
            if error is None:
                decode_error = next(checked)
                error = decode_error and f"photo {uri}: {decode_error}"
            uid = cand.user.user_id
            if error:
                yield beam.pvalue.TaggedOutput(REJECT, Reject("user", uid, error, self._source))
                refused = swipes_reject(uid, cand.swipes, "the target's photo was refused", self._source)
                yield beam.pvalue.TaggedOutput(REJECT, refused)
            else:
                yield to_example(cand, data)
                yield beam.pvalue.TaggedOutput(COUNTED, cand.swipes)
                for g, likes, n in cand.by_source_gender:
                    yield beam.pvalue.TaggedOutput("gender_cells", ((g, cand.user.gender), (likes, n)))

    def _read(self, photo_uri: str) -> tuple[str, str | None, bytes]:
        """(resolved URI, why it cannot be read, its bytes). Local files through open(): a quarter
        of tf.io.gfile's cost per photo. No file is read past features.MAX_PHOTO_BYTES, so one
        huge file cannot take the worker's memory."""
        uri, refused = confined_uri(photo_uri, self._base, self._sources)
        if refused:
            return uri, refused, b""
        limit = features.MAX_PHOTO_BYTES
        try:
            if "://" not in uri:
                with open(uri, "rb") as f:
                    data = f.read(limit + 1)
            elif tf.io.gfile.isdir(uri):
                return uri, f"photo {uri} is a directory", b""
            else:
                with tf.io.gfile.GFile(uri, "rb") as f:
                    data = f.read(limit + 1)
            if len(data) > limit:
                return uri, f"photo {uri} is over the {limit:,}-byte limit", b""
            return uri, None, data
        except IsADirectoryError:
            return uri, f"photo {uri} is a directory", b""
        except (tf.errors.OpError, OSError) as e:
            return uri, f"photo not readable: {uri} ({type(e).__name__})", b""


def to_example(cand: Candidate, photo: bytes) -> tf.train.Example:
    """Filled in place: half the cost of building nested Feature messages."""
    ex = tf.train.Example()
    f = ex.features.feature
    f[features.USER_ID_KEY].bytes_list.value.append(cand.user.user_id.encode())
    f[features.IMAGE_KEY].bytes_list.value.append(photo)
    f[features.GENDER_KEY].bytes_list.value.append(cand.user.gender.encode())
    f[features.LIKE_RATIO_KEY].float_list.value.append(cand.likes / cand.swipes)
    f[features.SWIPE_COUNT_KEY].int64_list.value.append(cand.swipes)
    f[features.GROUP_KEY].bytes_list.value.append(cand.user.group.encode())
    by_source = {g: (likes, n) for g, likes, n in cand.by_source_gender}
    for g in features.GENDERS:
        likes, n = by_source.get(g, (0, 0))
        f[features.likes_from_key(g)].int64_list.value.append(likes)
        f[features.swipes_from_key(g)].int64_list.value.append(n)
    return ex


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    likes = swipes = 0
    for a, b in pairs:
        likes += a
        swipes += b
    return likes, swipes


@dataclasses.dataclass
class Aggregated:
    """The PCollections that `aggregate` produces."""

    examples: beam.PCollection
    rejects: beam.PCollection
    gender_table: beam.PCollection  # ((source_gender, target_gender), (likes, swipes))
    counts: dict  # name -> singleton PCollection of int
    times: beam.PCollection  # (stage, (CPU seconds summed over workers, wall-clock first start, last end))


def aggregate(pipeline, users_uri: str, swipes_uri: str, rules: SwipeRules | None = None,
              photo_sources: PhotoSources = PhotoSources()) -> Aggregated:
    """The whole join: validate rows, count post-update swipes per target by swiper gender, read photos."""
    rules = rules or SwipeRules(now=time.time())
    users = pipeline | "ReadUsers" >> ReadTable(users_uri, USER_COLUMNS, "user", USER_OPTIONAL_COLUMNS, key="user_id")
    indexed = (users["ok"] | "AllUserRows" >> beam.combiners.ToList()
               | "IndexUsers" >> beam.FlatMap(_index_users, users_uri, beam.pvalue.AsList(users[REJECT]))
               .with_outputs(TIMES, main="ok"))
    built = indexed.ok
    index = beam.pvalue.AsSingleton(built | "Index" >> beam.Map(lambda b: b[0]))
    swipe_tables = pipeline | "ReadSwipes" >> ReadTable(swipes_uri, SWIPE_COLUMNS, "swipe")
    checked = swipe_tables["ok"] | "CheckSwipes" >> beam.ParDo(CheckSwipes(swipes_uri, rules), index).with_outputs(
        REJECT, SWIPES_IN, BEFORE_UPDATE, TIMES, main="ok")
    counted = (checked.ok | "ByTargetShard" >> beam.GroupByKey()
               | "CountTargets" >> beam.ParDo(CountTargets(swipes_uri), index).with_outputs(REJECT, TIMES, main="ok"))
    dense = counted.ok | "DenseCounts" >> beam.CombineGlobally(_DenseSum())
    cands = (pipeline | "Once" >> beam.Create([None])
             | "Candidates" >> beam.FlatMap(
                 lambda _, *args: timed("candidates", candidates(_, *args)), index, beam.pvalue.AsSingleton(dense),
                 users_uri).with_outputs(REJECT, "swiper_only", TIMES, main="ok"))
    photos = (cands.ok | "SpreadPhotos" >> beam.Reshuffle()
              | "PhotoBatches" >> beam.BatchElements(min_batch_size=PHOTO_BATCH, max_batch_size=PHOTO_BATCH)
              | "ReadPhotos" >> beam.ParDo(ReadPhotos(os.path.dirname(users_uri), users_uri, photo_sources))
              .with_outputs(REJECT, "gender_cells", COUNTED, TIMES, main="ok"))
    user_rejects = built | "UserRejects" >> beam.FlatMap(lambda b: b[1])
    rejects = ((users[REJECT], user_rejects, swipe_tables[REJECT], checked[REJECT], counted[REJECT], cands[REJECT],
                photos[REJECT])
               | "AllRejects" >> beam.Flatten())
    gender_table = photos.gender_cells | "GenderTable" >> beam.CombinePerKey(_sum_pairs)

    def total(label, pcoll):
        return pcoll | label >> beam.CombineGlobally(sum)

    counts = {
        "users_in": total("SumUsersIn", (built | "UserRows" >> beam.Map(lambda b: b[0].rows_in),
                                         users[REJECT] | "BadUserLines" >> beam.Map(lambda r: r.rows))
                          | "UsersIn" >> beam.Flatten()),
        "users_swipe_only": total("SumSwipeOnly", cands.swiper_only),
        "swipes_in": total("SumSwipesIn",
                           (checked[SWIPES_IN], swipe_tables[REJECT] | "BadSwipeLines" >> beam.Map(lambda r: r.rows))
                           | "SwipesIn" >> beam.Flatten()),
        "examples": photos.ok | "CountExamples" >> beam.combiners.Count.Globally(),
        "users_rejected": total("SumUserRejects",
                                rejects | "UserRejectRows" >> beam.Map(lambda r: r.rows if r.kind == "user" else 0)),
        "swipes_rejected": total("SumSwipeRejects",
                                 rejects | "SwipeRejectRows" >> beam.Map(lambda r: r.rows if r.kind != "user" else 0)),
        "swipes_before_update": total("SumBeforeUpdate", checked[BEFORE_UPDATE]),
        "swipes_counted": total("SumCounted", photos[COUNTED]),
    }
    times = ((indexed[TIMES], checked[TIMES], counted[TIMES], cands[TIMES], photos[TIMES])
             | "AllTimes" >> beam.Flatten()
             | "StageTimes" >> beam.CombinePerKey(_StageTimes()))
    return Aggregated(photos.ok, rejects, gender_table, counts, times)
