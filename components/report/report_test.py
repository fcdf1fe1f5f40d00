import io
import re

import numpy as np
import pytest
from PIL import Image

from deepattraction.components.report import plots, report
from deepattraction.components.report.report import Photo, ReportConfig, RunInputs

GENDER_TABLE = ("source_gender,target_gender,likes,swipes,like_ratio\n"
                "female,female,5,50,0.1000\nfemale,male,30,60,0.5000\nmale,female,40,50,0.8000\nmale,male,2,40,0.0500\n")


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (120, 90, 3)).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _run(photos, history=None, metrics_extra=None) -> RunInputs:
    metrics = {"count": len(photos), "ratio_weighted_mse": 0.012, "gender_accuracy": 0.75, "blessed": False,
               "not_blessed_because": ["gender accuracy 0.7500 is not above majority <b>0.8</b>"],
               "baselines": {"constant": 0.4, "gender_constants": {"0": 0.3, "1": 0.5}, "majority_male": 1,
                             "source_gender": {"source_gender=female": {"constant": 0.25,
                                                                        "gender_constants": {"0": 0.1, "1": 0.35}}}},
               "gate": {"eval_split": "test"}, "baseline_model": {"uri": "/x", "ratio_weighted_mse": 0.02},
               "slices": {"female": {"count": 5, "gender_accuracy": 0.6},
                          "male": {"count": 5, "ratio_mae": 0.1, "gender_auc": None}},
               **(metrics_extra or {})}
    return RunInputs(metrics=metrics, photos=photos, images={p.user_id: _jpeg(i) for i, p in enumerate(photos)},
                     data_summary={"users_in": 12, "users_in_splits": {"train": 8, "test": 2}},
                     gender_table=GENDER_TABLE, history=history, model_card_html="<h1>card</h1>")


def _photos(n=10):
    rng = np.random.default_rng(0)
    return [Photo(user_id=f"u{i:02d}", like_ratio=float(rng.uniform()), swipe_count=float(10 + i), male=i % 2,
                  pred_ratio=i / n, pred_male=float(rng.uniform()), face_box=(10, 20, 60, 90), face_count=1)
            for i in range(n)]


def _gallery_ids(page: str, key: str) -> list[str]:
    section = re.search(f'<section class="gallery" id="gallery-{key}">(.*?)</section>', page, re.S).group(1)
    return re.findall(r'<img class="" alt="([^"]+)"', section)


def test_page_has_tables_plots_galleries_and_no_external_references():
    photos = _photos()
    history = {"phases": [{"name": "head", "first_epoch": 0, "epochs": 2, "learning_rate": 1e-3},
                          {"name": "fine_tune", "first_epoch": 2, "epochs": 2, "learning_rate": 1e-5}],
               "history": {"loss": [1, 0.8, 0.7, 0.6], "val_loss": [1.1, 0.9, 0.8, 0.8],
                           "like_ratio_wmse": [.1, .09, .08, .07]}}
    page = report.build_html(_run(photos, history), ReportConfig(gallery_size=3))
    assert _gallery_ids(page, "highest") == ["u09", "u08", "u07"] and _gallery_ids(page, "lowest") == ["u00", "u01",
                                                                                                       "u02"]
    worst = sorted(photos, key=lambda p: -p.gender_log_loss())[:3]
    assert _gallery_ids(page, "gender") == [p.user_id for p in worst]
    assert "like-ratio weighted MSE" in page and "last blessed model" in page and "ratio_mae" not in page  # labelled
    assert "like-ratio MAE" in page and "<td>per-gender constant like ratio, male photos</td><td>0.5</td>" in page
    assert "<td>swiped by women: per-gender constant like ratio, male photos</td><td>0.35</td>" in page
    assert "<td>majority class</td><td>male</td>" in page
    assert "&lt;b&gt;0.8&lt;/b&gt;" in page  # text is escaped
    assert "predicts <b>attractiveness</b>" in page and "<h1>card</h1>" in page
    assert page.count('alt="predicted vs true like ratio"') == 1 and 'alt="calibration curve"' in page
    slices = re.search(r'<table class="slices">(.*?)</table>', page, re.S).group(1)
    assert "<th>all</th><th>female</th><th>male</th>" in slices
    assert "<td>like-ratio MAE</td><td></td><td></td><td>0.1</td>" in slices
    assert "<td>gender ROC AUC</td><td></td><td></td><td>n/a</td>" in slices  # undefined, not "None"
    assert 'alt="training curves"' in page and "fine_tune" in page and 'alt="gender table heat map"' in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # every image inline, no links out
    assert "<script" not in page


