"""The report in real headless Chromium: loads without errors and shows its tables and images."""
import os

from deepattraction.components.report import browser, executor
from deepattraction.components.report.conftest import GALLERY


def test_report_loads_in_chromium_with_every_table_and_image(report_run, tmp_path):
    uri, metrics, rows = report_run
    shot = str(tmp_path / "report.png")
    v = browser.view(os.path.join(uri, executor.REPORT_FILE), screenshot=shot)
    assert v.console_errors == [] and v.page_errors == [] and v.failed_requests == []
    assert v.title == "DeepAttraction run report"
    assert {"metrics", "slices", "gender", "summary", "baselines", "phases"} <= set(v.tables)
    assert "like-ratio weighted MSE" in v.tables["metrics"] and "gender accuracy" in v.tables["metrics"]
    assert all(name in v.tables["slices"] for name in metrics["slices"])
    assert "female\tmale" in v.tables["gender"] and "male\tfemale" in v.tables["gender"]
    shown = min(GALLERY, len(rows))
    assert v.galleries == {"gallery-highest": shown, "gallery-lowest": shown, "gallery-gender": shown}
    assert len(v.images) == 3 * shown + 4  # the thumbnails, 3 plots and the heat map
    assert all(i["complete"] and i["width"] > 0 for i in v.images), v.images
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("REPORT_SCREENSHOT"):  # a copy for a human to look at
        v = browser.view(os.path.join(uri, executor.REPORT_FILE), screenshot=os.environ["REPORT_SCREENSHOT"])
