"""Ingest benchmark at the study's scale: SwipeExampleGen's transforms on synthetic tables of
76k users (42:58 female:male, a 350x350 JPEG each, hard links into a pool of distinct photos)
and up to 40M Parquet swipes (some before the target's photo update, duplicate pairs, a
sprinkling of bad rows), on Beam's local runner using both cores.

Each size runs in a fresh process (so its peak RSS is its own); its like and swipe counts per
photo and its swipe accounting are then checked against an independent pyarrow computation of
the same rules. Prints a scaling series and ends with one line:

    ingest: <n> swipes, <u> users, <s> s (swipes <a> s, photos <b> s), <r> swipes/s, peak RSS <m> MiB, labels equal <p>%

`swipes`/`photos` are CPU seconds spent in those stages' DoFns, summed over workers (swipes:
`check_swipes` + `count_swipes`); a `stages:` line before it gives each stage's CPU seconds and
when it ran (seconds after the pipeline started), as summary.json's `stages`.

    python -m bench.ingest [--sizes 1e6,4e6,16e6,40e6] [--users 76000] [--csv 1e6] [--workers 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import resource
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from bench import child

# TensorFlow, Beam and our modules that load them are imported inside the functions that measure:
# this parent process only starts one child process per measurement (--one), which loads them.

T0 = 1_735_689_600  # 2025-01-01: swipes fall in the next 200 days, photo updates in days 90-190 (~70% before)
DAY = 86_400
ROW_GROUP = 1_000_000
BAD_PHOTO_USERS = ("u-missing", "u-corrupt", "u-webp", "u-escape")  # valid rows whose photo is refused


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One synthetic dataset: `swipes` rows over `users` users, photos from a pool of `pool` JPEGs."""

    workdir: str
    users: int = 76_000
    swipes: int = 1_000_000
    pool: int = 300
    bad_every: int = 50_000  # one bad swipe row in this many
    seed: int = 0


