"""The quality benchmark's folds and summary: each photo is tested exactly once under
cross-validation, fold 0 is the fixed fifth that earlier runs held out, and the table's figures
are the folds' means with their spread."""
import numpy as np
import pytest

from bench import quality
from deepattraction import demo_data

NAMES = [f"{g}{i}" for g in ("AF", "AM", "CF", "CM") for i in range(1, 401)]


def _data(names):
    n = len(names)
    z = np.zeros(n)
    return quality.Data(names, [b""] * n, z.astype(np.int64), np.array(["AF"] * n), z, z, z + 1, z,
                        *quality.assign_folds(names))


def test_cross_validation_tests_every_photo_once_and_never_trains_or_stops_early_on_it():
    data = _data(NAMES)
    tested = np.zeros(len(NAMES), int)
    for fold in range(quality.FOLDS):
        train, evl, test = quality.split(data, fold)
        assert (train.astype(int) + evl + test == 1).all()  # a partition
        assert 0.15 < test.mean() < 0.25 and 0.05 < evl.mean() < 0.12
        tested += test
    assert (tested == 1).all()


def test_fold_0_is_the_fixed_fifth_of_earlier_runs():
    fifth = np.array([quality._bucket(i, "test") < 20 for i in NAMES])
    _, _, test = quality.split(_data(NAMES), 0)
    assert (test == fifth).all()


def test_the_table_gives_each_figure_s_mean_over_folds_and_the_spread_of_the_correlations():
    def row(model, fold, pearson, mse):
        return {"model": model, "fold": fold, "photos": 10, "weighted_mse": mse, "mse_over_constant": mse,
                "mse_over_gender_constant": mse,
                "pearson": pearson, "spearman": pearson, "gender_accuracy": 0.5}
    rows = [row("constant", 0, None, 0.1), row("net", 0, 0.8, 0.02), row("constant", 1, None, 0.3),
            row("net", 1, 0.9, 0.04)]
    summary = quality.summarize(rows)
    assert [s["model"] for s in summary] == ["constant", "net"]
    const, net = summary
    assert const["pearson"] is None and const["pearson_sd"] is None and const["weighted_mse"] == pytest.approx(0.2)
    assert net["folds"] == 2 and net["photos"] == 20
    assert net["pearson"] == pytest.approx(0.85) and net["pearson_sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert "| net | 2 | 20 | 0.0300 |" in quality.table(summary)


def test_folds_outside_one_to_five_and_unknown_like_rules_are_refused():
    with pytest.raises(ValueError, match="folds must be 1 to 5"):
        quality.BenchConfig(folds=0)
    with pytest.raises(ValueError, match="like_rule must be one of"):
        quality.BenchConfig(like_rule="score>=3")



@pytest.mark.parametrize("rule", demo_data.LIKE_RULES)
def test_the_ceiling_row_predicts_the_rule_s_expected_ratio_over_all_60_ratings(rule):
    """Graded, the expected ratio is (mean score - 1) / 4, so the ceiling's Pearson is 1; by
    threshold it is the share of 4s and 5s, which saturates (about 0.94 on the whole set)."""
    data = quality.load(quality.BenchConfig(photos=300, like_rule=rule))
    train, _, test = quality.split(data, 0)
    rows = {r["model"].split(":")[0]: r for r in quality.baseline_rows(data, test, train, 0)}
    ceiling = rows["Ceiling"]
    assert ceiling["gender_accuracy"] is None and ceiling["weighted_mse"] < 0.5 * rows["Baseline"]["weighted_mse"]
    if rule == "graded":
        np.testing.assert_allclose(data.expected_ratio, (data.mean_score - 1) / 4, atol=1e-3)
        assert ceiling["pearson"] > 0.999
    else:
        assert 0.85 < ceiling["pearson"] < 0.98
    assert abs(np.average(data.ratio, weights=data.swipes) - data.expected_ratio.mean()) < 0.03
