"""The per-group figures and the group-gap gate on synthetic photos whose errors are drawn with a
fixed seed: groups of known size, a last blessed model and candidates built to differ on one group."""
import json

import numpy as np
import pytest

from deepattraction.components.evaluator.evaluation import (
    GateConfig,
    Labels,
    baselines,
    bless,
    evaluate,
    evaluate_slices,
)
from deepattraction.components.evaluator.fairness import add_group_figures, bootstrap_counts, group_figures
from deepattraction.trainer import metrics

SIZES = {"A": 500, "B": 500, "C": 500, "D": 400, "E": 20}


def _photos(sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    group = np.concatenate([[g] * k for g, k in sizes.items()]).astype(object)
    n = len(group)
    y, w = rng.uniform(0.1, 0.9, n), rng.integers(5, 40, n).astype(float)
    return Labels(y, w, rng.integers(0, 2, n), group=group), rng


def _model(labels, rng, sd: dict, default: float):
    """Predictions off the label by normal noise of the given sd per group."""
    scale = np.array([sd.get(g, default) for g in labels.group])
    return labels.like_ratio + rng.normal(0, 1, len(scale)) * scale


def _judged(labels, pred, last, gate=None):
    base = baselines(labels)
    result = {**evaluate(labels, base, pred), "baseline_model": evaluate(labels, base, last),
              "slices": evaluate_slices(labels, base, pred)}
    return add_group_figures(result, group_figures(labels, gate or GateConfig(), pred, last_ratio_pred=last))


def test_a_candidate_better_overall_but_worse_on_one_group_is_refused_naming_the_group():
    labels, rng = _photos()
    last = _model(labels, rng, {}, 0.10)
    cand = _model(labels, rng, {"D": 0.16}, 0.05)
    r = _judged(labels, cand, last)
    assert r["ratio_weighted_mse"] < r["baseline_model"]["ratio_weighted_mse"]  # better overall
    gap = r["group_gap"]
    assert gap["worst_group"] == "group=D" and gap["growth_ci"][0] > 0
    ok, reasons = bless(r, GateConfig())
    assert not ok and len(reasons) == 1
    assert reasons[0].startswith("group gap regresses: group=D's like-ratio weighted MSE")
    assert bless({k: v for k, v in r.items() if k != "group_gap"}, GateConfig())[0]  # the gap alone refuses it
    # A tolerance above the whole interval lets it through.
    assert bless(r, GateConfig(max_group_gap_regression=gap["growth_ci"][1] + 0.01))[0]


def test_a_candidate_worse_on_a_group_within_the_noise_is_blessed():
    labels, rng = _photos({"A": 500, "B": 500, "C": 60})
    last = _model(labels, rng, {}, 0.10)
    cand = _model(labels, rng, {"C": 0.12}, 0.095)
    r = _judged(labels, cand, last)
    gap = r["group_gap"]
    assert gap["worst_group"] == "group=C" and gap["growth"] > 0.1  # worse on C by the point estimates...
    assert gap["growth_ci"][0] < 0 < gap["growth_ci"][1]  # ...but within the noise
    assert bless(r, GateConfig()) == (True, [])


def test_a_group_under_the_minimum_is_reported_not_gated():
    labels, rng = _photos()
    last = _model(labels, rng, {}, 0.10)
    cand = _model(labels, rng, {"E": 0.5}, 0.07)  # better, but 20 photos with seven times the error
    r = _judged(labels, cand, last)
    assert r["slices"]["group=E"]["gap"] > 10 and r["slices"]["group=E"]["gap_ci"][0] > 5  # reported
    gap = r["group_gap"]
    assert gap["too_small"] == {"group=E": 20} and "group=E" not in gap["gated"]
    assert gap["worst_group"] != "group=E" and bless(r, GateConfig())[0]
    smaller = GateConfig(min_group_photos=20)
    strict = _judged(labels, cand, last, smaller)
    ok, reasons = bless(strict, smaller)
    assert not ok and "group=E" in reasons[0]


def test_intervals_are_deterministic_contain_the_point_and_json_safe():
    labels, rng = _photos()
    pred = _model(labels, rng, {"D": 0.14}, 0.1)
    male_prob = np.clip(labels.male * 0.7 + rng.uniform(0, 0.5, len(pred)), 0, 1)
    faces = rng.integers(0, 3, len(pred))
    gate = GateConfig(bootstrap_resamples=300)
    a = group_figures(labels, gate, pred, male_prob, faces)
    assert a == group_figures(labels, gate, pred, male_prob, faces)
    assert a["slices"]["group=D"]["gap_ci"] != group_figures(labels, GateConfig(bootstrap_resamples=300,
                                                                                bootstrap_seed=1),
                                                             pred, male_prob, faces)["slices"]["group=D"]["gap_ci"]
    base = baselines(labels)
    point = {"all": evaluate(labels, base, pred, male_prob), **evaluate_slices(labels, base, pred, male_prob, faces)}
    assert {"female", "male", "starred", "unstarred", "group=A", "group=E"} <= set(a["slices"])
    assert not any(k.startswith("swipe_count") for k in a["slices"])
    for name, row in {"all": a["all"], **a["slices"]}.items():
        for k in ("ratio_weighted_mse", "ratio_ece", "gender_accuracy"):
            lo, hi = row[f"{k}_ci"]
            assert lo <= point[name][k] <= hi, (name, k)
        if name != "all":
            assert row["gap"] == pytest.approx(point[name]["ratio_weighted_mse"] / point["all"]["ratio_weighted_mse"])
            assert row["gap_ci"][0] <= row["gap"] <= row["gap_ci"][1]
    json.dumps(a, allow_nan=False)


def test_the_vectorised_bootstrap_matches_resampling_photo_by_photo():
    labels, rng = _photos({"A": 20, "B": 13})
    pred = _model(labels, rng, {}, 0.1)
    gate = GateConfig(bootstrap_resamples=200, bootstrap_seed=7)
    got = group_figures(labels, gate, pred)["slices"]["group=B"]
    draws = np.random.default_rng(7).integers(0, 33, size=(200, 33))  # the same stream, one block
    mse, gap = [], []
    for idx in draws:
        b = labels.group[idx] == "B"
        y, p, w = labels.like_ratio[idx], pred[idx], labels.swipe_count[idx]
        if b.any():
            mse.append(metrics.weighted_mse(y[b], p[b], w[b]))
            gap.append(mse[-1] / metrics.weighted_mse(y, p, w))
    assert got["ratio_weighted_mse_ci"] == pytest.approx(list(np.percentile(mse, [2.5, 97.5])))
    assert got["gap_ci"] == pytest.approx(list(np.percentile(gap, [2.5, 97.5])))
    counts = np.concatenate(list(bootstrap_counts(33, 200, 7)))
    assert counts.shape == (200, 33) and (counts.sum(axis=1) == 33).all()


def test_without_a_last_blessed_model_the_gap_is_reported_and_nothing_is_compared():
    labels, rng = _photos()
    pred = _model(labels, rng, {"D": 0.3}, 0.05)
    base = baselines(labels)
    r = add_group_figures({**evaluate(labels, base, pred), "slices": evaluate_slices(labels, base, pred)},
                          group_figures(labels, GateConfig(), pred))
    gap = r["group_gap"]
    assert gap["worst_group"] == "group=D" and gap["gap"] > 3 and "growth_ci" not in gap and "baseline_model" not in gap
    assert bless(r, GateConfig()) == (True, [])


def test_gate_settings_are_flat_numbers_and_strings_for_pipeline_parameters():
    import dataclasses

    fields = {f.name: f.type for f in dataclasses.fields(GateConfig)}
    assert {"max_group_gap_regression", "min_group_photos", "bootstrap_resamples", "bootstrap_seed"} <= set(fields)
    assert set(fields.values()) <= {"float", "int", "str"}
    gate = GateConfig(max_group_gap_regression=0.2, min_group_photos=30, bootstrap_resamples=500, bootstrap_seed=3)
    assert GateConfig.from_json(gate.to_json()) == gate