def _jpeg(rng: np.random.Generator, side: int = 350) -> bytes:
    from PIL import Image

    base = rng.integers(0, 255, (side // 10, side // 10, 3)).astype(np.uint8)
    img = np.kron(base, np.ones((10, 10, 1), np.uint8)) + rng.integers(0, 20, (side, side, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_users(cfg: BenchConfig) -> str:
    """users.parquet and photos/ (written once per user count; a photo per user, hard-linked)."""
    out = os.path.join(cfg.workdir, f"users-{cfg.users}")
    path = os.path.join(out, "users.parquet")
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(cfg.seed)
    os.makedirs(os.path.join(out, "pool"), exist_ok=True)
    os.makedirs(os.path.join(out, "photos"), exist_ok=True)
    pool = []
    for k in range(cfg.pool):
        p = os.path.join(out, "pool", f"{k}.jpg")
        with open(p, "wb") as f:
            f.write(_jpeg(rng))
        pool.append(p)
    ids = [f"u{i}" for i in range(cfg.users)]
    for i, uid in enumerate(ids):
        os.link(pool[i % cfg.pool], os.path.join(out, "photos", f"{uid}.jpg"))
    with open(os.path.join(out, "photos", "u-corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not a jpeg")
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(os.path.join(out, "photos", "u-webp.webp"), format="WEBP")
    genders = np.where(rng.random(cfg.users) < 0.42, "female", "male")
    updated = T0 + rng.integers(90 * DAY, 190 * DAY, cfg.users)
    extra = {"u-missing": "photos/none.jpg", "u-corrupt": "photos/u-corrupt.jpg", "u-webp": "photos/u-webp.webp",
             "u-badgender": "photos/u0.jpg", "u-escape": "../../../../etc/passwd"}
    table = pa.table({
        "user_id": ids + list(extra),
        "gender": list(genders) + ["female", "male", "female", "other", "male"],
        "photo_uri": [f"photos/{u}.jpg" for u in ids] + list(extra.values()),
        "photo_updated_at": np.concatenate([updated, np.full(len(extra), T0)]).astype(np.int64),
    })
    pq.write_table(table, path)
    return path


def make_swipes(cfg: BenchConfig, users_path: str) -> str:
    """swipes-<n>.parquet beside the users table, written in row groups to bound memory."""
    path = os.path.join(os.path.dirname(users_path), f"swipes-{cfg.swipes}.parquet")
    if os.path.exists(path):
        return path
    ids = pq.read_table(users_path, columns=["user_id"])["user_id"]
    n_ids = len(ids)
    appeal = np.random.default_rng(cfg.seed + 1).beta(2, 3, n_ids)
    schema = pa.schema([("swiper_id", pa.string()), ("target_id", pa.string()), ("liked", pa.int8()),
                        ("swiped_at", pa.float64())])
    with pq.ParquetWriter(path + ".tmp", schema) as w:
        for start in range(0, cfg.swipes, ROW_GROUP):
            n = min(ROW_GROUP, cfg.swipes - start)
            rng = np.random.default_rng([cfg.seed, start])
            swiper = rng.integers(0, cfg.users, n)
            target = rng.integers(0, n_ids, n)  # includes the few bad users
            liked = (rng.random(n) < appeal[target]).astype(np.int8)
            t = (T0 + rng.integers(0, 200 * DAY, n)).astype(np.float64)
            sw = ids.take(pa.array(swiper))
            bad = np.flatnonzero(rng.random(n) < 1.0 / cfg.bad_every)
            kinds = bad % 5
            t[bad[kinds == 0]] = np.nan  # not a finite time
            liked[bad[kinds == 1]] = 2  # not a boolean
            t[bad[kinds == 2]] = -DAY  # before 1970
            target[bad[kinds == 3]] = swiper[bad[kinds == 3]]  # a self-swipe
            sw_list = (sw.combine_chunks() if isinstance(sw, pa.ChunkedArray) else sw).to_numpy(zero_copy_only=False)
            sw_list[bad[kinds == 4]] = "ghost"  # an unknown swiper
            w.write_table(pa.table({"swiper_id": pa.array(sw_list, pa.string()),
                                    "target_id": ids.take(pa.array(target)),
                                    "liked": liked, "swiped_at": t}, schema=schema))
    os.replace(path + ".tmp", path)
    return path


def as_csv(parquet_path: str) -> str:
    path = parquet_path.replace(".parquet", ".csv")
    if not os.path.exists(path):
        pacsv.write_csv(pq.read_table(parquet_path), path)
    return path


def run_ingest(users: str, swipes: str, out_dir: str, workers: int, now: float) -> dict:
    """SwipeExampleGen's transforms on the local runner; writes and returns the run's counts,
    its per-photo (likes, swipes) labels and the wall time."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from deepattraction.components.swipe_example_gen import aggregate
    from deepattraction.trainer import features

    def label(ex) -> str:
        f = ex.features.feature
        likes = sum(f[features.likes_from_key(g)].int64_list.value[0] for g in features.GENDERS)
        user_id = f[features.USER_ID_KEY].bytes_list.value[0].decode()
        return f"{user_id},{likes},{f[features.SWIPE_COUNT_KEY].int64_list.value[0]}"

    os.makedirs(out_dir, exist_ok=True)
    mode = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"] if workers > 1 else []
    start, since = time.perf_counter(), time.time()
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner", *mode])) as p:
        agg = aggregate.aggregate(p, users, swipes, aggregate.SwipeRules(now=now))
        agg.examples | beam.Map(label) | "WriteLabels" >> beam.io.WriteToText(os.path.join(out_dir, "labels"),
                                                                              shard_name_template="")
        side = {k: beam.pvalue.AsSingleton(v) for k, v in agg.counts.items()}
        (p | beam.Create([None]) | beam.Map(
            lambda _, times, **c: json.dump({**c, "stages": aggregate.stage_times(times, since)},
                                            open(os.path.join(out_dir, "counts.json"), "w")),
            times=beam.pvalue.AsDict(agg.times), **side))
    wall = time.perf_counter() - start
    with open(os.path.join(out_dir, "counts.json")) as f:
        counts = json.load(f)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"counts": counts, "wall_s": wall, "peak_rss_mib": rss / 1024.0}


def read_labels(out_dir: str) -> dict[str, tuple[int, int]]:
    labels = {}
    with open(os.path.join(out_dir, "labels")) as f:
        for line in f:
            uid, likes, n = line.rstrip("\n").rsplit(",", 2)
            labels[uid] = (int(likes), int(n))
    return labels


def expected(users: str, swipes: str, now: float, bad_photo_users=BAD_PHOTO_USERS) -> tuple[dict, dict]:
    """The labels and swipe accounting by the README's rules, computed with pandas (none of
    SwipeExampleGen's code): a valid swipe names two different valid users, says 1/0, and has a
    finite time in [1970, now]; it counts when strictly after the target's update, and rows
    repeating a pair's time are one swipe (a like if they disagree)."""
    import pandas as pd

    u = pq.read_table(users).to_pandas()
    valid = u[u["gender"].isin(["female", "male"]) & ~u["user_id"].duplicated(keep=False)]
    pos = pd.Series(np.arange(len(valid)), index=valid["user_id"].astype(str))
    updated = valid["photo_updated_at"].to_numpy(float)
    s = pq.read_table(swipes).to_pandas(strings_to_categorical=True)

    def code(col):
        return pd.Series(col.cat.categories).map(pos).to_numpy(float)[col.cat.codes.to_numpy()]

    sw, tg = code(s["swiper_id"]), code(s["target_id"])
    t, liked = s["swiped_at"].to_numpy(float), s["liked"].to_numpy(float)
    ok = ~np.isnan(sw) & ~np.isnan(tg) & (sw != tg) & np.isin(liked, [0, 1]) & np.isfinite(t) & (t >= 0) & (t <= now)
    sw, tg, t, liked = sw[ok].astype(np.int64), tg[ok].astype(np.int64), t[ok], liked[ok].astype(np.int64)
    after = t > updated[tg]
    before = int((~after).sum())
    post = pd.DataFrame({"tg": tg[after], "sw": sw[after], "t": t[after], "liked": liked[after]})
    once = post.groupby(["tg", "sw", "t"], sort=False)["liked"].max().reset_index()
    per_target = once.groupby("tg")["liked"].agg(["sum", "count"])
    ids = valid["user_id"].astype(str).to_numpy()
    labels = {ids[i]: (int(a), int(n)) for i, a, n in zip(per_target.index, per_target["sum"], per_target["count"])}
    for b in bad_photo_users:
        labels.pop(b, None)
    counted = sum(n for _, n in labels.values())
    accounting = {"swipes_in": len(s), "swipes_before_update": before, "swipes_counted": counted,
                  "swipes_rejected": len(s) - before - counted}
    return labels, accounting


def compare(got: dict, want: dict) -> float:
    """Per cent of photos, over both sides, whose (likes, swipes) agree exactly."""
    ids = set(got) | set(want)
    return 100.0 * sum(got.get(i) == want.get(i) for i in ids) / max(len(ids), 1)


def _one(args) -> None:
    """Child process: one ingest run; prints its result as JSON."""
    result = run_ingest(args.users_path, args.swipes_path, args.out, args.workers, args.now)
    child.report(result)


def measure(cfg: BenchConfig, workers: int, fmt: str = "parquet") -> dict:
    users = make_users(cfg)
    swipes = make_swipes(cfg, users)
    if fmt == "csv":
        swipes = as_csv(swipes)
    now = float(T0 + 365 * DAY)
    out = os.path.join(cfg.workdir, f"run-{fmt}-{cfg.swipes}")
    result = child.run(["bench.ingest", "--one", "--users-path", users, "--swipes-path", swipes, "--out", out,
                        "--workers", str(workers), "--now", str(now)], "ingest run")
    want, accounting = expected(users, swipes.replace(".csv", ".parquet"), now)
    result["labels_equal_pct"] = compare(read_labels(out), want)
    c = result["counts"]
    result["accounting_equal"] = all(c[k] == v for k, v in accounting.items())
    result.update(swipes=cfg.swipes, users=c["users_in"], fmt=fmt)
    return result


def cpu_seconds(r: dict) -> dict:
    """{"swipes": .., "photos": ..}: CPU seconds of the swipe stages and of the photo stage."""
    cpu = {k: v["cpu_seconds"] for k, v in r["counts"]["stages"].items()}
    return {"swipes": cpu.get("check_swipes", 0) + cpu.get("count_swipes", 0), "photos": cpu.get("photos", 0)}


def stages_line(r: dict) -> str:
    return "stages: " + ", ".join(f"{k} {v['cpu_seconds']:.1f} CPU-s in {v['start_s']:.0f}-{v['end_s']:.0f} s"
                                  for k, v in r["counts"]["stages"].items())


def ingest_line(r: dict) -> str:
    sec = cpu_seconds(r)
    return (f"ingest: {r['swipes']} swipes, {r['users']} users, {r['wall_s']:.1f} s "
            f"(swipes {sec.get('swipes', 0):.1f} s, photos {sec.get('photos', 0):.1f} s), "
            f"{r['swipes'] / r['wall_s']:.0f} swipes/s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
            f"labels equal {r['labels_equal_pct']:.2f}%")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e6,4e6,16e6,40e6", help="swipe counts of the scaling series")
    p.add_argument("--users", type=int, default=76_000)
    p.add_argument("--csv", type=float, default=1e6, help="also time the CSV path at this size (0: skip)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", default=os.path.join("build", "bench-ingest"))
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--users-path", help=argparse.SUPPRESS)
    p.add_argument("--swipes-path", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--now", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        return _one(args)
    runs = [(int(float(s)), "parquet") for s in args.sizes.split(",")] + ([(int(args.csv), "csv")] if args.csv else [])
    print(f"{'swipes':>10} {'format':>7} {'seconds':>8} {'swipes/s':>9} {'swipe CPU-s':>11} {'photo CPU-s':>11} "
          f"{'peak RSS MiB':>12} {'labels equal':>12} {'accounting':>10}", flush=True)
    last = None
    for n, fmt in runs:
        r = measure(BenchConfig(workdir=args.workdir, users=args.users, swipes=n), args.workers, fmt)
        sec = cpu_seconds(r)
        print(f"{n:>10} {fmt:>7} {r['wall_s']:>8.1f} {n / r['wall_s']:>9.0f} {sec.get('swipes', 0):>11.1f} "
              f"{sec.get('photos', 0):>11.1f} {r['peak_rss_mib']:>12.0f} {r['labels_equal_pct']:>11.2f}% "
              f"{'equal' if r['accounting_equal'] else 'DIFFERS':>10}", flush=True)
        if fmt == "parquet":
            last = r
    print(stages_line(last))
    print(ingest_line(last))


if __name__ == "__main__":
    main()
