"""Each doubtful-row policy of the README's data contract, shown on a table that holds the case.

One pipeline run per table; each test reads the outcome of its own rows. Every run is checked
to account for every swipe row: counted + before update + rejected = in."""
import dataclasses
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import encode
from deepattraction.components.swipe_example_gen import aggregate
from deepattraction.trainer import features

NOW = 1780272000.0  # 2026-06-01: the run's start
OUTSIDE_FORMS = ("abs-outside", "file-outside", "file-other-host", "gs-other", "http")
OTHER_FORMS = ("abs-inside", "file-inside", *OUTSIDE_FORMS)


@dataclasses.dataclass
class Outcome:
    labels: dict  # user_id -> (likes, swipes)
    rejects: list  # (kind, id, reason)
    counts: dict

    def reasons(self, kind: str, id_prefix: str) -> list[str]:
        return [r for k, i, r in self.rejects if k == kind and i.startswith(id_prefix)]


def run(users: str, swipes: str, out: str) -> Outcome:
    """The aggregation on the local runner; its labels, rejects and counts, read back."""
    def label(ex):
        f = ex.features.feature
        likes = sum(f[features.likes_from_key(g)].int64_list.value[0] for g in features.GENDERS)
        return json.dumps([f[features.USER_ID_KEY].bytes_list.value[0].decode(), likes,
                           f[features.SWIPE_COUNT_KEY].int64_list.value[0]])

    with beam.Pipeline() as p:
        agg = aggregate.aggregate(p, users, swipes, aggregate.SwipeRules(now=NOW))
        agg.examples | beam.Map(label) | "L" >> beam.io.WriteToText(os.path.join(out, "labels"), shard_name_template="")
        agg.rejects | beam.Map(lambda r: json.dumps([r.kind, r.id, r.reason])) | "R" >> beam.io.WriteToText(
            os.path.join(out, "rejects"), shard_name_template="")
        side = {k: beam.pvalue.AsSingleton(v) for k, v in agg.counts.items()}
        p | beam.Create([None]) | beam.Map(lambda _, **c: json.dump(c, open(os.path.join(out, "counts.json"), "w")),
                                           **side)

    def lines(name):
        with open(os.path.join(out, name)) as f:
            return [json.loads(line) for line in f if line.strip()]

    with open(os.path.join(out, "counts.json")) as f:
        counts = json.load(f)
    outcome = Outcome({u: (likes, n) for u, likes, n in lines("labels")}, [tuple(r) for r in lines("rejects")], counts)
    assert counts["swipes_in"] == counts["swipes_counted"] + counts["swipes_before_update"] + counts["swipes_rejected"]
    assert counts["swipes_rejected"] == sum(1 for k, _, _ in outcome.rejects if k == "swipe") + sum(
        int(r.split(" ")[0]) for k, _, r in outcome.rejects if k == "swipes")
    return outcome


def _photo(path, fmt="PNG"):
    path.write_bytes(encode(np.full((16, 16, 3), 100), fmt))


