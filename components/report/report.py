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

from deepattraction.components.evaluator.fairness import GATED_DIMENSIONS, GROUP_DIMENSIONS, slice_dimension
from deepattraction.components.report import data_validation, plots
from deepattraction.components.report.labels import dimension_label, gate_text, label, slice_label

MIME_PNG, MIME_JPEG = "image/png", "image/jpeg"

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
    recipe_line: str | None = None  # the run's recipe and what it changed (recipes.describe)


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


def with_ci(v, ci) -> str:
    """A figure with its 95% interval, when it has one."""
    return fmt(v) if not ci else f"{fmt(v)} (95% {fmt(ci[0])} to {fmt(ci[1])})"


def metrics_table(metrics: dict) -> str:
    """The run's scalar metrics under their labels, with the interval where the evaluator gave one
    and the last blessed model's value beside them when it was scored."""
    last = metrics.get("baseline_model") or {}
    keys = [k for k, v in metrics.items() if is_scalar(v)]
    header = ["metric", "this model"] + (["last blessed model"] if last else [])
    rows = [[label(k), with_ci(metrics[k], metrics.get(f"{k}_ci"))] + ([last.get(k, "")] if last else [])
            for k in keys]
    return table(header, rows, "metrics")


def slices_table(metrics: dict, slices: dict) -> str:
    """One row per metric, one column per slice (after "all"): slices are few, metrics many."""
    cols = {"all": metrics, **slices}
    keys = []
    for m in slices.values():
        keys += [k for k, v in m.items() if (is_scalar(v) or v is None) and k not in keys]
    return table(["metric"] + [slice_label(c) for c in cols],
                 [[label(k)] + [m.get(k, "") for m in cols.values()] for k in keys], "slices")


def baseline_rows(base: dict, prefix: str = "") -> list[list]:
    """Each baseline value under a label; a swiper gender's own baselines under its slice's label."""
    gender = {"0": "female", "1": "male"}
    rows = []
    for k, v in base.items():
        if k == "constant":
            rows.append([f"{prefix}best constant like ratio", v])
        elif k == "gender_constants":
            rows += [[f"{prefix}per-gender constant like ratio, {gender.get(str(g), g)} photos", c]
                     for g, c in v.items()]
        elif k == "majority_male":
            rows.append([f"{prefix}majority class", "male" if v else "female"])
        elif k == "male_share":
            rows.append([f"{prefix}share of men", v])
        elif k == "source_gender" and isinstance(v, dict):
            for name, own in v.items():
                rows += baseline_rows(own, f"{slice_label(name)}: ")
        else:
            rows.append([f"{prefix}{label(k)}", v if not isinstance(v, dict) else ", ".join(map(str, v.values()))])
    return rows


def baselines_table(base: dict) -> str:
    return table(["baseline (from the training split)", "value"], baseline_rows(base), "baselines")


def gap_gate_text(gap: dict | None) -> str:
    """Whether the group-gap gate passed, in words."""
    if not gap:
        return "Group gap gate: not applied (no like-ratio predictions to judge)."
    if "worst_group" not in gap:
        return f"Group gap gate: not applied (no group has {gap.get('min_group_photos')} photos in this split)."
    if "growth_ci" not in gap:
        return "Group gap gate: not applied (no blessed model before this one to compare with)."
    last, (lo, hi) = gap["baseline_model"], gap["growth_ci"]
    state = "passed" if gap.get("passed", lo <= gap.get("tolerance", 0)) else "FAILED"
    return (f"Group gap gate {state}: the worst group's gap grew by {gap['growth']:+.2f} (95% {lo:+.2f} to "
            f"{hi:+.2f}) against the last blessed model's {last['gap']:.2f} ({slice_label(last['worst_group'])}); "
            f"tolerance {gap.get('tolerance', 0):g}.")


def headline(m: dict, scatter: bytes | None, recipe_line: str | None = None) -> str:
    """The first screen: the verdict and why, the like ratio against the constant, Pearson, gender
    accuracy against the majority, the worst group's gap, and the predicted-vs-true plot."""
    blessed = bool(m.get("blessed"))
    reasons = m.get("not_blessed_because") or []
    if blessed:
        why = ("It beats the best constant like ratio and the majority class by the gate's margins"
               + (" and does not regress against the last blessed model." if m.get("baseline_model") else
                  "; there was no blessed model before it to compare with."))
    else:
        why = "Not blessed because:"
    rows = []
    if is_scalar(m.get("ratio_weighted_mse")):
        rows.append([label("ratio_weighted_mse"), with_ci(m["ratio_weighted_mse"], m.get("ratio_weighted_mse_ci")),
                     f"best constant {fmt(m.get('constant_weighted_mse'))}",
                     f"{m['mse_ratio']:.3f} x the constant's" if is_scalar(m.get("mse_ratio")) else ""])
    if "ratio_pearson" in m:
        rows.append([label("ratio_pearson"), m["ratio_pearson"],
                     f"per-gender constant {fmt(m.get('gender_constant_pearson'))}", ""])
    if is_scalar(m.get("gender_accuracy")):
        maj = m.get("majority_accuracy")
        rows.append([label("gender_accuracy"), with_ci(m["gender_accuracy"], m.get("gender_accuracy_ci")),
                     f"majority class {fmt(maj)}",
                     f"{m['gender_accuracy'] / maj:.3f} x the majority's" if is_scalar(maj) and maj else ""])
    gap = m.get("group_gap") or {}
    if gap.get("worst_group"):
        worst = gap["worst_group"]
        rows.append([f"worst group's gap: {slice_label(worst)}",
                     f"weighted MSE {fmt((m.get('slices') or {}).get(worst, {}).get('ratio_weighted_mse'))}",
                     f"whole split {fmt(m.get('ratio_weighted_mse'))}",
                     f"{with_ci(gap['gap'], gap.get('gap_ci'))} x the whole split's"])
    items = "".join(f"<li>{esc(r)}</li>" for r in reasons)
    plot = _plot(scatter, "predicted vs true like ratio")
    return f"""<section class="headline" id="headline">
<p><span class="status {'blessed' if blessed else 'not-blessed'}">{'BLESSED' if blessed else 'NOT BLESSED'}</span>
<span class="why">{esc(why)}</span></p>
{f'<ul class="reasons">{items}</ul>' if items else ''}
{f'<p class="recipe">Trained with {esc(recipe_line)}.</p>' if recipe_line else ''}
<p class="gap-gate">{esc(gap_gate_text(m.get('group_gap')))}</p>
<div class="cols"><div>{table(["headline", "figure", "against", "ratio"], rows, "headline") if rows else ''}</div>
<div>{plot}</div></div></section>"""


