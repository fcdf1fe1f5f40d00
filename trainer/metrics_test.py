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
    assert metrics.group_constants([0.2, 0.4, 0.9], [1, 1, 2], [0, 0, 1]) == {0: pytest.approx(0.3), 1: pytest.approx(0.9)}
    assert metrics.majority([1, 1, 0]) == (1, pytest.approx(2 / 3))
    assert metrics.majority([0, 0, 1, 1]) == (1, 0.5)
    assert metrics.accuracy([1, 0, 1], [0.9, 0.2, 0.4]) == pytest.approx(2 / 3)
    assert metrics.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert metrics.logit(0.5) == 0.0
