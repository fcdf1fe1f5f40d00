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

import numpy as np

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


# ---------- formatting ----------

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


# ---------- tables ----------

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
        return [r for sub, sv in v.items() for r in flat(f"{prefix} [{sub}]", sv)] if isinstance(v, dict) else [[prefix, v]]

    rows = [r for k, v in base.items() for r in flat(k, v)]
    return table(["baseline (from the training split)", "value"], rows, "baselines")


def summary_table(summary: dict) -> str:
    rows = []
    for k, v in summary.items():
        rows.append([k, ", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else v])
    return table(["data", "count"], rows, "summary")


def gender_table_html(cells: list[dict]) -> str:
    return table(["source gender (swiper)", "target gender (photo)", "likes", "swipes", "like ratio"],
                 [[c["source"], c["target"], c["likes"], c["swipes"], c["like_ratio"]] for c in cells], "gender")


# ---------- plots ----------

def _figure(w: float = 4.6, h: float = 3.6):
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def scatter_plot(photos: list[Photo]) -> bytes | None:
    pts = [p for p in photos if p.pred_ratio is not None]
    if not pts:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    true, pred = np.array([p.like_ratio for p in pts]), np.array([p.pred_ratio for p in pts])
    size = 8 + 40 * np.sqrt(np.array([p.swipe_count for p in pts]) / max(max(p.swipe_count for p in pts), 1))
    colors = ["tab:blue" if p.male else "tab:red" for p in pts]
    ax.scatter(true, pred, s=size, c=colors, alpha=0.6, edgecolors="none")
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = true")
    ax.set(xlabel="true like ratio", ylabel="predicted like ratio",
           title="Predicted vs true (red female, blue male; size ~ swipes)")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def quantile_bins(pred: np.ndarray, true: np.ndarray, weight: np.ndarray, bins: int) -> list[tuple[float, float, float]]:
    """(mean predicted, mean true, total weight) per bin of equally many photos, weight-averaged."""
    order = np.argsort(pred, kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, len(order))):
        w = weight[idx]
        if len(idx) and w.sum() > 0:
            out.append((float(np.average(pred[idx], weights=w)), float(np.average(true[idx], weights=w)), float(w.sum())))
    return out


CAL_PRED, CAL_TRUE, CAL_WEIGHT = ("pred_mean", "mean_pred", "mean_predicted"), \
    ("observed_mean", "true_mean", "mean_true", "mean_observed"), ("swipes", "weight", "count")


def metric_bins(calibration) -> list[tuple[float, float, float]] | None:
    """The evaluator's like-ratio bins (a list of dicts with a mean prediction, a mean observed
    value and a weight, e.g. pred_mean / observed_mean / swipes) as (pred, true, weight); else None."""
    if not isinstance(calibration, list) or not calibration or not all(isinstance(b, dict) for b in calibration):
        return None

    def pick(b, names):
        return next((b[k] for k in names if is_scalar(b.get(k))), None)

    bins = [(pick(b, CAL_PRED), pick(b, CAL_TRUE), pick(b, CAL_WEIGHT) or 1) for b in calibration]
    return bins if all(p is not None and t is not None for p, t, _ in bins) else None


def calibration_plot(photos: list[Photo], metrics: dict, bins: int) -> bytes | None:
    """Like ratio (bins weighted by swipes) and P(male) against what was observed."""
    ratio = [p for p in photos if p.pred_ratio is not None]
    gender = [p for p in photos if p.pred_male is not None]
    if not ratio and not gender:
        return None
    fig = _figure(4.6, 3.6)
    ax = fig.add_subplot()
    if ratio:
        given = metric_bins(metrics.get("ratio_calibration", metrics.get("calibration")))
        b = given or quantile_bins(np.array([p.pred_ratio for p in ratio]), np.array([p.like_ratio for p in ratio]),
                                   np.array([p.swipe_count for p in ratio], dtype=float), bins)
        ax.plot([x for x, _, _ in b], [y for _, y, _ in b], "o-", color="tab:purple",
                label="like ratio" + (" (evaluator's bins)" if given else " (swipe-weighted)"))
    if gender:
        b = quantile_bins(np.array([p.pred_male for p in gender]), np.array([float(p.male) for p in gender]),
                          np.ones(len(gender)), bins)
        ax.plot([x for x, _, _ in b], [y for _, y, _ in b], "s-", color="tab:green", label="P(male): share male")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted", ylabel="mean observed",
           title="Calibration (bins of photos by prediction)")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def training_plot(history: dict) -> bytes | None:
    """One panel per metric (train and val_ together), phase starts marked."""
    curves = {k: v for k, v in (history.get("history") or {}).items() if isinstance(v, list) and v}
    names = [k for k in curves if not k.startswith("val_")] + [k[4:] for k in curves if k.startswith("val_") and k[4:] not in curves]
    if not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(3.3 * cols, 2.5 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in curves:
                ax.plot(range(1, len(curves[key]) + 1), curves[key], style, marker=".", label=key)
        for ph in history.get("phases", [])[1:]:
            ax.axvline(ph["first_epoch"] + 0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    return _png(fig)


def gender_heatmap(cells: list[dict]) -> bytes | None:
    if not cells:
        return None
    src = sorted({c["source"] for c in cells})
    tgt = sorted({c["target"] for c in cells})
    grid = np.full((len(src), len(tgt)), np.nan)
    fig = _figure(3.8, 3.0)
    ax = fig.add_subplot()
    for c in cells:
        grid[src.index(c["source"]), tgt.index(c["target"])] = c["like_ratio"]
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(float(np.nanmax(grid)), 1e-6))
    for c in cells:
        i, j = src.index(c["source"]), tgt.index(c["target"])
        ax.text(j, i, f"{c['like_ratio']:.3f}\n{c['swipes']} swipes", ha="center", va="center", fontsize=8,
                color="white" if c["like_ratio"] < 0.6 * np.nanmax(grid) else "black")
    ax.set_xticks(range(len(tgt)), tgt)
    ax.set_yticks(range(len(src)), src)
    ax.set(xlabel="target gender (photo)", ylabel="source gender (swiper)", title="Like ratio by source x target")
    ax.title.set_fontsize(9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


# ---------- galleries ----------

def thumbnail(data: bytes, box, px: int) -> bytes:
    """The photo scaled to px on its longer side (up or down) as JPEG, the detected face box drawn on it."""
    from PIL import Image, ImageDraw

    im = Image.open(io.BytesIO(data)).convert("RGB")
    scale = px / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    if box is not None:
        ImageDraw.Draw(im).rectangle([float(v) * scale for v in box], outline=(255, 220, 0), width=2)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def caption(p: Photo) -> str:
    gender = "male" if p.male else "female"
    lines = [f"<b>{esc(p.user_id)}</b>", f"true {p.like_ratio:.3f} &middot; {int(p.swipe_count)} swipes &middot; {gender}"]
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
        items.append(f'<figure class="thumb">{img(thumbnail(images[p.user_id], box, cfg.thumb_px), MIME_JPEG, p.user_id)}'
                     f"<figcaption>{caption(p)}</figcaption></figure>")
    return (f'<section class="gallery" id="gallery-{key}"><h3>{esc(title)}</h3><p class="note">{esc(note)}</p>'
            f'<div class="thumbs">{"".join(items)}</div></section>')


def galleries(photos: list[Photo], images: dict, cfg: ReportConfig) -> str:
    n = cfg.gallery_size
    parts = []
    ratio = [p for p in photos if p.pred_ratio is not None]
    if ratio:
        ranked = sorted(ratio, key=lambda p: (p.pred_ratio, p.user_id))
        parts.append(gallery("Highest predicted like ratio", "with their true labels", ranked[::-1][:n], images, cfg, "highest"))
        parts.append(gallery("Lowest predicted like ratio", "with their true labels", ranked[:n], images, cfg, "lowest"))
    gender = [p for p in photos if p.pred_male is not None]
    if gender:
        worst = sorted(gender, key=lambda p: (-p.gender_log_loss(), p.user_id))[:n]
        parts.append(gallery("Worst gender log-loss", "the most confidently wrong gender predictions", worst, images, cfg,
                             "gender"))
    return "".join(parts)


def gallery_ids(photos: list[Photo], cfg: ReportConfig) -> set[str]:
    """The photos the galleries show: the only ones whose bytes the executor needs to read."""
    n, ids = cfg.gallery_size, set()
    ratio = sorted((p for p in photos if p.pred_ratio is not None), key=lambda p: (p.pred_ratio, p.user_id))
    ids |= {p.user_id for p in ratio[:n] + ratio[::-1][:n]}
    ids |= {p.user_id for p in sorted((p for p in photos if p.pred_male is not None),
                                      key=lambda p: (-p.gender_log_loss(), p.user_id))[:n]}
    return ids


# ---------- page ----------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1em 1.5em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.warning{background:#fff4e5;border-left:4px solid #f0a020;padding:.6em 1em}
.status{padding:.4em .8em;border-radius:4px;display:inline-block;font-weight:bold}
.blessed{background:#e3f5e1;color:#1c6b16}.not-blessed{background:#fde2e1;color:#8a1c17}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
table.slices{display:block;overflow-x:auto;max-width:100%}th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots img{border:1px solid #ddd;max-width:100%}.thumbs{display:flex;flex-wrap:wrap;gap:.6em}
.thumb{margin:0;width:184px;font-size:.75em;line-height:1.3}.thumb img{display:block;max-width:176px;border:1px solid #ccc}
.note{color:#666;margin:.2em 0}.card{background:#fafafa;border:1px solid #e5e5e5;padding:.2em 1.2em}
.card{overflow-x:auto}.card table{font-size:.8em}.card pre{background:#f0f0f0;padding:.5em}.cols{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
"""


def _plot(data: bytes | None, alt: str) -> str:
    return img(data, MIME_PNG, alt, "plot") if data else ""


def build_html(run: RunInputs, cfg: ReportConfig = ReportConfig()) -> str:
    m = run.metrics
    cells = gender_cells(run.gender_table)
    blessed = bool(m.get("blessed"))
    reasons = "".join(f"<li>{esc(r)}</li>" for r in m.get("not_blessed_because") or [])
    history_plot = training_plot(run.history) if run.history else None
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
from faces. It reflects the tastes of the people who swiped; see the model card below for what it must not be used for.</p>
<p><span class="status {'blessed' if blessed else 'not-blessed'}">{'BLESSED' if blessed else 'NOT BLESSED'}</span>
{f'<ul class="reasons">{reasons}</ul>' if reasons else ''}</p>
<h2 id="metrics">Metrics on the {esc((m.get('gate') or {}).get('eval_split', 'test'))} split</h2>
{metrics_table(m)}
{baselines_table(m['baselines']) if isinstance(m.get('baselines'), dict) else ''}
<h2 id="slices">Slices</h2>
{slices_table(m, slices) if slices else '<p class="note">No slices.</p>'}
<h2 id="data">Data</h2>
<div class="cols"><div>{summary_table(run.data_summary)}</div>
<div><h3>Like ratio by source x target gender</h3>{gender_table_html(cells)}</div>
<div>{_plot(gender_heatmap(cells), 'gender table heat map')}</div></div>
<h2 id="plots">Predictions</h2>
<div class="plots">{_plot(scatter_plot(run.photos), 'predicted vs true like ratio')}
{_plot(calibration_plot(run.photos, m, cfg.calibration_bins), 'calibration curve')}</div>
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


def markdown_html(text: str) -> str:
    """The model card's Markdown (tables, fenced code) as HTML."""
    import markdown

    return markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")