def test_missing_history_and_tasks_are_stated_not_fatal():
    photos = [Photo("a", 0.3, 5, 0, pred_male=0.9), Photo("b", 0.6, 7, 1, pred_male=0.2)]
    page = report.build_html(_run(photos), ReportConfig(gallery_size=5))
    assert "wrote no training_history.json" in page
    assert "gallery-highest" not in page and _gallery_ids(page, "gender") == ["a", "b"]
    assert 'alt="predicted vs true like ratio"' not in page and 'alt="calibration curve"' in page


def test_gallery_photo_missing_from_the_split_is_named():
    run = _run(_photos(3))
    del run.images["u01"]
    with pytest.raises(KeyError, match="u01"):
        report.build_html(run)


def test_calibration_bins_weight_by_swipes_and_read_the_evaluators_bins():
    bins = plots.quantile_bins(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 1.0, 1.0, 1.0]),
                                np.array([3.0, 1.0, 1.0, 1.0]), 2)
    assert bins == [pytest.approx((0.125, 0.25, 4.0)), pytest.approx((0.85, 1.0, 2.0))]
    given = [{"count": 4, "swipes": 40.0, "pred_min": 0.1, "pred_mean": 0.2, "observed_mean": 0.25},
             {"count": 3, "swipes": 9.0, "pred_min": 0.6, "pred_mean": 0.7, "observed_mean": 0.6}]
    assert plots.metric_bins(given) == [(0.2, 0.25, 40.0), (0.7, 0.6, 9.0)]
    assert plots.metric_bins({"edges": [0, 1]}) is None


def test_thumbnail_draws_the_face_box():
    grey = io.BytesIO()
    Image.new("RGB", (200, 100), (128, 128, 128)).save(grey, "PNG")
    thumb = Image.open(io.BytesIO(plots.thumbnail(grey.getvalue(), (50, 20, 150, 80), 100)))
    assert thumb.size == (100, 50)
    px = np.asarray(thumb).astype(int)
    assert px[10, 50, 0] > 200 and px[10, 50, 2] < 90  # yellow on the top edge of the box
    small = Image.open(io.BytesIO(plots.thumbnail(grey.getvalue(), None, 400)))
    assert small.size == (400, 200)  # small photos are scaled up to the thumbnail size
    assert abs(px[25, 50] - 128).max() < 20  # grey inside


def test_bad_gender_table_row_is_named():
    with pytest.raises(ValueError, match="line 3"):
        report.gender_cells("source_gender,target_gender,likes,swipes,like_ratio\nf,m,1,2,0.5\nf,f,x,2,0.5\n")


def test_data_section_shows_each_ingest_stages_time():
    run = _run(_photos(3))
    run.data_summary.update(stages={"check_swipes": {"cpu_seconds": 1.5, "start_s": 2.0, "end_s": 3.25},
                                    "photos": {"cpu_seconds": 40.0, "start_s": 5.0, "end_s": 30.0}},
                            wall_seconds={"beam_pipeline": 31.0, "count_splits": 0.5, "total": 31.5})
    page = report.build_html(run, ReportConfig(gallery_size=2))
    times = re.search(r'<table class="times">(.*?)</table>', page, re.S).group(1)
    assert "<td>check_swipes</td><td>1.5</td><td>2</td><td>3.25</td>" in times
    assert "<td>photos</td><td>40</td><td>5</td><td>30</td>" in times
    assert "<td>wall: beam_pipeline</td><td></td><td></td><td>31</td>" in times and "wall: total" in times
    summary = re.search(r'<table class="summary">(.*?)</table>', page, re.S).group(1)
    assert "users_in" in summary and "cpu_seconds" not in summary and "stages" not in summary


