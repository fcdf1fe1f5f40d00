"""The report's pictures: plots as PNG bytes (predicted vs true, calibration, training curves, the
gender heat map; None when the run has nothing to plot) and the galleries' thumbnails."""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend state
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from deepattraction.components.report.report import Photo


def _figure(w: float = 4.6, h: float = 3.6) -> Figure:
    return Figure(figsize=(w, h), dpi=100, layout="constrained")


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


def quantile_bins(pred: np.ndarray, true: np.ndarray, weight: np.ndarray,
                  bins: int) -> list[tuple[float, float, float]]:
    """(mean predicted, mean true, total weight) per bin of equally many photos, weight-averaged."""
    order = np.argsort(pred, kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, len(order))):
        w = weight[idx]
        if len(idx) and w.sum() > 0:
            out.append((float(np.average(pred[idx], weights=w)), float(np.average(true[idx], weights=w)),
                        float(w.sum())))
    return out


def metric_bins(calibration) -> list[tuple[float, float, float]] | None:
    """The evaluator's like-ratio bins (trainer.metrics.calibration's pred_mean, observed_mean and
    swipes) as (pred, true, weight); None when the metrics carry none."""
    if not isinstance(calibration, list) or not calibration:
        return None
    return [(b["pred_mean"], b["observed_mean"], b["swipes"]) for b in calibration]


def calibration_plot(photos: list[Photo], metrics: dict, bins: int) -> bytes | None:
    """Like ratio (bins weighted by swipes) and P(male) against what was observed."""
    ratio = [p for p in photos if p.pred_ratio is not None]
    gender = [p for p in photos if p.pred_male is not None]
    if not ratio and not gender:
        return None
    fig = _figure(4.6, 3.6)
    ax = fig.add_subplot()
    if ratio:
        given = metric_bins(metrics.get("ratio_calibration"))
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


def group_calibration_figure(metrics: dict) -> Figure | None:
    """One panel per slice dimension (photo's gender, group, swiper gender, starred subset), each
    group's like-ratio calibration curve (the evaluator's bins) overlaid on the whole split's."""
    from deepattraction.components.evaluator.fairness import GROUP_DIMENSIONS, slice_dimension
    from deepattraction.components.report.labels import dimension_label, slice_label

    panels: dict[str, dict] = {}
    for name, m in (metrics.get("slices") or {}).items():
        b = metric_bins(m.get("ratio_calibration"))
        if b and slice_dimension(name) in GROUP_DIMENSIONS:
            panels.setdefault(slice_dimension(name), {})[name] = b
    if not panels:
        return None
    whole = metric_bins(metrics.get("ratio_calibration"))
    dims = [d for d in GROUP_DIMENSIONS if d in panels]
    fig = _figure(3.3 * len(dims), 3.3)
    for i, dim in enumerate(dims):
        ax = fig.add_subplot(1, len(dims), i + 1)
        if whole:
            ax.plot([x for x, _, _ in whole], [y for _, y, _ in whole], "-", color="0.6", lw=3, alpha=0.6,
                    label="whole split")
        for name, b in sorted(panels[dim].items()):
            ax.plot([x for x, _, _ in b], [y for _, y, _ in b], "o-", ms=3, label=slice_label(name))
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted like ratio")
        if i == 0:
            ax.set_ylabel("observed like ratio")
        ax.set_title(f"by {dimension_label(dim)}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    return fig


def group_calibration_plot(metrics: dict) -> bytes | None:
    fig = group_calibration_figure(metrics)
    return _png(fig) if fig is not None else None


def training_plot(history: dict) -> bytes | None:
    """One panel per metric (train and val_ together), phase starts marked."""
    curves = {k: v for k, v in (history.get("history") or {}).items() if isinstance(v, list) and v}
    names = [k for k in curves if not k.startswith("val_")] + [k[4:] for k in curves if k.startswith("val_")
                                                               and k[4:] not in curves]
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


def thumbnail(data: bytes, box, px: int) -> bytes:
    """The photo scaled to px on its longer side (up or down) as JPEG, the detected face box drawn on it."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    scale = px / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    if box is not None:
        ImageDraw.Draw(im).rectangle([float(v) * scale for v in box], outline=(255, 220, 0), width=2)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
