import json

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from deepattraction.components.evaluator.evaluation import (
    GateConfig,
    Labels,
    baselines,
    bless,
    correlations,
    evaluate,
    evaluate_slices,
)


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


# Six photos with their (likes, swipes) from women and from men; the label is their pooled ratio.
FROM_FEMALE = np.array([[0, 0], [3, 6], [10, 20], [30, 40], [4, 10], [1, 8]])
FROM_MALE = np.array([[1, 5], [2, 6], [8, 10], [5, 5], [6, 10], [0, 0]])
PRED = np.array([0.3, 0.35, 0.55, 0.7, 0.5, 0.2])
MALE_PROB = np.array([0.2, 0.6, 0.7, 0.9, 0.4, 0.3])


def _rich_labels(group=("AF", "AF", "CM", "AM", "", "CM")):
    likes, swipes = FROM_FEMALE[:, 0] + FROM_MALE[:, 0], FROM_FEMALE[:, 1] + FROM_MALE[:, 1]
    return Labels(likes / swipes, swipes.astype(float), np.array([0, 0, 1, 1, 0, 1]),
                  np.stack([FROM_FEMALE[:, 0], FROM_MALE[:, 0]], 1), np.stack([FROM_FEMALE[:, 1], FROM_MALE[:, 1]], 1),
                  None if group is None else np.array(group, dtype=object))


def _reference(y, pred, w, male, male_prob, base):
    """The same metrics from scipy and sklearn."""
    gender_pred = np.where(male == 1, base["gender_constants"][1], base["gender_constants"][0])
    out = {
        "ratio_weighted_mse": np.average((y - pred) ** 2, weights=w), "ratio_mse": skm.mean_squared_error(y, pred),
        "ratio_mae": skm.mean_absolute_error(y, pred),
        "ratio_weighted_mae": skm.mean_absolute_error(y, pred, sample_weight=w),
        "constant_weighted_mse": np.average((y - base["constant"]) ** 2, weights=w),
        "constant_mae": skm.mean_absolute_error(y, np.full_like(y, base["constant"])),
        "gender_constant_weighted_mse": np.average((y - gender_pred) ** 2, weights=w),
        "gender_constant_mae": skm.mean_absolute_error(y, gender_pred),
        "gender_accuracy": skm.accuracy_score(male, male_prob >= 0.5),
        "gender_log_loss": skm.log_loss(male, male_prob, labels=[0, 1]),
        "prior_log_loss": skm.log_loss(male, np.full(len(male), base["male_share"]), labels=[0, 1]),
    }
    if len(y) > 1:
        out["ratio_pearson"], out["ratio_spearman"] = stats.pearsonr(y, pred)[0], stats.spearmanr(y, pred)[0]
    if len(set(male)) == 2:
        out["gender_auc"] = skm.roc_auc_score(male, male_prob)
    return out


