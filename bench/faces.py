"""Face-detection benchmark: the in-graph MTCNN against the `mtcnn` package on the same photos,
in one run. Prints images/s for each (the package in its fastest, batch mode), their ratio,
count and box parity, and the peak memory of the graph version on an 8000x8000 photo.

    python bench/faces.py [--scut ../shared/data/scut-fbp5500-train] [--photos 300]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)

DEFAULT_SCUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                            "scut-fbp5500-train")
BATCH = 32


def _timed(fn, photos, batch):
    out, t0 = [], time.perf_counter()
    for i in range(0, len(photos), batch):
        out.extend(fn(photos[i:i + batch]))
    return out, len(photos) / (time.perf_counter() - t0)


def huge_photo_peak_mb(side: int) -> tuple[float, float]:
    """(baseline, peak) resident memory of a fresh process that has warmed the detector up and
    then detects faces on one side x side JPEG."""
    code = f"""
import io, os, resource
import numpy as np
from PIL import Image
from deepattraction import face_parity
d = face_parity.GraphDetector()
small = np.asarray(Image.fromarray(np.zeros((8, 8, 3), np.uint8)))
d([face_parity.encode_jpeg(small)])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
img = np.kron(rng.integers(0, 255, ({side // 100}, {side // 100}, 3)), np.ones((100, 100, 1))).astype(np.uint8)
data = face_parity.encode_jpeg(img)
del img
print(len(d([data])[0]), base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[1]) / 1024.0, int(out[2]) / 1024.0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scut", default=DEFAULT_SCUT)
    p.add_argument("--photos", type=int, default=300)
    p.add_argument("--huge", type=int, default=8000)
    a = p.parse_args(argv)
    # after parsing: --help needs neither TensorFlow nor mtcnn
    from mtcnn import MTCNN

    from deepattraction import face_parity

    photo_set = face_parity.scut_photos(a.scut, a.photos) + face_parity.composites(a.scut)
    names, photos = [n for n, _ in photo_set], [b for _, b in photo_set]
    graph, pkg = face_parity.GraphDetector(), MTCNN()
    graph(photos[:BATCH])  # trace and warm up both
    pkg.detect_faces(photos[:BATCH])
    ours, ours_ips = _timed(graph, photos, BATCH)
    theirs, pkg_ips = _timed(lambda batch: pkg.detect_faces(list(batch)), photos, BATCH)
    parity = face_parity.compare(names, ours, theirs)
    base, peak = huge_photo_peak_mb(a.huge)
    print(f"photos: {len(photos)} ({a.photos} SCUT-FBP5500 + {len(photos) - a.photos} composites: "
          f"astronaut, 2 and 3 faces, 2 without faces), batches of {BATCH}, {os.cpu_count()} cores")
    print(f"count mismatches (photo, graph, package): {parity.mismatches}")
    print(f"graph peak RSS on a {a.huge}x{a.huge} JPEG: {peak:.0f} MiB ({peak - base:.0f} MiB above "
          f"the warmed-up process)")
    print(f"faces: graph {ours_ips:.1f} img/s, package {pkg_ips:.1f} img/s, ratio {ours_ips / pkg_ips:.2f}, "
          f"counts equal {parity.counts_pct:.1f}%, boxes IoU>=0.9 {parity.boxes_pct:.1f}%")


if __name__ == "__main__":
    main()
