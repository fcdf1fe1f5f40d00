"""Per-group figures with bootstrap intervals, and the numbers the group-gap gate decides on.

Each figure (weighted MSE, like-ratio ECE, gender accuracy, a group's gap to the whole split) is a
ratio of sums over photos. One bootstrap serves them all: a resample draws the split's photos with
replacement, which is a count per photo, so every slice's sums for a block of resamples are one
matrix product of the counts with a table of per-photo terms (NumPy, no loop over photos). The
slices, the whole split and both models (the candidate and the last blessed one) see the same
resampled photos, so a gap to the whole split and its growth against the last blessed model are
measured on paired samples: the noise they share (hard photos, few swipes) cancels."""
from __future__ import annotations

import numpy as np

from deepattraction.components.evaluator.evaluation import (
    CALIBRATION_BINS,
    GateConfig,
    Labels,
    slice_masks,
    source_gender_labels,
)

CONFIDENCE = 0.95  # of every interval
CHUNK = 4_000_000  # resample x photo counts held at once (32 MB as float64)

# Slices that get intervals and a gap; swipe-count buckets measure label noise, not a group.
GROUP_DIMENSIONS = ("target gender", "group", "source_gender", "starred subset")
# Slices the gap gate judges. A source_gender slice is scored against that swiper gender's own
# like ratio (not the label the whole split is scored on), so its gap mixes the model's error with
# how differently women and men judge; starred/unstarred is decided by each model's own face count,
# so the candidate and the last blessed model would not be judged on the same photos.
GATED_DIMENSIONS = ("target gender", "group")


def slice_dimension(name: str) -> str:
    """Slices compared with each other: the evaluator's "<dimension>=<value>" slices share a
    dimension (source_gender=female, source_gender=male); target gender and starred are the bare ones."""
    if "=" in name:
        return name.split("=", 1)[0]
    if name in ("female", "male"):
        return "target gender"
    if name in ("starred", "unstarred"):
        return "starred subset"
    return name


