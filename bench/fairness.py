"""The Evaluator's per-group bootstrap at scale: fairness.group_figures (one matrix product per
block of resamples, two models) against the plain way, a loop over resamples that indexes the
photos and scores each group slice's weighted MSE, ECE and gender accuracy with trainer.metrics
(one model), on synthetic photos with four groups and both swiper genders. The loop runs a few
resamples and is scaled to the same count. Ends with one line per size:

    fairness: <n> photos, <r> resamples: <s> s vectorised, <p> s per-resample loop (<x>x)

    python -m bench.fairness [--photos 5000,50000] [--resamples 1000] [--loop-resamples 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from deepattraction.components.evaluator.evaluation import (
    CALIBRATION_BINS,
    GateConfig,
    Labels,
    slice_masks,
    source_gender_labels,
    subset,
)
from deepattraction.components.evaluator.fairness import GROUP_DIMENSIONS, group_figures, slice_dimension
from deepattraction.trainer import metrics


def photos(n: int, seed: int = 0) -> tuple[Labels, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, swipes = rng.uniform(0.05, 0.95, n), rng.integers(3, 60, n)
    from_women = rng.integers(0, swipes + 1)
    likes_w = rng.binomial(from_women, y)
    likes_m = rng.binomial(swipes - from_women, y)
    labels = Labels((likes_w + likes_m) / swipes, swipes.astype(float), rng.integers(0, 2, n),
                    np.stack([likes_w, likes_m], 1), np.stack([from_women, swipes - from_women], 1),
                    np.array(["AF", "AM", "CF", "CM"], dtype=object)[rng.integers(0, 4, n)])
    return labels, labels.like_ratio + rng.normal(0, 0.1, n), rng.uniform(size=n), rng.integers(0, 3, n)


def loop_figures(labels: Labels, ratio, male, faces) -> dict:
    """One resample's figures, slice by slice, the plain way."""
    out = {}
    slices = {n: (m, subset(labels, m)) for n, m in slice_masks(labels, faces).items()
              if slice_dimension(n) in GROUP_DIMENSIONS}
    slices.update(source_gender_labels(labels))
    for name, (mask, sub) in slices.items():
        if mask.any():
            r = ratio[mask]
            out[name] = (metrics.weighted_mse(sub.like_ratio, r, sub.swipe_count),
                         metrics.calibration(sub.like_ratio, r, sub.swipe_count, CALIBRATION_BINS)[1],
                         metrics.accuracy(sub.male, male[mask]))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default="5000,50000")
    p.add_argument("--resamples", type=int, default=GateConfig().bootstrap_resamples)
    p.add_argument("--loop-resamples", type=int, default=20)
    a = p.parse_args(argv)
    for n in (int(v) for v in a.photos.split(",")):
        labels, ratio, male, faces = photos(n)
        gate = GateConfig(bootstrap_resamples=a.resamples)
        start = time.perf_counter()
        group_figures(labels, gate, ratio, male, faces, last_ratio_pred=ratio[::-1].copy())
        fast = time.perf_counter() - start
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(a.loop_resamples):
            idx = rng.integers(0, n, n)
            loop_figures(subset(labels, idx), ratio[idx], male[idx], faces[idx])
        loop = (time.perf_counter() - start) * a.resamples / a.loop_resamples
        print(f"fairness: {n} photos, {a.resamples} resamples: {fast:.2f} s vectorised, {loop:.1f} s per-resample "
              f"loop ({loop / fast:.0f}x)", flush=True)


if __name__ == "__main__":
    main()
