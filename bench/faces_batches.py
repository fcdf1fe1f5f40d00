"""The in-graph detector alone on the batches it meets, ms per photo (best of N): one-size SCUT
batches of 64 (as the Transform's), 8 and 1, a Transform-like batch of 32 mixing 28 SCUT faces with 4 composites up to
1050 px, and 8 group photos of 640 px. Run it once per code version to compare versions
(docs/faces-profile.md).

    python -m bench.faces_batches [--repeats 5] [--label NAME]
"""
from __future__ import annotations

import argparse
import time

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from bench.faces import DEFAULT_SCUT


def batches(scut: str) -> dict[str, tuple[list[bytes], int]]:
    from bench import face_parity

    one_size = [b for _, b in face_parity.scut_photos(scut, 64, seed=4)]
    mixed = ([b for _, b in face_parity.scut_photos(scut, 28, seed=9)]
             + [b for _, b in face_parity.composites(scut)][:4])
    return {"scut b64": (one_size, 64), "scut b8": (one_size, 8), "scut b1": (one_size[:16], 1),
            "mixed b32": (mixed, 32), "640 b8": ([b for _, b in face_parity.group_photos(scut, 640, 8, seed=3)], 8)}


def measure(scut: str, repeats: int) -> dict[str, float]:
    from bench import face_parity

    detector = face_parity.GraphDetector()
    out = {}
    for name, (photos, b) in batches(scut).items():
        detector(photos[:b])  # traced and warm
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(0, len(photos), b):
                detector(photos[i:i + b])
            best = min(best, (time.perf_counter() - t0) / len(photos))
        out[name] = 1e3 * best
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scut", default=DEFAULT_SCUT)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--label", default="this code")
    a = p.parse_args(argv)
    r = measure(a.scut, a.repeats)
    print(f"faces_batches ({a.label}): " + ", ".join(f"{k} {v:.1f} ms/photo" for k, v in r.items()))


if __name__ == "__main__":
    main()
