"""The report in real headless Chromium: loads without errors and shows its tables and images,
the headline on the first screen above every other table, and the per-group curves and gaps."""
import os

from deepattraction.components.report import browser, executor
from deepattraction.components.report.conftest import GALLERY
from deepattraction.components.report.labels import slice_label


def test_report_loads_in_chromium_with_every_table_and_image(report_run, tmp_path):
    uri, metrics, rows = report_run
    shot = str(tmp_path / "report.png")
    v = browser.view(os.path.join(uri, executor.REPORT_FILE), screenshot=shot)
    assert v.console_errors == [] and v.page_errors == [] and v.failed_requests == []
    assert v.title == "DeepAttraction run report"
    assert {"headline", "groups", "metrics", "slices", "gender", "summary", "baselines", "phases"} <= set(v.tables)
    assert "like-ratio weighted MSE" in v.tables["metrics"] and "gender accuracy" in v.tables["metrics"]
    assert all(slice_label(name) in v.tables["slices"] for name in metrics["slices"])
    assert "female\tmale" in v.tables["gender"] and "male\tfemale" in v.tables["gender"]
    shown = min(GALLERY, len(rows))
    assert v.galleries == {"gallery-highest": shown, "gallery-lowest": shown, "gallery-gender": shown}
    assert len(v.images) == 3 * shown + 5  # the thumbnails, 4 plots and the heat map
    assert all(i["complete"] and i["width"] > 0 for i in v.images), v.images
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("REPORT_SCREENSHOT"):  # a copy for a human to look at
        v = browser.view(os.path.join(uri, executor.REPORT_FILE), screenshot=os.environ["REPORT_SCREENSHOT"])


def test_the_first_screen_is_the_headline_and_the_groups_follow(report_run):
    uri, metrics, _ = report_run
    v = browser.view(os.path.join(uri, executor.REPORT_FILE))
    assert v.tops["headline"] < v.viewport_height and v.tops["headline"] < v.tops["groups"] < v.tops["metrics"]
    head = v.tables["headline"]
    worst = metrics["group_gap"]["worst_group"]
    for text in ("like-ratio weighted MSE", "best constant", "Pearson", "gender accuracy", "majority class",
                 f"worst group's gap: {slice_label(worst)}"):
        assert text in head, text
    plots = [i["alt"] for i in v.images]
    assert plots.index("predicted vs true like ratio") < plots.index("per-group calibration curves")
    groups = v.tables["groups"]
    assert "whole split" in groups and "judged: worst" in groups
    for name in ("female", "male", "starred", "unstarred", "source_gender=female", "source_gender=male"):
        assert slice_label(name) in groups, name
