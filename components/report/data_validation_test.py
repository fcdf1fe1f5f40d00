"""The report's data validation section says what was found, what was measured and what blocks."""
from deepattraction.components.data_gate import policy
from deepattraction.components.report import data_validation

VERDICT = {
    "policy": policy.BLOCK_SCHEMA, "blocked": False, "baseline": "/runs/blessing/1",
    "schema_anomalies": {"train": [{"feature": "gender",
                                    "reasons": ["Examples contain values missing from the schema: x"]}],
                         "eval": []},
    "drift": {"measurements": [{"feature": "gender", "measure": "L_INFTY", "value": 0.25, "threshold": 0.1},
                               {"feature": "like_ratio", "measure": "JENSEN_SHANNON_DIVERGENCE", "value": 0.01,
                                "threshold": 0.1}],
              "anomalies": [{"feature": "gender", "reasons": ["The Linfty distance ... is 0.25"]}]},
}


def test_anomalies_drift_and_policy_are_shown():
    html = data_validation.section(VERDICT)
    assert "Schema anomalies in <b>train</b>" in html and "values missing from the schema: x" in html
    assert "<td>gender</td><td>L_INFTY</td><td>0.2500</td><td>0.1</td><td>DRIFT</td>" in html
    assert "<td>like_ratio</td><td>JENSEN_SHANNON_DIVERGENCE</td><td>0.0100</td><td>0.1</td><td>ok</td>" in html
    assert "drift only warns" in html


def test_clean_data_and_a_first_run_say_so():
    clean = {**VERDICT, "schema_anomalies": {"train": [], "eval": []}, "drift": None}
    html = data_validation.section(clean)
    assert "No schema anomalies (eval, train checked by ExampleValidator)" in html
    assert "no blessed run with statistics to compare with yet" in html
    assert "No data validation ran" in data_validation.section(None)


def test_text_from_the_data_is_escaped():
    bad = {**VERDICT, "schema_anomalies": {"train": [{"feature": "gender", "reasons": ["<script>x</script>"]}]}}
    assert "<script>" not in data_validation.section(bad)
