from deepattraction.components.report import model_card


def test_card_says_what_it_predicts_and_reports_slices_and_the_largest_gap():
    metrics = {"count": 10, "ratio_weighted_mse": 0.02, "constant_weighted_mse": 0.04, "gender_accuracy": 0.9,
               "majority_accuracy": 0.6, "blessed": True, "gate": {},
               "slices": {"female": {"count": 4, "ratio_weighted_mse": 0.01, "gender_accuracy": 0.75},
                          "male": {"count": 6, "ratio_weighted_mse": 0.03, "gender_accuracy": 1.0},
                          "starred": {"count": 7, "ratio_weighted_mse": 0.02},
                          "unstarred": {"count": 3, "ratio_weighted_mse": 0.05},
                          "swipe_count=10-29": {"count": 5, "ratio_weighted_mse": 0.02, "ratio_mae": 0.1, "other": 1.0},
                          "source_gender=female": {"count": 5, "gender_auc": 0.6},
                          "source_gender=male": {"count": 5, "gender_auc": 0.9}}}
    text = model_card.render(metrics, {"users_in": 12, "users_in_splits": {"test": 10}, "users_rejected": 2,
                                       "swipes_before_update": 3}, "source_gender,target_gender\n")
    assert "predicts attractiveness (as a like ratio) and gender from a face photo" in text
    assert "it predicts attractiveness and gender from faces" in text
    assert "## Out of scope" in text and "## Known limits" in text and "**starred subset**" in text
    assert "| female | 4 |" in text and "| male | 6 |" in text and "| 10-29 swipes | 5 |" in text
    assert "| like-ratio MAE |" in text and "| other |" not in text  # a column when some slice has it; known only
    gaps = text.split("Largest gap between groups:")[1]
    assert gaps.index("swiper gender: **gender ROC AUC** differs by 0.3000 (swiped by women 0.6000, "
                      "swiped by men 0.9000)") \
        < gaps.index("photo's gender: **gender accuracy** differs by 0.2500 (female 0.7500, male 1.0000)") \
        < gaps.index("starred subset: **like-ratio weighted MSE** differs by 0.0300 (starred (one face) 0.0200, "
                     "unstarred 0.0500)")
    assert "- swipes:" not in gaps  # a group of one slice has no gap
    assert "| swiper gender | photo's gender |" in text


def test_card_names_each_metrics_worst_group_with_its_interval_and_the_gap_gate():
    def group(count, mse, ece, acc, gap):
        return {"count": count, "ratio_weighted_mse": mse, "ratio_weighted_mse_ci": [mse - 0.01, mse + 0.01],
                "ratio_ece": ece, "ratio_ece_ci": [ece / 2, ece * 2], "gender_accuracy": acc,
                "gender_accuracy_ci": [acc - 0.1, 1.0], "gap": gap, "gap_ci": [gap - 0.2, gap + 0.2]}

    metrics = {"count": 300, "ratio_weighted_mse": 0.02, "ratio_ece": 0.03, "gender_accuracy": 0.9, "blessed": False,
               "gate": {"min_group_photos": 50},
               "slices": {"group=AF": group(120, 0.018, 0.05, 0.85, 0.9), "group=CF": group(60, 0.03, 0.02, 0.95, 1.5),
                          "group=XX": group(20, 0.2, 0.3, 0.2, 10.0),  # under the minimum: not named
                          "source_gender=male": group(290, 0.05, 0.01, 0.9, 2.5)},  # another label: not named
               "group_gap": {"min_group_photos": 50, "resamples": 1000, "worst_group": "group=CF", "gap": 1.5,
                             "growth": 0.4, "growth_ci": [0.1, 0.7], "tolerance": 0.0, "passed": False,
                             "too_small": {"group=XX": 20},
                             "baseline_model": {"worst_group": "group=AF", "gap": 1.1}}}
    groups = model_card.render(metrics, {}, "").split("## Groups")[1]
    assert "| like-ratio weighted MSE | group CF | 0.0300 (0.0200 to 0.0400) | 0.0200 |" in groups
    assert "| like-ratio calibration error (ECE) | group AF | 0.0500 (0.0250 to 0.1000) | 0.0300 |" in groups
    assert "| gender accuracy | group AF | 0.8500 (0.7500 to 1.0000) | 0.9000 |" in groups
    assert "| weighted MSE / whole split's (gap) | group CF | 1.5000 (1.3000 to 1.7000) | 1.0000 |" in groups
    assert "Group gap gate: **FAILED**. The worst group's gap grew by +0.400 (95% +0.100 to +0.700) against the " \
           "last blessed model's 1.100 (group AF)" in groups
    assert "too small to judge: group XX (20 photos)" in groups