def group_rows(m: dict) -> list[list]:
    """The whole split, then each group slice: figures with intervals and whether the gap gate judged it."""
    gap = m.get("group_gap") or {}
    gated, small = set(gap.get("gated") or []), gap.get("too_small") or {}
    last_gaps = (gap.get("baseline_model") or {}).get("gaps") or {}

    def gate_cell(name):
        if name == gap.get("worst_group"):
            return "judged: worst"
        if name in gated:
            return "judged"
        if name in small:
            return f"too few photos (under {gap.get('min_group_photos')})"
        if slice_dimension(name) == "source_gender":
            return "not gated: scored on that gender's own like ratio"
        if slice_dimension(name) == "starred subset":
            return "not gated: set by each model's own face count"
        return "not gated"

    def row(name, s, by):
        return [slice_label(name) if name != "all" else "whole split", by, s.get("count", ""),
                with_ci(s.get("ratio_weighted_mse"), s.get("ratio_weighted_mse_ci")),
                with_ci(s.get("gap", 1.0 if name == "all" else None), s.get("gap_ci")),
                last_gaps.get(name, ""), with_ci(s.get("ratio_ece"), s.get("ratio_ece_ci")),
                with_ci(s.get("gender_accuracy"), s.get("gender_accuracy_ci")),
                gate_cell(name) if name != "all" else ""]

    slices = m.get("slices") or {}
    names = sorted((n for n in slices if slice_dimension(n) in GROUP_DIMENSIONS),
                   key=lambda n: (GROUP_DIMENSIONS.index(slice_dimension(n)), n))
    return [row("all", m, "")] + [row(n, slices[n], dimension_label(slice_dimension(n))) for n in names]


def groups_section(m: dict) -> str:
    gap = m.get("group_gap") or {}
    if not any(slice_dimension(n) in GROUP_DIMENSIONS for n in m.get("slices") or {}):
        return '<p class="note">No group slices.</p>'
    dims = ", ".join(dimension_label(d) for d in GATED_DIMENSIONS)
    note = (f"Gap: a group's like-ratio weighted MSE over the whole split's. Intervals: 95% bootstrap "
            f"({gap.get('resamples', '?')} resamples of the photos, seed {gap.get('seed', '?')}). The gap gate judges "
            f"groups by {dims} with at least {gap.get('min_group_photos', '?')} photos.")
    head = ["group", "by", "photos", "weighted MSE", "gap to whole split", "last blessed model's gap",
            "calibration error (ECE)", "gender accuracy", "gap gate"]
    return (f'<p class="note">{esc(note)}</p>{table(head, group_rows(m), "groups")}'
            f'<div class="plots">{_plot(plots.group_calibration_plot(m), "per-group calibration curves")}</div>')


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
    history_plot = plots.training_plot(run.history) if run.history else None
    phases = table(["phase", "first epoch", "epochs", "learning rate"],
                   [[p.get("name"), p.get("first_epoch"), p.get("epochs"), p.get("learning_rate")]
                    for p in run.history.get("phases", [])], "phases") if run.history else ""
    training = (_plot(history_plot, "training curves") + phases if history_plot else
                '<p class="note">No training history: this run\'s Trainer wrote no training_history.json.</p>'
                if run.history is None else '<p class="note">The training history has no curves.</p>')
    slices = m.get("slices") or {}
    gate = m.get("gate") or {}
    body = f"""
<h1>{esc(run.title)}</h1>
<p class="warning">This model predicts <b>attractiveness</b> (the like ratio a photo received) and <b>gender</b>
from faces. It reflects the tastes of the people who swiped; see the model card below for what it must not be
used for.</p>
{headline(m, plots.scatter_plot(run.photos), run.recipe_line)}
<h2 id="groups">Groups</h2>
{groups_section(m)}
<h2 id="metrics">Metrics on the {esc(gate.get('eval_split', 'test'))} split</h2>
{f'<p class="note">Gate: {esc(gate_text(gate))}.</p>' if gate_text(gate) else ''}
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
<h2 id="plots">Calibration</h2>
<div class="plots">{_plot(plots.calibration_plot(run.photos, m, cfg.calibration_bins), 'calibration curve')}</div>
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
