"""The swipe aggregation on hand-made rows, run with Beam's TestPipeline and assert_that."""
import csv
import os
import time

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from conftest import encode
from deepattraction.components.swipe_example_gen import aggregate
from deepattraction.trainer import faces, features


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def tables(tmp_path):
    photo = encode(np.full((20, 20, 3), 128), "PNG")
    (tmp_path / "photos").mkdir()
    for uid in ("alice", "bob", "carol", "nosw"):
        (tmp_path / "photos" / f"{uid}.png").write_bytes(photo)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not an image")
    users = _write_csv(tmp_path / "users.csv", aggregate.USER_COLUMNS, [
        ("alice", "female", "photos/alice.png", "2026-01-10T00:00:00Z"),
        ("bob", "male", "photos/bob.png", "2026-01-05T00:00:00Z"),
        ("carol", "female", "photos/carol.png", "1767225600"),  # 2026-01-01, as epoch seconds
        ("nosw", "female", "photos/nosw.png", "2026-01-01T00:00:00Z"),
        ("lost", "male", "photos/missing.png", "2026-01-01T00:00:00Z"),
        ("broken", "male", "photos/broken.jpg", "2026-01-01T00:00:00Z"),
        ("weird", "other", "photos/alice.png", "2026-01-01T00:00:00Z"),
        ("dup", "male", "photos/bob.png", "2026-01-01T00:00:00Z"),
        ("dup", "male", "photos/bob.png", "2026-01-02T00:00:00Z"),
    ])
    swipes = _write_csv(tmp_path / "swipes.csv", aggregate.SWIPE_COLUMNS, [
        # alice: updated Jan 10. Two before (must not count), three after: 2 likes of 3.
        ("bob", "alice", "1", "2026-01-09T00:00:00Z"),
        ("carol", "alice", "1", "2026-01-10T00:00:00Z"),  # at the update instant: not after it
        ("bob", "alice", "1", "2026-01-11T00:00:00Z"),
        ("carol", "alice", "true", "2026-01-12T00:00:00Z"),
        ("nosw", "alice", "0", "2026-01-13T00:00:00Z"),
        # bob: one like from a woman after his update.
        ("alice", "bob", "yes", "2026-01-06T00:00:00Z"),
        # carol: only swipes before... none after -> her only swipe is from bob before? No: after.
        ("bob", "carol", "0", "2026-01-02T00:00:00Z"),
        ("bob", "carol", "0", "2026-01-03T00:00:00Z"),
        # nosw: only a swipe before the update -> rejected as "no swipes after the photo update".
        ("bob", "nosw", "1", "2025-12-01T00:00:00Z"),
        ("bob", "lost", "1", "2026-01-03T00:00:00Z"),
        ("bob", "broken", "1", "2026-01-03T00:00:00Z"),
        ("ghost", "alice", "1", "2026-01-20T00:00:00Z"),  # unknown swiper
        ("alice", "phantom", "1", "2026-01-20T00:00:00Z"),  # unknown target
        ("alice", "bob", "maybe", "2026-01-20T00:00:00Z"),  # not a boolean
        ("alice", "bob", "1", "yesterday"),  # bad time
    ])
    return str(users), str(swipes)


def _example_tuple(ex: tf.train.Example):
    f = ex.features.feature
    return (f[features.USER_ID_KEY].bytes_list.value[0].decode(),
            round(f[features.LIKE_RATIO_KEY].float_list.value[0], 4),
            f[features.SWIPE_COUNT_KEY].int64_list.value[0], f[features.GENDER_KEY].bytes_list.value[0].decode())


def _source_counts(ex: tf.train.Example):
    f = ex.features.feature
    return (f[features.USER_ID_KEY].bytes_list.value[0].decode(), f[features.GROUP_KEY].bytes_list.value[0].decode(),
            *(f[k].int64_list.value[0] for k in features.SOURCE_COUNT_KEYS))