def test_metrics_match_scipy_and_sklearn():
    labels = _rich_labels()
    base = baselines(labels)
    assert base["male_share"] == 0.5
    m = evaluate(labels, base, PRED, MALE_PROB)
    ref = _reference(labels.like_ratio, PRED, labels.swipe_count, labels.male, MALE_PROB, base)
    assert {k: m[k] for k in ref} == pytest.approx(ref)
    cov = np.cov(labels.like_ratio, PRED, aweights=labels.swipe_count)
    assert m["ratio_weighted_pearson"] == pytest.approx(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
    assert m["gender_constant_mse_ratio"] == pytest.approx(m["gender_constant_weighted_mse"]
                                                           / m["constant_weighted_mse"])
    # Six photos, ten bins: one photo per bin, so each bin's gap is that photo's error.
    assert [b["count"] for b in m["ratio_calibration"]] == [1] * 6
    assert m["ratio_ece"] == pytest.approx(m["ratio_weighted_mae"])
    assert "constant_pearson" not in m  # undefined for a constant, so not reported


def test_degenerate_slices_give_none_and_valid_json():
    labels = _rich_labels()
    base = baselines(labels)
    m = evaluate(labels, base, np.full(6, 0.4), np.ones(6))
    assert m["ratio_pearson"] is None and m["ratio_spearman"] is None and m["ratio_weighted_pearson"] is None
    assert len(m["ratio_calibration"]) == 6 and m["gender_auc"] == 0.5
    slices = evaluate_slices(labels, base, PRED, MALE_PROB)
    assert slices["group=AM"]["count"] == 1 and slices["group=AM"]["ratio_pearson"] is None
    assert slices["group=AF"]["gender_auc"] is None  # both photos are of women
    json.dumps({"all": m, "slices": slices}, allow_nan=False)


def test_source_gender_slices_use_each_swiper_gender_s_own_ratio_weights_and_baselines():
    labels = _rich_labels()
    base = baselines(labels)
    slices = evaluate_slices(labels, base, PRED, MALE_PROB)
    for name, counts in (("source_gender=female", FROM_FEMALE), ("source_gender=male", FROM_MALE)):
        seen = counts[:, 1] > 0
        y, w, male = counts[seen, 0] / counts[seen, 1], counts[seen, 1], labels.male[seen]
        own = base["source_gender"][name]
        # That gender's swipe-weighted like ratio, overall and by target gender: the study's table.
        assert own["constant"] == pytest.approx(counts[seen, 0].sum() / w.sum())
        assert own["gender_constants"] == {m: pytest.approx(counts[seen][male == m, 0].sum() / w[male == m].sum())
                                           for m in (0, 1)}
        assert own["constant"] != pytest.approx(base["constant"])
        ref = _reference(y, PRED[seen], w, male, MALE_PROB[seen], {**base, **own})
        assert slices[name]["count"] == seen.sum() == 5
        assert {k: slices[name][k] for k in ref} == pytest.approx(ref)
        assert slices[name]["mse_ratio"] == pytest.approx(ref["ratio_weighted_mse"] / ref["constant_weighted_mse"])
    json.dumps(base, allow_nan=False)


def test_without_source_counts_there_are_no_source_gender_baselines():
    assert "source_gender" not in baselines(_labels())


def test_group_and_swipe_count_slices():
    labels = _rich_labels()
    base = baselines(labels)
    slices = evaluate_slices(labels, base, PRED, MALE_PROB)
    counts = {k: v["count"] for k, v in slices.items()}
    assert counts == {"female": 3, "male": 3, "group=AF": 2, "group=AM": 1, "group=CM": 2,  # "" is no group
                      "swipe_count=1-9": 2, "swipe_count=10-29": 2, "swipe_count=30+": 2, "source_gender=female": 5,
                      "source_gender=male": 5}
    many = labels.swipe_count >= 30
    assert slices["swipe_count=30+"]["ratio_weighted_mse"] == pytest.approx(
        np.average((labels.like_ratio[many] - PRED[many]) ** 2, weights=labels.swipe_count[many]))
    assert set(slices["group=CM"]) == set(evaluate(labels, base, PRED, MALE_PROB))  # every slice has the top-level keys
    assert not any(k.startswith("group=") for k in evaluate_slices(_rich_labels(group=None), base, PRED))


def test_correlations_with_an_external_target_match_scipy():
    """The quality benchmark's Pearson and Spearman of the predicted ratio with the photo's mean
    score (a target the labels do not hold); ties in the ranks as SciPy averages them."""
    rng = np.random.default_rng(0)
    score = np.round(rng.uniform(1, 5, 40), 1)  # rounded: tied ranks
    pred = (score - 1) / 4 + rng.normal(0, 0.1, 40)
    w = rng.integers(3, 60, 40).astype(float)
    c = correlations("score", score, pred)
    assert set(c) == {"score_pearson", "score_spearman"}
    assert c["score_pearson"] == pytest.approx(stats.pearsonr(score, pred)[0])
    assert c["score_spearman"] == pytest.approx(stats.spearmanr(score, pred)[0])
    weighted = correlations("score", score, pred, w)["score_weighted_pearson"]
    mean = lambda a: np.average(a, weights=w)  # noqa: E731
    cov = mean((score - mean(score)) * (pred - mean(pred)))
    assert weighted == pytest.approx(cov / np.sqrt(mean((score - mean(score)) ** 2) * mean((pred - mean(pred)) ** 2)))
    assert correlations("score", score, np.full(40, 0.5)) == {"score_pearson": None, "score_spearman": None}
