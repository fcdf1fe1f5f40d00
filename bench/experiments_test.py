"""The study's tables from evaluation results: which numbers land in which cell."""
import pytest

from bench import experiments


def _metrics(wmse, acc, starred_wmse, starred_acc):
    common = {"constant_weighted_mse": 0.04, "gender_constant_weighted_mse": 0.039, "majority_accuracy": 0.55,
              "ratio_pearson": 0.5, "gender_log_loss": 0.3, "gender_auc": 0.9, "count": 20}
    return {**common, "ratio_weighted_mse": wmse, "gender_accuracy": acc,
            "slices": {"starred": {**common, "ratio_weighted_mse": starred_wmse, "gender_accuracy": starred_acc,
                                   "count": 12}}}


def test_starred_variants_are_scored_on_the_starred_slice_and_plain_ones_on_all():
    m = _metrics(0.02, 0.9, 0.015, 0.95)
    plain, starred = experiments.VARIANTS[0], experiments.VARIANTS[1]
    assert not plain.starred and starred.starred
    assert experiments.scored(m, plain)["ratio_weighted_mse"] == 0.02
    assert experiments.scored(m, starred)["ratio_weighted_mse"] == 0.015
    with pytest.raises(ValueError, match="no 'starred' slice"):
        experiments.scored({"slices": {}}, starred)


def test_tables_have_the_studys_rows_and_columns():
    results = {
        "Inception": {"both": {"metrics": experiments.scored(_metrics(0.02, 0.9, 0.015, 0.95),
                                                             experiments.VARIANTS[0])}},
        "FaceNet*": {"ratio": {"metrics": {**experiments.scored(_metrics(0.012, 0.5, 0.01, 0.5),
                                                                experiments.VARIANTS[2])}},
                     "gender": {"metrics": {**experiments.scored(_metrics(0.5, 0.97, 0.5, 0.98),
                                                                 experiments.VARIANTS[2])}}},
    }
    t = experiments.tables(results)
    assert [r["model"] for r in t["like_ratio"]] == ["Baseline (best constant)", "Inception", "FaceNet*"]
    assert [r["weighted_mse"] for r in t["like_ratio"]] == [0.04, 0.02, 0.01]  # separate tasks: the ratio model's
    assert [r["accuracy"] for r in t["gender"]] == [0.55, 0.9, 0.98]  # and the gender model's
    assert t["like_ratio"][2]["gender_constant_weighted_mse"] == 0.039 and t["like_ratio"][1]["pearson"] == 0.5
    md = experiments.markdown(t["gender"])
    assert md.splitlines()[0] == "| model | accuracy | log_loss | auc | photos |" and "| FaceNet* | 0.9800 |" in md


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variants"):
        experiments.ExperimentsConfig("u.csv", "s.csv", "w", "weights", variants=("ResNet",))