def bootstrap_counts(n: int, resamples: int, seed: int):
    """Blocks of resamples, each row how often each of the n photos is drawn (n draws with
    replacement); the same seed gives the same resamples."""
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK // max(n, 1))
    for start in range(0, resamples, rows):
        k = min(rows, resamples - start)
        drawn = rng.integers(0, n, size=(k, n)) + np.arange(k)[:, None] * n
        yield np.bincount(drawn.ravel(), minlength=k * n).reshape(k, n).astype(np.float64)


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    """Percentile interval of the resamples where the figure is defined (a small slice can be
    absent from a resample); None when it is defined in none."""
    a = np.asarray(samples, np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return None
    lo, hi = np.percentile(a, [50 * (1 - confidence), 50 * (1 + confidence)])
    return [float(lo), float(hi)]


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


class _Terms:
    """Per-photo terms, one column each; sums over any resample are counts @ matrix."""

    def __init__(self):
        self.cols: list[np.ndarray] = []

    def add(self, v) -> int:
        self.cols.append(np.asarray(v, np.float64))
        return len(self.cols) - 1


def _bin_ids(pred: np.ndarray, mask: np.ndarray, bins: int) -> np.ndarray:
    """Each photo's calibration bin within the slice, as trainer.metrics.calibration makes them
    (equal-count bins of the prediction); -1 outside the slice. Bins stay fixed across resamples."""
    ids = np.full(len(pred), -1)
    where = np.flatnonzero(mask)
    for j, idx in enumerate(np.array_split(where[np.argsort(pred[where], kind="mergesort")], min(bins, len(where)))):
        ids[idx] = j
    return ids


def _slices(labels: Labels, face_count) -> dict:
    """name -> (mask, like ratio, weight) for the group slices and "all"."""
    out = {"all": (np.ones(len(labels.like_ratio), bool), labels.like_ratio, labels.swipe_count)}
    for name, mask in slice_masks(labels, face_count).items():
        if slice_dimension(name) in GROUP_DIMENSIONS and mask.any():
            out[name] = (mask, labels.like_ratio, labels.swipe_count)
    for name, (mask, sub) in source_gender_labels(labels).items():
        if mask.any():
            y, w = np.zeros(len(mask)), np.zeros(len(mask))
            y[mask], w[mask] = sub.like_ratio, sub.swipe_count
            out[name] = (mask, y, w)
    return out


def group_figures(labels: Labels, gate: GateConfig, ratio_pred=None, male_prob=None, face_count=None,
                  last_ratio_pred=None) -> dict:
    """{"all": intervals of the whole split, "slices": per slice its intervals and gap,
    "group_gap": what the gap gate reads}. Keys: <metric>_ci = [low, high] for ratio_weighted_mse,
    ratio_ece and gender_accuracy; gap = the slice's weighted MSE over the whole split's, gap_ci.

    group_gap: the worst gated group (largest gap among the GATED_DIMENSIONS slices with at least
    gate.min_group_photos photos) with its gap and interval; the same for the last blessed model
    when its predictions are given; growth = candidate's worst gap - last blessed model's worst gap
    with its paired interval; too_small: the gated-dimension slices under the minimum (reported,
    not judged)."""
    n = len(labels.like_ratio)
    out: dict = {"all": {}, "slices": {}}
    if n == 0:
        return out
    slices = _slices(labels, face_count)
    terms = _Terms()
    spec: dict = {}
    ratio = None if ratio_pred is None else np.asarray(ratio_pred, np.float64)
    last = None if last_ratio_pred is None else np.asarray(last_ratio_pred, np.float64)
    for name, (mask, y, w) in slices.items():
        s = {"count": int(mask.sum()), "n": terms.add(mask)}
        if ratio is not None:
            s["w"] = terms.add(w * mask)
            s["se"] = terms.add(w * (y - ratio) ** 2 * mask)
            ids = _bin_ids(ratio, mask, CALIBRATION_BINS)
            s["bins"] = [terms.add(w * (ratio - y) * (ids == j)) for j in range(ids.max() + 1)]
            if last is not None:
                s["se_last"] = terms.add(w * (y - last) ** 2 * mask)
        if male_prob is not None:
            s["correct"] = terms.add(((np.asarray(male_prob) >= 0.5) == (labels.male == 1)) * mask)
        spec[name] = s
    matrix = np.stack(terms.cols, axis=1)

    def figures(sums: np.ndarray) -> dict:
        """name -> figure -> values, for a (resamples x terms) block of sums."""
        f = {}
        for name, s in spec.items():
            g = {}
            if "se" in s:
                g["ratio_weighted_mse"] = _ratio(sums[:, s["se"]], sums[:, s["w"]])
                g["ratio_ece"] = _ratio(np.abs(sums[:, s["bins"]]).sum(axis=1), sums[:, s["w"]])
            if "se_last" in s:
                g["last_weighted_mse"] = _ratio(sums[:, s["se_last"]], sums[:, s["w"]])
            if "correct" in s:
                g["gender_accuracy"] = _ratio(sums[:, s["correct"]], sums[:, s["n"]])
            f[name] = g
        for g in f.values():
            if "ratio_weighted_mse" in g:
                g["gap"] = _ratio(g["ratio_weighted_mse"], f["all"]["ratio_weighted_mse"])
            if "last_weighted_mse" in g:
                g["last_gap"] = _ratio(g["last_weighted_mse"], f["all"]["last_weighted_mse"])
        return f

    point = figures(matrix.sum(axis=0, keepdims=True))
    blocks = [figures(counts @ matrix) for counts in bootstrap_counts(n, gate.bootstrap_resamples, gate.bootstrap_seed)]
    boot = {name: {k: np.concatenate([b[name][k] for b in blocks]) for k in g} for name, g in point.items()}

    for name, g in point.items():
        row = {f"{k}_ci": interval(boot[name][k]) for k in ("ratio_weighted_mse", "ratio_ece", "gender_accuracy")
               if k in g}
        if name == "all":
            out["all"] = row
            continue
        if "gap" in g:
            row.update(gap=_value(g["gap"]), gap_ci=interval(boot[name]["gap"]))
        out["slices"][name] = row
    if ratio is None:
        return out

    gated = [name for name in spec if slice_dimension(name) in GATED_DIMENSIONS]
    judged = [name for name in gated if spec[name]["count"] >= gate.min_group_photos
              and _value(point[name]["gap"]) is not None]
    gg: dict = {"confidence": CONFIDENCE, "resamples": gate.bootstrap_resamples, "seed": gate.bootstrap_seed,
                "min_group_photos": gate.min_group_photos, "tolerance": gate.max_group_gap_regression,
                "gated": judged, "too_small": {name: spec[name]["count"] for name in gated
                                               if spec[name]["count"] < gate.min_group_photos}}
    if judged:
        worst = max(judged, key=lambda name: point[name]["gap"][0])
        gg.update(worst_group=worst, gap=_value(point[worst]["gap"]), gap_ci=interval(boot[worst]["gap"]))
        defined = [name for name in judged if last is not None and _value(point[name]["last_gap"]) is not None]
        if defined:
            lw = max(defined, key=lambda name: point[name]["last_gap"][0])
            gg["baseline_model"] = {"worst_group": lw, "gap": _value(point[lw]["last_gap"]),
                                    "gap_ci": interval(boot[lw]["last_gap"]),
                                    "gaps": {name: _value(point[name]["last_gap"]) for name in defined}}
            gg["growth"] = _value(point[worst]["gap"] - point[lw]["last_gap"])
            gg["growth_ci"] = interval(boot[worst]["gap"] - boot[lw]["last_gap"])
    out["group_gap"] = gg
    return out


def _value(a) -> float | None:
    v = float(np.asarray(a).ravel()[0])
    return v if np.isfinite(v) else None


def add_group_figures(result: dict, figures: dict) -> dict:
    """Merges group_figures() into an evaluation: the whole split's intervals at the top level,
    each slice's beside its other metrics, and group_gap."""
    result.update(figures["all"])
    for name, row in figures["slices"].items():
        result.setdefault("slices", {}).setdefault(name, {}).update(row)
    if "group_gap" in figures:
        result["group_gap"] = figures["group_gap"]
    return result