def test_headline_gives_the_verdict_the_figures_against_their_baselines_and_the_worst_group():
    extra = {"constant_weighted_mse": 0.03, "mse_ratio": 0.4, "ratio_pearson": 0.7, "majority_accuracy": 0.5,
             "ratio_weighted_mse_ci": [0.01, 0.014], "ratio_calibration": [
                 {"count": 5, "swipes": 50.0, "pred_mean": 0.3, "observed_mean": 0.35},
                 {"count": 5, "swipes": 50.0, "pred_mean": 0.6, "observed_mean": 0.55}],
             "group_gap": {"worst_group": "group=AF", "gap": 1.4, "gap_ci": [1.1, 1.7], "growth": 0.3,
                           "growth_ci": [0.1, 0.5], "tolerance": 0.0, "passed": False, "min_group_photos": 3,
                           "gated": ["group=AF", "group=CM"], "too_small": {"group=XX": 2},
                           "baseline_model": {"worst_group": "group=CM", "gap": 1.1, "gaps": {"group=AF": 1.05}}}}
    run = _run(_photos(), metrics_extra=extra)
    bins = [{"count": 3, "swipes": 30.0, "pred_mean": 0.2, "observed_mean": 0.3},
            {"count": 2, "swipes": 20.0, "pred_mean": 0.7, "observed_mean": 0.6}]
    run.metrics["slices"].update({"group=AF": {"count": 5, "ratio_weighted_mse": 0.0168, "gap": 1.4,
                                               "gap_ci": [1.1, 1.7], "ratio_calibration": bins},
                                  "group=CM": {"count": 4, "ratio_weighted_mse": 0.01, "gap": 0.8,
                                               "ratio_calibration": bins},
                                  "group=XX": {"count": 2, "ratio_weighted_mse": 0.05, "gap": 4.0}})
    page = report.build_html(run, ReportConfig(gallery_size=2))
    headline = re.search(r'<section class="headline" id="headline">(.*?)</section>', page, re.S).group(1)
    assert page.index("</section>") < page.index('<table class="groups">') < page.index('<table class="metrics">')
    assert "NOT BLESSED" in headline and "not above majority &lt;b&gt;0.8&lt;/b&gt;" in headline
    assert "Group gap gate FAILED" in headline
    assert "<td>like-ratio weighted MSE</td><td>0.012 (95% 0.01 to 0.014)</td><td>best constant 0.03</td>" \
           "<td>0.400 x the constant&#x27;s</td>" in headline
    assert "<td>like-ratio Pearson r</td><td>0.7</td>" in headline
    assert "<td>gender accuracy</td><td>0.75</td><td>majority class 0.5</td><td>1.500 x the majority&#x27;s</td>" \
        in headline
    assert "<td>worst group&#x27;s gap: group AF</td><td>weighted MSE 0.0168</td>" in headline
    assert "1.4 (95% 1.1 to 1.7) x the whole split&#x27;s" in headline
    assert 'alt="predicted vs true like ratio"' in headline
    groups = re.search(r'<table class="groups">(.*?)</table>', page, re.S).group(1)
    assert "<td>group AF</td><td>group</td><td>5</td><td>0.0168</td><td>1.4 (95% 1.1 to 1.7)</td><td>1.05</td>" \
        in groups and "judged: worst" in groups and "too few photos (under 3)" in groups
    assert 'alt="per-group calibration curves"' in page


def test_per_group_calibration_overlays_one_curve_per_group_on_the_whole_split():
    bins = [{"count": 3, "swipes": 30.0, "pred_mean": 0.2, "observed_mean": 0.3}]
    metrics = {"ratio_calibration": bins, "slices": {n: {"ratio_calibration": bins} for n in (
        "female", "male", "group=AF", "group=CM", "group=CF", "swipe_count=1-9", "source_gender=male")}}
    fig = plots.group_calibration_figure(metrics)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["by photo's gender", "by group", "by swiper gender"]  # no panel for swipe counts
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["whole split", "female", "male"], ["whole split", "group AF", "group CF", "group CM"],
                       ["whole split", "swiped by men"]]
    assert plots.group_calibration_figure({"slices": {"female": {}}}) is None
