"""Face-detection benchmark: the in-graph MTCNN against the `mtcnn` package on the same photos,
in one run, per photo size: 350 px SCUT photos (plus the composites), and 640 and 1080 px group
photos of 1-4 real faces 24-96 px wide (face_parity.group_photos). Prints images/s for each (the
package in its fastest, batch mode), their ratio, count and box parity, the same for the named
faster setting (features.FACE_CANVAS_FAST, which gives up small faces in large photos), and the
peak memory of the graph version on an 8000x8000 photo.

    python bench/faces.py [--scut ../shared/data/scut-fbp5500-train] [--photos 300] [--group 48]
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
from bench import face_parity
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


def _size_set(scut: str, size: int, photos: int, group: int) -> list[tuple[str, bytes]]:
    from bench import face_parity

    if size == 350:
        return face_parity.scut_photos(scut, photos) + face_parity.composites(scut)
    return face_parity.group_photos(scut, size, group, seed=size)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scut", default=DEFAULT_SCUT)
    p.add_argument("--photos", type=int, default=300)
    p.add_argument("--group", type=int, default=48, help="group photos at each of 640 and 1080 px")
    p.add_argument("--sizes", type=int, nargs="+", default=[350, 640, 1080])
    p.add_argument("--huge", type=int, default=8000)
    a = p.parse_args(argv)
    # after parsing: --help needs neither TensorFlow nor mtcnn
    from mtcnn import MTCNN

    from bench import face_parity
    from deepattraction.trainer import faces, features

    graph, fast, pkg = (face_parity.GraphDetector(), face_parity.GraphDetector(
        faces.DetectorConfig(canvas=features.FACE_CANVAS_FAST)), MTCNN())
    totals = {"graph": 0.0, "package": 0.0, "photos": 0, "counts": 0, "faces": 0, "iou95": 0, "iou90": 0}
    for size in a.sizes:
        photo_set = _size_set(a.scut, size, a.photos, a.group)
        names, photos = [n for n, _ in photo_set], [b for _, b in photo_set]
        for d in (graph, fast):
            d(photos[:BATCH])  # trace and warm up all three
        pkg.detect_faces(photos[:BATCH])
        ours, ours_ips = _timed(graph, photos, BATCH)
        theirs, pkg_ips = _timed(lambda batch: pkg.detect_faces(list(batch)), photos, BATCH)
        quick, fast_ips = _timed(fast, photos, BATCH)
        parity = face_parity.compare(names, ours, theirs, min_iou=0.95)
        loose = face_parity.compare(names, ours, theirs, min_iou=0.9)
        fast_parity = face_parity.compare(names, quick, theirs, min_iou=0.95)
        n_faces = sum(map(len, theirs))
        print(f"faces {size} px: {len(photos)} photos, {n_faces} faces found by the package; count mismatches "
              f"(photo, graph, package): {parity.mismatches[:5]}")
        print(f"faces {size} px: graph {ours_ips:.1f} img/s, package {pkg_ips:.1f} img/s, "
              f"ratio {ours_ips / pkg_ips:.2f}, "
              f"counts equal {parity.counts_pct:.1f}%, boxes IoU>=0.95 {parity.boxes_pct:.1f}% "
              f"(>=0.9 {loose.boxes_pct:.1f}%); fast (canvas {features.FACE_CANVAS_FAST}): {fast_ips:.1f} img/s, "
              f"ratio {fast_ips / pkg_ips:.2f}, counts equal {fast_parity.counts_pct:.1f}%, "
              f"faces found {sum(map(len, quick))} of {n_faces}", flush=True)
        totals["graph"] += len(photos) / ours_ips
        totals["package"] += len(photos) / pkg_ips
        totals["photos"] += len(photos)
        totals["counts"] += parity.counts_equal
        totals["faces"] += parity.faces_both
        totals["iou95"] += parity.boxes_iou_ok
        totals["iou90"] += loose.boxes_iou_ok
    base, peak = huge_photo_peak_mb(a.huge)
    print(f"photos: {totals['photos']} ({a.photos} SCUT-FBP5500 + composites at 350 px, {a.group} group photos "
          f"at each of 640 and 1080 px), batches of {BATCH}, {os.cpu_count()} cores")
    print(f"graph peak RSS on a {a.huge}x{a.huge} JPEG: {peak:.0f} MiB ({peak - base:.0f} MiB above "
          f"the warmed-up process)")
    g, k, n = totals["photos"] / totals["graph"], totals["photos"] / totals["package"], max(totals["faces"], 1)
    print(f"faces: graph {g:.1f} img/s, package {k:.1f} img/s, ratio {g / k:.2f}, counts equal "
          f"{100.0 * totals['counts'] / totals['photos']:.1f}%, boxes IoU>=0.95 {100.0 * totals['iou95'] / n:.1f}% "
          f"(>=0.9 {100.0 * totals['iou90'] / n:.1f}%)")


if __name__ == "__main__":
    main()
