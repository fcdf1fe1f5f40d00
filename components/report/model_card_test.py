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
    assert "| female | 4 |" in text and "| male | 6 |" in text and "| swipe_count=10-29 | 5 |" in text
    assert "| ratio_mae |" in text and "| other |" not in text  # a column when some slice has it; known metrics only
    gaps = text.split("Largest gap between groups:")[1]
    assert gaps.index("source_gender: **gender_auc** differs by 0.3000 (source_gender=female 0.6000, "
                      "source_gender=male 0.9000)") \
        < gaps.index("target gender: **gender_accuracy** differs by 0.2500 (female 0.7500, male 1.0000)") \
        < gaps.index("starred subset: **ratio_weighted_mse** differs by 0.0300 (starred 0.0200, unstarred 0.0500)")
    assert "swipe_count:" not in gaps  # a group of one slice has no gap