def test_post_update_counts_and_rejects(tables):
    users, swipes = tables
    with TestPipeline() as p:
        agg = aggregate.aggregate(p, users, swipes)
        assert_that(agg.examples | beam.Map(_example_tuple), equal_to([
            ("alice", round(2 / 3, 4), 3, "female"),
            ("bob", 1.0, 1, "male"),
            ("carol", 0.0, 2, "female"),
        ]), label="examples")
        # (likes, swipes) from women, then from men; post-update swipes only; no group column: "".
        assert_that(agg.examples | beam.Map(_source_counts), equal_to([
            ("alice", "", 1, 2, 1, 1),  # carol like + nosw dislike; bob like (his Jan 9 like is pre-update)
            ("bob", "", 1, 1, 0, 0),
            ("carol", "", 0, 0, 0, 2),
        ]), label="source_counts")
        assert_that(agg.rejects
                    | beam.Map(lambda r: (r.kind, r.id.split("@")[0], r.reason.split(" (")[0].split(":")[0])),
                    equal_to([
            ("user", "nosw", "no swipes after the photo update"),
            ("user", "lost", "photo not readable"),
            ("swipes", "lost", "1 post-update swipe(s) to this target do not count"),
            ("user", "broken", "photo " + os.path.join(os.path.dirname(users), "photos/broken.jpg")),
            ("swipes", "broken", "1 post-update swipe(s) to this target do not count"),
            ("user", "weird", "gender 'other' not in"),
            ("user", "dup", "duplicate user_id"),
            ("user", "dup", "duplicate user_id"),
            ("swipe", "ghost->alice", "unknown swiper_id"),
            ("swipe", "alice->phantom", "unknown target_id"),
            ("swipe", "alice->bob", "liked 'maybe' is not a boolean"),
            ("swipe", "alice->bob", "bad swiped_at 'yesterday'"),
        ]), label="rejects")
        # Post-update swipes only: alice got 1 like of 1 from a man (bob), 1 of 2 from women.
        assert_that(agg.gender_table, equal_to([
            (("male", "female"), (1, 3)),  # bob->alice like, bob->carol 2 dislikes
            (("female", "female"), (1, 2)),  # carol->alice like, nosw->alice dislike
            (("female", "male"), (1, 1)),  # alice->bob like
        ]), label="gender_table")
        assert_that(agg.counts["users_in"], equal_to([9]), label="users_in")
        assert_that(agg.counts["examples"], equal_to([3]), label="examples_count")
        assert_that(agg.counts["users_rejected"], equal_to([6]), label="users_rejected")
        assert_that(agg.counts["swipes_before_update"], equal_to([3]), label="pre_update")
        # 4 bad rows, and the post-update swipes to lost and broken, whose photos were refused.
        assert_that(agg.counts["swipes_rejected"], equal_to([6]), label="swipes_rejected")
        assert_that(agg.counts["swipes_counted"], equal_to([6]), label="swipes_counted")
        assert_that(agg.counts["swipes_in"], equal_to([15]), label="swipes_in")


def test_broken_photo_reason_names_the_file(tables):
    users, swipes = tables
    with TestPipeline() as p:
        agg = aggregate.aggregate(p, users, swipes)
        broken = agg.rejects | beam.Filter(lambda r: r.kind == "user"
                                           and r.id
                                           == "broken") | beam.Map(lambda r: ("broken.jpg" in r.reason,
                                                                              "undecodable" in r.reason))
        assert_that(broken, equal_to([(True, True)]))


def test_missing_column_fails_naming_the_file(tmp_path):
    bad = _write_csv(tmp_path / "users.csv", ("user_id", "gender"), [("a", "male")])
    with pytest.raises(ValueError, match=r"users.csv: missing column\(s\) \['photo_uri', 'photo_updated_at'\]"):
        aggregate.check_columns(str(bad), aggregate.USER_COLUMNS)


