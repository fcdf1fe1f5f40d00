"""One self-contained HTML page per run, built from plain dicts and arrays (testable without TFX):
metrics and slices, the data summary and gender table, plots, photo galleries and the model card.
Every image is an inline data URI and the CSS is inline, so the file can be mailed or archived
alone; there is no script."""
from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import math
import pathlib

from deepattraction.components.report import data_validation, plots

MIME_PNG, MIME_JPEG = "image/png", "image/jpeg"

# Friendly names for the evaluator's keys; any other key is shown as it is spelt.
METRIC_LABELS = {
    "count": "photos",
    "train_count": "training photos",
    "ratio_weighted_mse": "like-ratio weighted MSE",
    "constant_weighted_mse": "weighted MSE of the best constant",
    "gender_constant_weighted_mse": "weighted MSE of the per-gender constant",
    "mse_ratio": "weighted MSE / constant's",
    "constant": "best constant like ratio",
    "ratio_mae": "like-ratio MAE",
    "ratio_weighted_mae": "like-ratio weighted MAE",
    "ratio_pearson": "like-ratio Pearson r",
    "ratio_spearman": "like-ratio Spearman rho",
    "gender_accuracy": "gender accuracy",
    "gender_log_loss": "gender log-loss",
    "gender_auc": "gender ROC AUC",
    "majority_accuracy": "majority-class accuracy",
    "ratio_mse": "like-ratio MSE (unweighted)",
    "ratio_weighted_pearson": "like-ratio weighted Pearson r",
    "ratio_ece": "like-ratio calibration error (ECE)",
    "prior_log_loss": "gender log-loss of the training prior",
    "gender_constant_mse_ratio": "weighted MSE / per-gender constant's",
}


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """gallery_size photos in each gallery; thumbnails thumb_px on their longer side."""

    gallery_size: int = 8
    thumb_px: int = 176
    calibration_bins: int = 10


@dataclasses.dataclass(frozen=True)
class Photo:
    """One evaluated photo: its labels and the model's predictions (None where the model lacks a task)."""

    user_id: str
    like_ratio: float
    swipe_count: float
    male: int
    pred_ratio: float | None = None
    pred_male: float | None = None
    face_box: tuple[float, float, float, float] | None = None  # x1 y1 x2 y2 in the photo's pixels
    face_count: int | None = None

    def gender_log_loss(self) -> float:
        p = min(max(self.pred_male, 1e-7), 1 - 1e-7)
        return -math.log(p if self.male else 1 - p)


@dataclasses.dataclass
class RunInputs:
    """Everything a report shows; each part comes from one pipeline artifact."""

    metrics: dict
    photos: list[Photo]
    images: dict  # user_id -> encoded photo bytes (at least the gallery photos)
    data_summary: dict
    gender_table: str  # gender_table.csv text
    history: dict | None  # the Trainer's training_history.json; None when the run wrote none
    model_card_html: str
    data_validation: dict | None = None  # DataGate's verdict; None when no validation ran
    title: str = "DeepAttraction run report"


