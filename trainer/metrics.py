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