def test_parquet_tables_read_like_csv(tables, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, swipes = tables
    for src in (users, swipes):
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
        pq.write_table(pa.Table.from_pylist(rows), src.replace(".csv", ".parquet"))
    with TestPipeline() as p:
        agg = aggregate.aggregate(p, users.replace(".csv", ".parquet"), swipes.replace(".csv", ".parquet"))
        assert_that(agg.counts["examples"], equal_to([3]))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_optional_group_column_passes_through(tables, fmt):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, swipes = tables
    with open(users, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["group"] = {"alice": "AF", "bob": " CM "}.get(r["user_id"])  # None: an empty cell
    grouped = users.replace(".csv", f"_grouped.{fmt}")
    if fmt == "csv":
        with open(grouped, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), grouped)
    with TestPipeline() as p:
        agg = aggregate.aggregate(p, grouped, swipes)
        assert_that(agg.examples | beam.Map(lambda ex: _source_counts(ex)[:2]),
                    equal_to([("alice", "AF"), ("bob", "CM"), ("carol", "")]))


def test_parse_time_accepts_iso_and_epoch():
    assert aggregate.parse_time("2026-01-01T00:00:00Z") == 1767225600.0
    assert aggregate.parse_time("2026-01-01T00:00:00") == 1767225600.0  # naive means UTC
    assert aggregate.parse_time("1767225600") == 1767225600.0
    with pytest.raises(ValueError):
        aggregate.parse_time("yesterday")


def test_photo_check_accepts_and_rejects_exactly_what_the_transform_decoder_does(jpeg_bytes, png_bytes):
    """The check decodes without the EXIF step; on every kind of photo it must agree with
    `faces.decode`, the Transform graph's decoder."""
    import io as _io

    from PIL import Image

    def save(fmt, mode="RGB", **kw):
        buf = _io.BytesIO()
        Image.new(mode, (24, 16), 90).save(buf, format=fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the Transform graph turns it upright
    photos = {
        "jpeg": jpeg_bytes, "png": png_bytes, "gif": save("GIF", "P"), "bmp": save("BMP"), "gray": save("PNG", "L"),
        "rgba": save("PNG", "RGBA"), "cmyk": save("JPEG", "CMYK"), "exif": save("JPEG", exif=exif.tobytes()),
        "truncated": jpeg_bytes[: len(jpeg_bytes) // 2], "webp": save("WEBP"),
        "garbage": b"\xff\xd8\xff\xe0 not a jpeg",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>', "empty": b"",
    }
    check = aggregate.photo_check()
    verdicts = {}
    for name, data in photos.items():
        try:
            faces.decode(tf.constant(data))
            transform_ok = True
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            transform_ok = False
        verdicts[name] = (aggregate.photo_error(data, check) is None, transform_ok)
    assert all(ours == theirs for ours, theirs in verdicts.values()), verdicts
    assert {n for n, (ok, _) in verdicts.items() if not ok} == {"truncated", "webp", "garbage", "svg", "empty"}


def _broken_photos() -> dict[str, bytes]:
    """Valid and broken photos: JPEGs (baseline and progressive) truncated, garbled, with a bad
    header or a 0-pixel or oversized frame, and other formats."""
    import io as _io

    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 80, 3)).astype(np.uint8)

    def save(pixels, fmt="JPEG", **kw):
        buf = _io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt, **kw)
        return buf.getvalue()

    def frame(data, h, w):  # rewrite the SOF marker's height and width
        k = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        return data[:k + 5] + h.to_bytes(2, "big") + w.to_bytes(2, "big") + data[k + 9:]

    def garble(data, at):
        k = int(len(data) * at)
        return data[:k] + rng.integers(0, 255, 40).astype(np.uint8).tobytes() + data[k + 40:]

    jpg, prog = save(img), save(img, progressive=True)
    photos = {"jpeg": jpg, "progressive": prog, "1x1": save(img[:1, :1]), "7x9": save(img[:7, :9]),
              "gray": save(img[..., 0]),
              "trailing bytes": jpg + b"garbage", "soi-eoi": b"\xff\xd8\xff\xd9", "magic only": b"\xff\xd8\xff",
              "height 0": frame(jpg, 0, 80), "width 0": frame(jpg, 64, 0), "30000x30000": frame(jpg, 30000, 30000),
              "64x30000": frame(jpg, 64, 30000), "svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
              "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"}
    for at in (0.1, 0.3, 0.5, 0.9, 0.99):
        photos[f"truncated {at}"] = jpg[:int(len(jpg) * at)]
        photos[f"progressive truncated {at}"] = prog[:int(len(prog) * at)]
    for at in (0.02, 0.3, 0.6, 0.9):
        photos[f"garbled {at}"], photos[f"progressive garbled {at}"] = garble(jpg, at), garble(prog, at)
    for fmt in ("PNG", "GIF", "BMP", "WEBP"):
        photos[fmt] = save(img, fmt)
    photos["truncated PNG"] = photos["PNG"][: len(photos["PNG"]) // 2]
    # Decompression bombs: a few hundred bytes whose header declares gigapixels.
    png, gif, bmp = photos["PNG"], photos["GIF"], photos["BMP"]
    photos["PNG bomb"] = png[:16] + (40000).to_bytes(4, "big") * 2 + png[24:]
    photos["GIF bomb"] = gif[:6] + (65535).to_bytes(2, "little") * 2 + gif[10:]
    top_down = (-20000).to_bytes(4, "little", signed=True)  # a negative height: rows stored top-down
    photos["BMP bomb"] = bmp[:18] + (20000).to_bytes(4, "little") + top_down + bmp[26:]
    frames = [Image.fromarray(np.full((2048, 2048, 3), 10 * i, np.uint8)) for i in range(20)]
    buf = _io.BytesIO()  # 20 frames of 2048 x 2048: TF's decoder would decode them all
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    photos["GIF animation bomb"] = buf.getvalue()
    return photos


def test_the_jpeg_check_at_one_eighth_scale_refuses_what_the_full_decode_refuses():
    """JPEGs are checked decoded at 1/8 scale: on broken JPEGs of every kind it must give the
    full decoder's verdict and the same reason (eager errors add ` [Op:DecodeImage] ...`)."""
    from deepattraction.trainer import faces

    check = aggregate.photo_check()
    verdicts = {}
    for name, data in _broken_photos().items():
        try:
            faces.decode(tf.constant(data))
            full = None
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            full = faces.refusal(e.message) or f"undecodable image ({aggregate._tf_message(e).split(' [Op:')[0]})"
        verdicts[name] = (aggregate.photo_error(data, check), full)
    assert all(ours == full for ours, full in verdicts.values()), verdicts
    refused = {n for n, (ours, _) in verdicts.items() if ours}
    assert {"soi-eoi", "magic only", "height 0", "width 0", "30000x30000", "truncated 0.99",
            "progressive truncated 0.5", "WEBP", "svg", "heic", "truncated PNG"} <= refused
    assert {"jpeg", "progressive", "1x1", "7x9", "64x30000", "PNG", "GIF", "BMP"}.isdisjoint(refused)
    # Headers over the pixel limit are refused by their size, before any decoding.
    for name, (w, h) in {"30000x30000": (30000, 30000), "PNG bomb": (40000, 40000), "GIF bomb": (65535, 65535),
                         "BMP bomb": (20000, 20000)}.items():
        assert verdicts[name][0] == f"photo is {w}x{h} pixels, over the 67,108,864-pixel limit", verdicts[name]
    assert verdicts["GIF animation bomb"][0] == (
        "photo is 2048x2048 pixels in at least 17 frames, over the 67,108,864-pixel limit")


def test_a_batch_gives_each_photo_its_own_verdict():
    """One graph call checks a batch; a refused photo in it must not refuse the others, and each
    error is that photo's own, as when checked alone."""
    check = aggregate.photo_check()
    assert aggregate.photo_errors([], check) == []
    photos = list(_broken_photos().values()) + [b""]
    assert aggregate.photo_errors(photos, check) == [aggregate.photo_error(p, check) for p in photos]
    good = [p for p in photos if aggregate.photo_error(p, check) is None]
    assert len(good) >= 8 and aggregate.photo_errors(good, check) == [None] * len(good)


def test_a_stage_time_leaves_out_the_fused_steps_that_run_inside_its_yields():
    """A fusing runner runs the next steps inside each `yield`: that CPU is the `downstream`
    stage's, not the stage's own, and tagged outputs are no one's downstream."""
    def busy(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    def stage():
        busy(0.1)
        yield beam.pvalue.TaggedOutput("side", 1)
        for k in range(3):
            yield k

    outputs, times = [], {}
    for out in aggregate.timed("own", stage(), downstream="next"):
        if isinstance(out, beam.pvalue.TaggedOutput) and out.tag == aggregate.TIMES:
            times[out.value[0]] = out.value[1]
        elif not isinstance(out, beam.pvalue.TaggedOutput):
            outputs.append(out)
            busy(0.2)  # the fused next step
    assert outputs == [0, 1, 2]
    (own, own_start, own_end), (later, later_start, later_end) = times["own"], times["next"]
    assert 0.1 <= own < 0.2 and 0.6 <= later < 0.8
    assert own_start <= later_start <= later_end <= own_end
    summary = aggregate.stage_times(times, since=own_start)
    assert list(summary) == ["own", "next"] and summary["own"]["start_s"] == 0


@pytest.mark.parametrize("uri,allowed", [
    ("photos/a.png", True),  # relative to the table's folder on GCS
    ("gs://data/in/photos/a.png", True),  # absolute, inside it
    ("gs://data/in-other/a.png", False),  # a sibling prefix is not inside
    ("gs://data/in/../secret/a.png", False),  # GCS names are literal: no `..` at all
    ("photos/../../secret/a.png", False),
    ("gs://shared-photos/p/a.png", True),  # an allowed bucket prefix
    ("gs://shared-photos/private/a.png", False),
    ("gs://shared-photos-evil/p/a.png", False),
    ("gs://all-mine/any/a.png", True),  # a whole allowed bucket
    ("/etc/passwd", False), ("file:///etc/passwd", False),  # the worker's own files, next to a table on GCS
    ("s3://bucket/a.png", False), ("https://example.com/a.png", False),
])
def test_photo_uri_on_gcs_stays_in_the_data_folder_or_an_allowed_bucket(uri, allowed):
    sources = aggregate.PhotoSources(("gs://shared-photos/p", "gs://all-mine"))
    path, refused = aggregate.confined_uri(uri, "gs://data/in", sources)
    assert (refused is None) == allowed, refused
    if allowed:
        assert path.startswith("gs://") and ".." not in path.split("/")
    elif "leaves the data folder" in (refused or ""):
        assert refused.endswith("(allowed: gs://shared-photos/p, gs://all-mine)")
    in_data_folder = uri.startswith(("photos/a", "gs://data/in/photos"))
    assert (aggregate.confined_uri(uri, "gs://data/in")[1] is None) == in_data_folder  # by default: the folder only


def test_photo_sources_take_only_gcs_buckets():
    assert aggregate.PhotoSources.parse(" gs://a/p/ , gs://b ").buckets == ("gs://a/p", "gs://b")
    assert aggregate.PhotoSources.parse(None).buckets == ()
    for bad in ("/data/photos", "gs://", "gs://a/../b", "http://a"):
        with pytest.raises(ValueError, match="give gs://BUCKET or gs://BUCKET/PREFIX"):
            aggregate.PhotoSources((bad,))
