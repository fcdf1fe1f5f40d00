"""Metric and baseline arithmetic shared by the trainer and the evaluator (NumPy, no TF)."""
from __future__ import annotations

import numpy as np

EPS = 1e-7


def weighted_mse(y_true, y_pred, weights) -> float:
    """The study's loss: squared error weighted by each photo's swipe count."""
    y_true, y_pred, w = (np.asarray(a, np.float64) for a in (y_true, y_pred, weights))
    return float(np.sum(w * (y_true - y_pred) ** 2) / np.sum(w))


def best_constant(y_true, weights) -> float:
    """The constant that minimises weighted MSE: the swipe-weighted mean like ratio."""
    y_true, w = np.asarray(y_true, np.float64), np.asarray(weights, np.float64)
    return float(np.sum(w * y_true) / np.sum(w))


def group_constants(y_true, weights, groups) -> dict:
    """Best constant per group (e.g. per gender): the gender-conditional baseline."""
    y_true, w, g = np.asarray(y_true), np.asarray(weights), np.asarray(groups)
    return {k: best_constant(y_true[g == k], w[g == k]) for k in np.unique(g)}


def accuracy(labels, probabilities) -> float:
    return float(np.mean((np.asarray(probabilities) >= 0.5) == (np.asarray(labels) == 1)))


def log_loss(labels, probabilities) -> float:
    p = np.clip(np.asarray(probabilities, np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def majority(labels) -> tuple[int, float]:
    """The majority class and its share: the accuracy of always guessing it."""
    y = np.asarray(labels)
    ones = float(np.mean(y == 1))
    return (1, ones) if ones >= 0.5 else (0, 1 - ones)


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))))


def weighted_mae(y_true, y_pred, weights) -> float:
    y_true, y_pred, w = (np.asarray(a, np.float64) for a in (y_true, y_pred, weights))
    return float(np.sum(w * np.abs(y_true - y_pred)) / np.sum(w))


def pearson(x, y, weights=None) -> float | None:
    """(Weighted) Pearson correlation; None where it is undefined: a constant side, or under two points."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)
    w = w / np.sum(w)
    dx, dy = x - np.sum(w * x), y - np.sum(w * y)
    r = np.sum(w * dx * dy) / np.sqrt(np.sum(w * dx * dx) * np.sum(w * dy * dy))
    return float(np.clip(r, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as Spearman and the AUC need)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    group = np.cumsum(np.r_[True, sorted_x[1:] != sorted_x[:-1]]) - 1
    mean_rank = np.bincount(group, weights=np.arange(1, len(x) + 1)) / np.bincount(group)
    ranks = np.empty(len(x))
    ranks[order] = mean_rank[group]
    return ranks


def spearman(x, y) -> float | None:
    """Unweighted Spearman rank correlation: Pearson of the tie-averaged ranks."""
    return pearson(average_ranks(x), average_ranks(y)) if len(np.asarray(x)) else None


def auc(labels, scores) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count half); None when only one class is present."""
    y = np.asarray(labels) == 1
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return None
    return float((average_ranks(scores)[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def calibration(y_true, y_pred, weights, bins: int = 10) -> tuple[list[dict], float | None]:
    """Equal-count bins of the prediction; in each, the swipe-weighted mean prediction against the
    swipe-weighted mean label (that bin's pooled like ratio). The expected calibration error is the
    swipe-weighted mean of their absolute gaps."""
    y_true, y_pred, w = (np.asarray(a, np.float64) for a in (y_true, y_pred, weights))
    if not len(y_pred):
        return [], None
    out, ece = [], 0.0
    for idx in np.array_split(np.argsort(y_pred, kind="mergesort"), min(bins, len(y_pred))):
        swipes = float(np.sum(w[idx]))
        pred, observed = best_constant(y_pred[idx], w[idx]), best_constant(y_true[idx], w[idx])
        out.append({"count": int(len(idx)), "swipes": swipes, "pred_mean": pred, "observed_mean": observed,
                    "pred_min": float(y_pred[idx].min()), "pred_max": float(y_pred[idx].max())})
        ece += swipes * abs(pred - observed)
    return out, float(ece / np.sum(w))
