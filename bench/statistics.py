"""Data validation's statistics at the study's scale: TFX's StatisticsGen executor, with the
pipeline's own schema, over synthetic examples of 19k and 76k distinct photos. Each run is a fresh
process, so its peak RSS is its own.

The schema marks the photo as an image domain, so TFDV keeps its byte sizes only. `--raw-bytes`
also runs a schema without that domain, where TFDV treats each photo as a categorical string and
counts distinct values: the memory the domain saves. Ends with one line:

    statistics: <n> photos, <s> s, peak RSS <m> MiB (at <n0> photos: <s0> s, <m0> MiB), RSS growth <g>% for <x>x photos

    python -m bench.statistics [--photos 19000,76000] [--photo-kb 20] [--raw-bytes]
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np

from bench import child


def write_examples(path: str, n: int, photo_kb: int, seed: int = 0) -> None:
    """Photos are random bytes, distinct per user: statistics never decode them, and distinct
    values are what would make a top-k grow."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, photo_kb * 1024 + 4096, dtype=np.uint8).tobytes()
    genders = (b"female", b"male")
    f = tf.train.Feature
    options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1)
    with tf.io.TFRecordWriter(path, options) as w:
        for i in range(n):
            start = int(rng.integers(0, 4096))
            photo = i.to_bytes(8, "little") + pool[start:start + photo_kb * 1024]
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image": f(bytes_list=tf.train.BytesList(value=[photo])),
                "gender": f(bytes_list=tf.train.BytesList(value=[genders[i % 2]])),
                "like_ratio": f(float_list=tf.train.FloatList(value=[float(rng.random())])),
                "swipe_count": f(int64_list=tf.train.Int64List(value=[int(rng.integers(1, 400))])),
                "user_id": f(bytes_list=tf.train.BytesList(value=[f"u{i}".encode()])),
            })).SerializeToString())


def _one(a) -> None:
    """Child process: StatisticsGen's executor over one examples folder; prints its result as JSON."""
    from tfx.components.statistics_gen import executor
    from tfx.types import artifact_utils, standard_artifacts

    from deepattraction.pipeline.configs import SCHEMA_FILE

    examples, schema = standard_artifacts.Examples(), standard_artifacts.Schema()
    stats = standard_artifacts.ExampleStatistics()
    examples.uri, schema.uri, stats.uri = a.examples, os.path.join(a.out, "schema"), os.path.join(a.out, "statistics")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    os.makedirs(schema.uri)
    with open(SCHEMA_FILE) as src, open(os.path.join(schema.uri, "schema.pbtxt"), "w") as dst:
        text = src.read()
        dst.write(text.replace("  image_domain {\n  }\n", "") if a.raw_bytes else text)
    start = time.time()
    executor.Executor().Do({"examples": [examples], "schema": [schema]}, {"statistics": [stats]},
                           {"exclude_splits": "[]"})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child.report({"wall_s": time.time() - start, "peak_rss_mib": rss})


def measure(workdir: str, n: int, photo_kb: int, raw_bytes: bool) -> dict:
    folder = os.path.join(workdir, f"examples-{n}", "Split-train")
    if not os.path.exists(folder):
        os.makedirs(folder)
        write_examples(os.path.join(folder, "data.gz"), n, photo_kb)
    out = tempfile.mkdtemp(dir=workdir)
    args = ["bench.statistics", "--one", "--examples", os.path.dirname(folder), "--out", out]
    result = child.run(args + (["--raw-bytes"] if raw_bytes else []), "statistics run")
    return {"photos": n, "raw_bytes": raw_bytes, **result}


def statistics_line(small: dict, big: dict) -> str:
    growth = 100 * (big["peak_rss_mib"] / small["peak_rss_mib"] - 1)
    return (f"statistics: {big['photos']} photos, {big['wall_s']:.1f} s, peak RSS {big['peak_rss_mib']:.0f} MiB "
            f"(at {small['photos']} photos: {small['wall_s']:.1f} s, {small['peak_rss_mib']:.0f} MiB), "
            f"RSS growth {growth:.0f}% for {big['photos'] / small['photos']:.0f}x photos")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default="19000,76000", help="photo counts, smallest first")
    p.add_argument("--photo-kb", type=int, default=20)
    p.add_argument("--raw-bytes", action="store_true", help="also run without the image domain")
    p.add_argument("--workdir", default="build/bench-statistics")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--examples", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        return _one(a)
    os.makedirs(a.workdir, exist_ok=True)
    sizes = [int(float(s)) for s in a.photos.split(",")]
    rows = []
    print(f"{'photos':>8} {'schema':>12} {'seconds':>8} {'peak RSS MiB':>13}")
    for raw in ([False, True] if a.raw_bytes else [False]):
        for n in sizes:
            r = measure(a.workdir, n, a.photo_kb, raw)
            rows.append(r)
            name = "raw bytes" if raw else "image domain"
            print(f"{n:>8} {name:>12} {r['wall_s']:>8.1f} {r['peak_rss_mib']:>13.0f}", flush=True)
    ours = [r for r in rows if not r["raw_bytes"]]
    print(statistics_line(ours[0], ours[-1]))


if __name__ == "__main__":
    main()