def gender_cells(text: str) -> list[dict]:
    """gender_table.csv rows as dicts with numbers."""
    rows = []
    for i, r in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            rows.append({"source": r["source_gender"], "target": r["target_gender"], "likes": int(r["likes"]),
                         "swipes": int(r["swipes"]), "like_ratio": float(r["like_ratio"])})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"gender table line {i}: {e!r} in {r}") from None
    return rows


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def fmt(v) -> str:
    if v is None:  # a metric undefined on a slice (e.g. AUC with one class)
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def is_scalar(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(header: list[str], rows: list[list], cls: str = "") -> str:
    """Cells are escaped here; a cell given as ("html", markup) is inserted as it is."""
    def cell(v, tag):
        return f"<{tag}>{v[1] if isinstance(v, tuple) else esc(fmt(v))}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def img(data: bytes, mime: str, alt: str, cls: str = "") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="{data_uri(data, mime)}">'


def metrics_table(metrics: dict) -> str:
    """The run's scalar metrics, with the last blessed model's beside them when it was scored."""
    last = metrics.get("baseline_model") or {}
    keys = [k for k, v in metrics.items() if is_scalar(v)]
    header = ["metric", "this model"] + (["last blessed model"] if last else [])
    rows = [[label(k), metrics[k]] + ([last.get(k, "")] if last else []) for k in keys]
    return table(header, rows, "metrics")


def slices_table(metrics: dict, slices: dict) -> str:
    """One row per metric, one column per slice (after "all"): slices are few, metrics many."""
    cols = {"all": metrics, **slices}
    keys = []
    for m in slices.values():
        keys += [k for k, v in m.items() if (is_scalar(v) or v is None) and k not in keys]
    return table(["metric"] + list(cols), [[label(k)] + [m.get(k, "") for m in cols.values()] for k in keys], "slices")


def baselines_table(base: dict) -> str:
    """One row per value; nested baselines (per gender, per swiper gender) as "key [sub] [subsub]"."""
    def flat(prefix, v):
        if not isinstance(v, dict):
            return [[prefix, v]]
        return [r for sub, sv in v.items() for r in flat(f"{prefix} [{sub}]", sv)]

    rows = [r for k, v in base.items() for r in flat(k, v)]
    return table(["baseline (from the training split)", "value"], rows, "baselines")


TIMED = ("stages", "wall_seconds")  # summary.json's times, shown in their own table


def summary_table(summary: dict) -> str:
    rows = [[k, ", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else v]
            for k, v in summary.items() if k not in TIMED]
    return table(["data", "count"], rows, "summary")


def times_table(summary: dict) -> str:
    """SwipeExampleGen's stages (CPU seconds over all workers; wall clock from the pipeline's
    start) and its wall times; empty for a summary written before stages were timed."""
    stages, wall = summary.get("stages") or {}, summary.get("wall_seconds") or {}
    if not stages and not wall:
        return ""
    rows = [[k, v.get("cpu_seconds"), v.get("start_s"), v.get("end_s")] for k, v in stages.items()]
    rows += [[f"wall: {k}", "", "", v] for k, v in wall.items()]
    return table(["SwipeExampleGen stage", "CPU s", "from s", "to s"], rows, "times")


def gender_table_html(cells: list[dict]) -> str:
    return table(["source gender (swiper)", "target gender (photo)", "likes", "swipes", "like ratio"],
                 [[c["source"], c["target"], c["likes"], c["swipes"], c["like_ratio"]] for c in cells], "gender")


def caption(p: Photo) -> str:
    gender = "male" if p.male else "female"
    lines = [f"<b>{esc(p.user_id)}</b>",
             f"true {p.like_ratio:.3f} &middot; {int(p.swipe_count)} swipes &middot; {gender}"]
    pred = []
    if p.pred_ratio is not None:
        pred.append(f"pred {p.pred_ratio:.3f}")
    if p.pred_male is not None:
        pred.append(f"P(male) {p.pred_male:.2f}")
    if p.face_count is not None:
        pred.append(f"{p.face_count} face{'s' if p.face_count != 1 else ''}")
    return "<br>".join(lines + ([" &middot; ".join(pred)] if pred else []))


def gallery(title: str, note: str, photos: list[Photo], images: dict, cfg: ReportConfig, key: str) -> str:
    items = []
    for p in photos:
        if p.user_id not in images:
            raise KeyError(f"no photo for user {p.user_id!r} in the evaluated split")
        box = p.face_box if p.face_count and p.face_box and any(p.face_box) else None
        thumb = img(plots.thumbnail(images[p.user_id], box, cfg.thumb_px), MIME_JPEG, p.user_id)
        items.append(f'<figure class="thumb">{thumb}'
                     f"<figcaption>{caption(p)}</figcaption></figure>")
    return (f'<section class="gallery" id="gallery-{key}"><h3>{esc(title)}</h3><p class="note">{esc(note)}</p>'
            f'<div class="thumbs">{"".join(items)}</div></section>')


def gallery_photos(photos: list[Photo], cfg: ReportConfig) -> dict[str, list[Photo]]:
    """Each gallery's photos, in order: the highest and lowest predicted like ratio, the worst
    gender log-loss; a gallery the model has no task for is absent."""
    n, out = cfg.gallery_size, {}
    ranked = sorted((p for p in photos if p.pred_ratio is not None), key=lambda p: (p.pred_ratio, p.user_id))
    if ranked:
        out["highest"], out["lowest"] = ranked[::-1][:n], ranked[:n]
    gender = [p for p in photos if p.pred_male is not None]
    if gender:
        out["gender"] = sorted(gender, key=lambda p: (-p.gender_log_loss(), p.user_id))[:n]
    return out


GALLERY_TITLES = {"highest": ("Highest predicted like ratio", "with their true labels"),
                  "lowest": ("Lowest predicted like ratio", "with their true labels"),
                  "gender": ("Worst gender log-loss", "the most confidently wrong gender predictions")}


def galleries(photos: list[Photo], images: dict, cfg: ReportConfig) -> str:
    return "".join(gallery(*GALLERY_TITLES[key], shown, images, cfg, key)
                   for key, shown in gallery_photos(photos, cfg).items())


def gallery_ids(photos: list[Photo], cfg: ReportConfig) -> set[str]:
    """The photos the galleries show: the only ones whose bytes the executor needs to read."""
    return {p.user_id for shown in gallery_photos(photos, cfg).values() for p in shown}


CSS = (pathlib.Path(__file__).parent / "report.css").read_text()  # inlined into every page


def _plot(data: bytes | None, alt: str) -> str:
    return img(data, MIME_PNG, alt, "plot") if data else ""


def build_html(run: RunInputs, cfg: ReportConfig = ReportConfig()) -> str:
    m = run.metrics
    cells = gender_cells(run.gender_table)
    blessed = bool(m.get("blessed"))
    reasons = "".join(f"<li>{esc(r)}</li>" for r in m.get("not_blessed_because") or [])
    history_plot = plots.training_plot(run.history) if run.history else None
    phases = table(["phase", "first epoch", "epochs", "learning rate"],
                   [[p.get("name"), p.get("first_epoch"), p.get("epochs"), p.get("learning_rate")]
                    for p in run.history.get("phases", [])], "phases") if run.history else ""
    training = (_plot(history_plot, "training curves") + phases if history_plot else
                '<p class="note">No training history: this run\'s Trainer wrote no training_history.json.</p>'
                if run.history is None else '<p class="note">The training history has no curves.</p>')
    slices = m.get("slices") or {}
    body = f"""
<h1>{esc(run.title)}</h1>
<p class="warning">This model predicts <b>attractiveness</b> (the like ratio a photo received) and <b>gender</b>
from faces. It reflects the tastes of the people who swiped; see the model card below for what it must not be
used for.</p>
<p><span class="status {'blessed' if blessed else 'not-blessed'}">{'BLESSED' if blessed else 'NOT BLESSED'}</span>
{f'<ul class="reasons">{reasons}</ul>' if reasons else ''}</p>
<h2 id="metrics">Metrics on the {esc((m.get('gate') or {}).get('eval_split', 'test'))} split</h2>
{metrics_table(m)}
{baselines_table(m['baselines']) if isinstance(m.get('baselines'), dict) else ''}
<h2 id="slices">Slices</h2>
{slices_table(m, slices) if slices else '<p class="note">No slices.</p>'}
<h2 id="data">Data</h2>
<div class="cols"><div>{summary_table(run.data_summary)}{times_table(run.data_summary)}</div>
<div><h3>Like ratio by source x target gender</h3>{gender_table_html(cells)}</div>
<div>{_plot(plots.gender_heatmap(cells), 'gender table heat map')}</div></div>
<h3 id="data-validation">Data validation</h3>
{data_validation.section(run.data_validation)}
<h2 id="plots">Predictions</h2>
<div class="plots">{_plot(plots.scatter_plot(run.photos), 'predicted vs true like ratio')}
{_plot(plots.calibration_plot(run.photos, m, cfg.calibration_bins), 'calibration curve')}</div>
<h2 id="training">Training</h2>
{training}
<h2 id="galleries">Galleries</h2>
<p class="note">Yellow box: the face the model's detector counted. Captions: true like ratio, swipes and
gender, then the predictions.</p>
{galleries(run.photos, run.images, cfg)}
<h2 id="model-card">Model card</h2>
<div class="card">{run.model_card_html}</div>
"""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(run.title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")