@pytest.fixture(scope="module")
def doubtful(tmp_path_factory):
    """A CSV users table and a CSV swipes table holding one of each doubtful case."""
    root = tmp_path_factory.mktemp("doubtful")
    data, photos = root / "data", root / "data" / "photos"
    photos.mkdir(parents=True)
    for name in ("a", "b", "zero", "ms", "inside"):
        _photo(photos / f"{name}.png")
    _photo(root / "outside.png")
    os.symlink(root / "outside.png", photos / "escape-link.png")
    os.symlink(photos / "inside.png", photos / "inside-link.png")
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photos / "w.webp", format="WEBP")
    (photos
     / "s.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect '
                           'width="16" height="16"/></svg>')
    (photos / "h.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    png = (photos / "a.png").read_bytes()  # a header declaring 40000 x 40000: a decompression bomb
    (photos / "bomb.png").write_bytes(png[:16] + (40000).to_bytes(4, "big") * 2 + png[24:])
    with open(photos / "huge.png", "wb") as f:  # one byte over the file limit, sparse on disk
        f.write(png)
        f.truncate(features.MAX_PHOTO_BYTES + 1)
    users = [
        ("a", "female", "photos/a.png", "2026-01-10T00:00:00Z"),
        ("b", "male", "photos/b.png", "2026-01-01T00:00:00Z"),
        ("0", "male", "photos/zero.png", "1767225600"),  # the id 0 is an id like any other
        ("ms", "female", "photos/ms.png", "1767225600000"),  # epoch milliseconds: 2026-01-01
        ("dotdot", "male", "../outside.png", "2026-01-01"),
        ("abs-dir", "male", "photos", "2026-01-01"),
        ("escape-link", "female", "photos/escape-link.png", "2026-01-01"),
        ("inside-link", "female", "photos/inside-link.png", "2026-01-01"),
        ("webp", "female", "photos/w.webp", "2026-01-01"),
        ("svg", "female", "photos/s.svg", "2026-01-01"),
        ("heic", "female", "photos/h.heic", "2026-01-01"),
        ("bomb", "male", "photos/bomb.png", "2026-01-01"),
        ("huge", "male", "photos/huge.png", "2026-01-01"),
        ("other", "other", "photos/a.png", "2026-01-01"),
        ("only-swipes", "male", "", "2026-01-01"),
        ("abs-inside", "female", str(photos / "a.png"), "2026-01-01"),
        ("file-inside", "female", f"file://{photos}/%61.png", "2026-01-01"),  # percent-encoded: a.png
        ("abs-outside", "male", str(root / "outside.png"), "2026-01-01"),
        ("file-outside", "male", f"file://{root / 'outside.png'}", "2026-01-01"),
        ("file-other-host", "male", f"file://elsewhere{root / 'outside.png'}", "2026-01-01"),
        ("gs-other", "male", "gs://someone-elses-bucket/photos/a.png", "2026-01-01"),
        ("http", "male", "http://127.0.0.1:9/a.png", "2026-01-01"),
        ("short", "male", "photos/a.png"),  # a field short: the reader rejects the row
        ("long", "male", "photos/a.png", "2026-01-01", "extra"),  # a field too many
    ]
    rows = [
        ("b", "a", "1", "2026-01-11T00:00:00Z"), ("b", "a", "1", "2026-01-11T00:00:00Z"),  # exact duplicate
        ("0", "a", "0", "2026-01-11T00:00:00Z"), ("0", "a", "1", "2026-01-12T00:00:00Z"),  # re-swipe: the later counts
        ("a", "a", "1", "2026-01-12T00:00:00Z"),  # a self-swipe
        ("b", "ms", "1", "2027-01-01T00:00:00Z"),  # after the run started
        ("b", "ms", "1", "-5"), ("b", "ms", "1", "1960-01-01T00:00:00Z"),  # before 1970
        ("b", "ms", "1", "NaN"), ("b", "ms", "1", "inf"),  # not finite
        ("b", "ms", "1", "1767312000000"),  # epoch milliseconds, 2026-01-02: counts
        ("only-swipes", "b", "1", "2026-01-01T00:00:00Z"),  # exactly at b's update: before it
        (" only-swipes ", "0", "1.0", "2026-02-01T00:00:00Z"),  # padded id; liked as a float's text
        ("a", "0", "0.0", "2026-02-01T00:00:00Z"),
        ("other", "a", "1", "2026-02-01T00:00:00Z"),  # the swiper's row was rejected
        ("a", "ghost", "1", "2026-02-01T00:00:00Z"),  # nobody's id
        *[("a", t, "1", "2026-02-01T00:00:00Z") for t in (
            "dotdot", "abs-dir", "escape-link", "inside-link", "webp", "svg", "heic", "bomb", "huge", *OTHER_FORMS)],
        ("short", "a", "1", "2026-02-01T00:00:00Z"), ("a", "long", "1", "2026-02-01T00:00:00Z"),  # malformed rows
    ]
    import csv

    with open(data / "users.csv", "w", newline="") as f:
        csv.writer(f).writerows([aggregate.USER_COLUMNS, *users])
    with open(data / "swipes.csv", "w", newline="") as f:
        csv.writer(f).writerows([aggregate.SWIPE_COLUMNS, *rows])
    return run(str(data / "users.csv"), str(data / "swipes.csv"), str(root / "out"))


def test_exact_duplicate_counts_once_and_the_copy_is_rejected(doubtful):
    assert doubtful.reasons("swipe", "b->a@")[0].startswith("a duplicate of the same pair's swipe")


def test_a_re_swipe_at_another_time_counts_too(doubtful):
    # a: b's like (once), 0's dislike and 0's later like.
    assert doubtful.labels["a"] == (2, 3)
    assert doubtful.reasons("swipe", "0->a@") == []


def test_a_self_swipe_is_rejected(doubtful):
    assert doubtful.reasons("swipe", "a->a@") == ["swiper_id equals target_id (a self-swipe)"]


def test_times_out_of_range_or_not_finite_are_rejected(doubtful):
    reasons = doubtful.reasons("swipe", "b->ms@")
    assert sorted(r.split(" is ")[-1] for r in reasons) == [
        "after the run started", "before 1970", "before 1970", "not a finite time", "not a finite time"]


def test_epoch_milliseconds_are_read_as_milliseconds(doubtful):
    assert doubtful.labels["ms"] == (1, 1)  # ms's update and b's swipe, both in milliseconds


def test_a_swipe_at_the_update_instant_is_before_it(doubtful):
    assert "b" not in doubtful.labels and ("user", "b", "no swipes after the photo update") in doubtful.rejects
    assert doubtful.counts["swipes_before_update"] == 1


def test_padded_ids_the_id_zero_and_float_likes(doubtful):
    assert doubtful.labels["0"] == (1, 2)


def test_a_swipe_by_a_rejected_user_names_the_user_rows_failure(doubtful):
    assert doubtful.reasons("swipe", "other->a@") == [
        "swiper_id names a rejected user row (gender 'other' not in ('female', 'male'))"]
    assert doubtful.reasons("swipe", "a->ghost@") == ["unknown target_id"]


def test_a_user_who_only_swipes_is_not_an_error(doubtful):
    assert not [r for r in doubtful.rejects if r[1] == "only-swipes"] and doubtful.counts["users_swipe_only"] == 1


def test_photo_uris_must_stay_in_the_data_folder(doubtful):
    def why(uid):
        return next(r for k, i, r in doubtful.rejects if k == "user" and i == uid)

    assert "leaves the data folder" in why("dotdot") and "leaves the data folder" in why("escape-link")
    assert "is a directory" in why("abs-dir")
    assert doubtful.labels["inside-link"] == (1, 1)  # a link that stays inside is an ordinary file
    for uid in ("dotdot", "escape-link", "abs-dir"):
        assert doubtful.reasons("swipes",
                                uid) == ["1 post-update swipe(s) to this target do not count: the "
                                         "target's photo was refused"]


def test_a_decompression_bomb_and_a_file_over_the_byte_limit_are_rejected_unread(doubtful):
    def why(uid):
        return next(r for k, i, r in doubtful.rejects if k == "user" and i == uid)

    assert why("bomb").endswith("bomb.png: photo is 40000x40000 pixels, over the 67,108,864-pixel limit"), why("bomb")
    assert why("huge").endswith("huge.png is over the 67,108,864-byte limit"), why("huge")
    assert "bomb" not in doubtful.labels and "huge" not in doubtful.labels


@pytest.mark.parametrize("uid", ["webp", "svg", "heic"])
def test_formats_the_transform_graph_cannot_decode_are_rejected(doubtful, uid):
    reason = next(r for k, i, r in doubtful.rejects if k == "user" and i == uid)
    assert "undecodable image" in reason
    assert uid not in doubtful.labels


def test_parquet_int_ids_nan_times_and_float_likes(tmp_path):
    """Parquet ints name the same users as CSV text; NaN/inf float times and a NaN like are rejects."""
    data = tmp_path / "data"
    (data / "photos").mkdir(parents=True)
    _photo(data / "photos" / "7.png")
    pq.write_table(pa.table({"user_id": pa.array([7, 0], pa.int64()), "gender": ["male", "female"],
                             "photo_uri": ["photos/7.png", ""], "photo_updated_at": [0.0, 0.0]}),
                             data / "users.parquet")
    pq.write_table(pa.table({
        "swiper_id": pa.array([0, 0, 0, 0, 0], pa.int64()), "target_id": pa.array([7, 7, 7, 7, 7], pa.int64()),
        "liked": pa.array([1.0, 0.0, None, 1.0, 1.0], pa.float64()),
        "swiped_at": pa.array([100.0, 200.0, 300.0, float("nan"), float("inf")], pa.float64())}),
        data / "swipes.parquet")
    out = run(str(data / "users.parquet"), str(data / "swipes.parquet"), str(tmp_path / "out"))
    assert out.labels == {"7": (1, 2)}
    assert sorted(r for k, _, r in out.rejects if k == "swipe") == [
        "liked None is not a boolean", "swiped_at inf is not a finite time", "swiped_at nan is not a finite time"]


def test_csv_quirks(tmp_path):
    """BOM, CRLF, blank lines, quoted newlines and a 1 MB cell read; short and long rows are rejects."""
    data = tmp_path / "data"
    (data / "photos").mkdir(parents=True)
    _photo(data / "photos" / "t.png")
    (data / "users.csv").write_bytes(
        "\ufeffuser_id,gender,photo_uri,photo_updated_at\r\n\r\nt,female,photos/t.png,0\r\ns,male,,0\r\n".encode())
    big = "x" * (1 << 20)
    (data / "swipes.csv").write_bytes((
        "\ufeffswiper_id,target_id,liked,swiped_at\r\n"
        "s,t,1,100\r\n\r\n"
        f'"{big}",t,1,100\r\n'
        '"s\nwith a newline",t,1,100\r\n'
        "s,t,1\r\n"
        "s,t,1,100,extra\r\n").encode())
    out = run(str(data / "users.csv"), str(data / "swipes.csv"), str(tmp_path / "out"))
    assert out.labels == {"t": (1, 1)}
    swipe_reasons = sorted(r for k, _, r in out.rejects if k == "swipe")
    assert swipe_reasons == ["3 fields where the header has 4", "5 fields where the header has 4",
                             "unknown swiper_id", "unknown swiper_id"]
    assert out.counts["swipes_in"] == 5 and out.counts["users_in"] == 2


def test_a_csv_that_is_not_utf8_stops_the_run_naming_the_file(tmp_path):
    (tmp_path
     / "users.csv").write_bytes("user_id,gender,photo_uri,photo_updated_at\nj\xfcrgen,male,,0\n".encode("latin-1"))
    (tmp_path / "swipes.csv").write_text("swiper_id,target_id,liked,swiped_at\n")
    with pytest.raises(Exception, match="users.csv: not UTF-8"):
        run(str(tmp_path / "users.csv"), str(tmp_path / "swipes.csv"), str(tmp_path / "out"))


def test_photo_uris_in_every_form_must_stay_in_the_data_folder(doubtful):
    """An absolute path or a file:// URI inside the data folder is read; outside it, another
    host's file://, another bucket's gs:// (none allowed by default) and other schemes are
    rejected unread, and each target's swipe is rejected with it."""
    def why(uid):
        return next(r for k, i, r in doubtful.rejects if k == "user" and i == uid)

    assert doubtful.labels["abs-inside"] == (1, 1) and doubtful.labels["file-inside"] == (1, 1)
    for uid in ("abs-outside", "file-outside", "gs-other"):
        assert "leaves the data folder" in why(uid) and why(uid).endswith("no allowed photo bucket holds it "
                                                                          "(allowed: none)"), why(uid)
    assert "a file:// URI on another host (elsewhere)" in why("file-other-host")
    assert why("http").endswith("http:// is not a photo source (a path, file:// or gs://)")
    for uid in OUTSIDE_FORMS:
        assert uid not in doubtful.labels
        assert doubtful.reasons("swipes", uid) == ["1 post-update swipe(s) to this target do not count: the "
                                                   "target's photo was refused"]


def test_a_swipe_naming_a_malformed_user_row_quotes_that_rows_failure(doubtful):
    """The users table's short and long rows are rejects of their own; a swipe by or to the id
    they carry says which row failed and why, not `unknown`."""
    malformed = {r: i for k, i, r in doubtful.rejects if k == "user" and i.startswith("line ")}
    assert sorted(malformed) == ["3 fields where the header has 4", "5 fields where the header has 4"]
    short_line, long_line = malformed["3 fields where the header has 4"], malformed["5 fields where the header has 4"]
    assert doubtful.reasons("swipe", "short->a@") == [
        f"swiper_id names a rejected user row ({short_line}: 3 fields where the header has 4)"]
    assert doubtful.reasons("swipe", "a->long@") == [
        f"target_id names a rejected user row ({long_line}: 5 fields where the header has 4)"]
    assert doubtful.counts["users_in"] == 24  # the malformed rows among them, each rejected once
    assert sum(1 for k, i, _ in doubtful.rejects if k == "user" and i in ("short", "long")) == 0
