import numpy as np
import pytest

from deepattraction.trainer import metrics


def test_weighted_mse_weights_by_swipe_count():
    # Errors 0.1 (weight 3) and 0.5 (weight 1): (3*0.01 + 1*0.25) / 4 = 0.07
    assert metrics.weighted_mse([0.5, 0.5], [0.6, 1.0], [3, 1]) == pytest.approx(0.07)
    assert metrics.weighted_mse([0.5, 0.5], [0.6, 1.0], [1, 1]) == pytest.approx(0.13)


def test_best_constant_is_the_weighted_mean_and_minimises_weighted_mse():
    rng = np.random.default_rng(0)
    y, w = rng.random(50), rng.integers(1, 60, 50)
    c = metrics.best_constant(y, w)
    assert c == pytest.approx(np.sum(y * w) / np.sum(w))
    grid = np.linspace(0, 1, 1001)
    best_on_grid = grid[np.argmin([metrics.weighted_mse(y, np.full(50, g), w) for g in grid])]
    assert abs(best_on_grid - c) < 1e-3


def test_group_constants_majority_accuracy_logloss():
    assert metrics.group_constants([0.2, 0.4, 0.9], [1, 1, 2], [0, 0, 1]) == {0: pytest.approx(0.3),
                                                                              1: pytest.approx(0.9)}
    assert metrics.majority([1, 1, 0]) == (1, pytest.approx(2 / 3))
    assert metrics.majority([0, 0, 1, 1]) == (1, 0.5)
    assert metrics.accuracy([1, 0, 1], [0.9, 0.2, 0.4]) == pytest.approx(2 / 3)
    assert metrics.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert metrics.logit(0.5) == 0.0


def test_errors_and_correlations_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    y, p, w = rng.random(40), rng.random(40), rng.integers(1, 60, 40)
    p[:6] = p[6]  # ties in the prediction
    assert metrics.mae(y, p) == pytest.approx(np.mean(np.abs(y - p)))
    assert metrics.weighted_mae(y, p, w) == pytest.approx(np.average(np.abs(y - p), weights=w))
    assert metrics.pearson(y, p) == pytest.approx(stats.pearsonr(y, p)[0])
    assert metrics.pearson(y, p, w) == pytest.approx(np.cov(y, p, aweights=w)[0, 1] / np.sqrt(
        np.cov(y, aweights=w) * np.cov(p, aweights=w)))
    assert metrics.spearman(y, p) == pytest.approx(stats.spearmanr(y, p)[0])
    assert metrics.average_ranks([3, 1, 3, 2]).tolist() == stats.rankdata([3, 1, 3, 2]).tolist()
    # Undefined correlations are None, never NaN.
    assert metrics.pearson(y, np.full(40, 0.3)) is None and metrics.spearman(np.full(40, 2), p) is None
    assert metrics.pearson([0.5], [0.1]) is None


def test_auc_matches_sklearn_and_is_none_for_one_class():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    labels, scores = rng.integers(0, 2, 50), rng.random(50).round(1)  # rounding makes ties
    assert metrics.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert metrics.auc([1, 1, 1], [0.2, 0.5, 0.9]) is None


def test_calibration_bins_are_equal_count_and_swipe_weighted():
    y = np.array([0.0, 1.0, 0.5, 0.5, 0.2, 0.4])
    p = np.array([0.1, 0.1, 0.5, 0.7, 0.3, 0.3])
    w = np.array([3, 1, 2, 2, 1, 1])
    bins, ece = metrics.calibration(y, p, w, bins=3)
    # Sorted by prediction: [0.1, 0.1] [0.3, 0.3] [0.5, 0.7]
    assert [b["count"] for b in bins] == [2, 2, 2] and [b["swipes"] for b in bins] == [4, 2, 4]
    assert [b["observed_mean"] for b in bins] == pytest.approx([1 / 4, 0.3, 0.5])
    assert [b["pred_mean"] for b in bins] == pytest.approx([0.1, 0.3, 0.6])
    assert ece == pytest.approx((4 * 0.15 + 2 * 0.0 + 4 * 0.1) / 10)
    perfect_bins, perfect = metrics.calibration(y, y, w)
    assert perfect == pytest.approx(0) and len(perfect_bins) == 6  # fewer photos than bins: one bin each
    assert metrics.calibration([], [], []) == ([], None)
