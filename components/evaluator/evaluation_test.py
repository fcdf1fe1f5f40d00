import numpy as np
import pytest

from deepattraction.components.evaluator.evaluation import GateConfig, Labels, baselines, bless, evaluate


def _labels():
    return Labels(np.array([0.2, 0.4, 0.6, 0.8]), np.array([10.0, 10.0, 30.0, 50.0]), np.array([0, 0, 1, 1]))


def test_baselines_come_from_the_training_labels():
    base = baselines(_labels())
    assert base["constant"] == pytest.approx((2 + 4 + 18 + 40) / 100)
    assert base["gender_constants"] == {0: pytest.approx(0.3), 1: pytest.approx((18 + 40) / 80)}
    assert base["majority_male"] == 1


def test_perfect_model_is_blessed_constant_model_is_not():
    labels, base = _labels(), baselines(_labels())
    perfect = evaluate(labels, base, labels.like_ratio, labels.male.astype(float))
    assert perfect["ratio_weighted_mse"] == 0 and perfect["gender_accuracy"] == 1.0
    assert bless(perfect, GateConfig()) == (True, [])
    constant = evaluate(labels, base, np.full(4, base["constant"]), np.full(4, 0.9))
    assert constant["mse_ratio"] == pytest.approx(1.0)
    ok, reasons = bless(constant, GateConfig())
    assert not ok and len(reasons) == 2
    assert "not below" in reasons[0] and "not above majority" in reasons[1]


def test_gate_margins_and_single_task_models():
    labels, base = _labels(), baselines(_labels())
    decent = evaluate(labels, base, labels.like_ratio + 0.05)
    assert "gender_accuracy" not in decent
    assert bless(decent, GateConfig())[0]
    assert not bless(decent, GateConfig(max_mse_ratio=0.01))[0]
    gender_only = evaluate(labels, base, male_prob=labels.male.astype(float))
    assert bless(gender_only, GateConfig(min_accuracy_gain=0.4))[0]
    assert not bless(gender_only, GateConfig(min_accuracy_gain=0.5))[0]
    assert GateConfig.from_json(GateConfig(max_mse_ratio=0.5).to_json()) == GateConfig(max_mse_ratio=0.5)


def test_slices_by_gender_and_starred():
    from deepattraction.components.evaluator.evaluation import evaluate_slices

    labels, base = _labels(), baselines(_labels())
    s = evaluate_slices(labels, base, labels.like_ratio, labels.male.astype(float), face_count=np.array([1, 0, 1, 3]))
    assert s["female"]["count"] == 2 and s["male"]["count"] == 2
    assert s["starred"]["count"] == 2 and s["unstarred"]["count"] == 2
    assert s["starred"]["ratio_weighted_mse"] == 0.0
    assert "starred" not in evaluate_slices(labels, base, labels.like_ratio)


def test_candidate_must_not_regress_against_the_last_blessed_model():
    labels, base = _labels(), baselines(_labels())
    candidate = evaluate(labels, base, labels.like_ratio + 0.05, labels.male.astype(float))
    better_last = evaluate(labels, base, labels.like_ratio + 0.01, labels.male.astype(float))
    worse_last = evaluate(labels, base, labels.like_ratio + 0.1, labels.male.astype(float))
    assert bless({**candidate, "baseline_model": worse_last}, GateConfig())[0]
    ok, reasons = bless({**candidate, "baseline_model": better_last}, GateConfig())
    assert not ok and "regresses against the last blessed model" in reasons[0]
    # 0.0025 vs 0.0001 is 25x worse: a tolerance of 30x lets it through.
    assert bless({**candidate, "baseline_model": better_last}, GateConfig(max_mse_regression=30.0))[0]
