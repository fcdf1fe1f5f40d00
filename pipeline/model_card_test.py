from deepattraction.pipeline import model_card


def test_card_says_what_it_predicts_and_reports_slices_and_the_largest_gap():
    metrics = {"count": 10, "ratio_weighted_mse": 0.02, "constant_weighted_mse": 0.04, "gender_accuracy": 0.9,
               "majority_accuracy": 0.6, "blessed": True, "gate": {},
               "slices": {"female": {"count": 4, "ratio_weighted_mse": 0.01, "gender_accuracy": 0.75},
                          "male": {"count": 6, "ratio_weighted_mse": 0.03, "gender_accuracy": 1.0}}}
    text = model_card.render(metrics, {"users_in": 12, "users_in_splits": {"test": 10}, "users_rejected": 2,
                                       "swipes_before_update": 3}, "source_gender,target_gender\n")
    assert "predicts attractiveness (as a like ratio) and gender from a face photo" in text
    assert "## Out of scope" in text and "| female | 4 |" in text and "| male | 6 |" in text
    assert "Largest gap between the gender groups: **gender_accuracy** differs by 0.2500" in text
