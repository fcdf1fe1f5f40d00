"""The model card of a run, in Markdown: what the model is, what it is not for, and its metrics
overall and per slice with the largest gap between groups. Lives with the report component,
which puts the card into every run's report; pipeline/results.py writes it to the pipeline root."""
from __future__ import annotations

import csv
import io

from deepattraction.components.evaluator.fairness import GROUP_DIMENSIONS, slice_dimension
from deepattraction.components.report.labels import dimension_label, gate_text, label, slice_label

MODEL_CARD_FILE = "model_card.md"

STATIC = """\
## What it is
A model that predicts, from one profile photo, (a) its **like ratio**: the share of likes among
the swipes other users of a dating-style app gave it, after the owner's last photo update, and
(b) the **gender** the data records for the person, as a probability of "male". In plain words:
**it predicts attractiveness and gender from faces.** It predicts how a photo was *received* by a
particular group of people; that is a judgement of attractiveness by those people, with all their
biases, not a property of the person.

## Intended uses
Research into how photos are received and into the biases of such judgements; reproducing the
published study; helping a user compare their own photos, with their consent.

## Out of scope
Ranking, admitting, excluding or scoring people; any decision about a person; inferring gender
identity (the gender label is binary and taken from the data, and is wrong for some people);
use on photos of people who did not consent; use on children. Do not use it to judge anyone's worth.

## Data
Users, swipes and photos as described in the README's data contract. Only ids, a binary gender,
photos and swipes are used; no other identity data is kept. Demo runs use synthetic faces;
benchmarks use SCUT-FBP5500 (research use only), whose 60 raters stand in for swipers: a rating
s becomes a like with probability (s - 1) / 4 by default (README, Benchmarks), so those swipes are
simulated from ratings, not observed.
The **starred subset** is the photos in which MTCNN finds exactly one face (the `mtcnn` package's
count at its defaults, down to faces about 20 px wide; trainer/features.py), as in the study; the
slices `starred` and `unstarred` report it.

## Known limits
Trained from the data of one app and its users: the like ratio encodes their tastes, which differ
by the swipers' gender and culture. Face detection (MTCNN) misses faces that are small, turned or
covered; such photos are scored whole and fall outside the starred subset. Photos with few swipes
have noisy like ratios (the metrics weight by swipe count). Small evaluation splits give noisy
metrics and wide gaps between small slices.
"""

# Columns of the slice table, where the evaluator reports them (the HTML report shows every metric).
CARD_METRICS = ("ratio_weighted_mse", "constant_weighted_mse", "gender_constant_weighted_mse", "ratio_mae",
                "ratio_pearson", "ratio_spearman", "gender_accuracy", "majority_accuracy", "gender_auc")
# Metrics whose spread across the slices of one group is worth naming (when present).
GAP_METRICS = ("ratio_weighted_mse", "ratio_mae", "gender_accuracy", "gender_log_loss", "gender_auc")
# Per metric, which end is worst, for naming each metric's worst group.
WORST = (("ratio_weighted_mse", max), ("ratio_ece", max), ("gender_accuracy", min), ("gap", max))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "n/a" if v is None else str(v)


def slice_group(name: str) -> str:
    """Slices compared with each other (the evaluator's slice dimension)."""
    return slice_dimension(name)


def largest_gaps(slices: dict) -> list[tuple[str, str, float, str, float, str, float]]:
    """Per group of slices, the metric with the largest spread: (group, metric, gap, low slice,
    low value, high slice, high value); the group with the largest gap first."""
    groups: dict[str, dict] = {}
    for name, m in slices.items():
        groups.setdefault(slice_group(name), {})[name] = m
    out = []
    for group, members in groups.items():
        best = None
        for k in GAP_METRICS:
            vals = {n: m[k] for n, m in members.items() if isinstance(m.get(k), (int, float))}
            if len(vals) < 2:
                continue
            lo, hi = min(vals, key=vals.get), max(vals, key=vals.get)
            gap = vals[hi] - vals[lo]
            if best is None or gap > best[2]:
                best = (group, k, gap, lo, vals[lo], hi, vals[hi])
        if best:
            out.append(best)
    return sorted(out, key=lambda g: -g[2])


def _ci(v, ci) -> str:
    return _fmt(v) if not ci else f"{_fmt(v)} ({_fmt(ci[0])} to {_fmt(ci[1])})"


def worst_groups(metrics: dict) -> list[tuple[str, str, float, list | None, float | None]]:
    """(metric, worst group, its value, its 95% interval, the whole split's value) for each of
    WORST, among the groups with at least the gate's minimum of photos that are scored on the
    whole split's like ratio (not the swiper-gender slices, scored on that gender's own)."""
    gate = metrics.get("gate") or {}
    least = (metrics.get("group_gap") or {}).get("min_group_photos", gate.get("min_group_photos", 0))
    groups = {n: m for n, m in (metrics.get("slices") or {}).items()
              if slice_dimension(n) in GROUP_DIMENSIONS and slice_dimension(n) != "source_gender"
              and m.get("count", 0) >= least}
    out = []
    for k, end in WORST:
        vals = {n: m[k] for n, m in groups.items() if isinstance(m.get(k), (int, float))}
        if vals:
            n = end(sorted(vals), key=vals.get)
            out.append((k, n, vals[n], groups[n].get(f"{k}_ci"), 1.0 if k == "gap" else metrics.get(k)))
    return out


def gap_gate_line(gap: dict | None) -> str:
    if not gap or "worst_group" not in gap:
        return "Group gap gate: not applied (no group large enough to judge, or no like-ratio predictions)."
    if "growth_ci" not in gap:
        return "Group gap gate: not applied (no blessed model before this one to compare with)."
    lo, hi = gap["growth_ci"]
    last = gap["baseline_model"]
    return (f"Group gap gate: **{'passed' if gap.get('passed') else 'FAILED'}**. The worst group's gap grew by "
            f"{gap['growth']:+.3f} (95% {lo:+.3f} to {hi:+.3f}) against the last blessed model's "
            f"{last['gap']:.3f} ({slice_label(last['worst_group'])}); tolerance {gap.get('tolerance', 0):g}.")


def groups_section(metrics: dict) -> list[str]:
    gap = metrics.get("group_gap") or {}
    worst = worst_groups(metrics)
    if not worst and not gap:
        return []
    least = gap.get("min_group_photos", (metrics.get("gate") or {}).get("min_group_photos", 0))
    lines = ["", "## Groups", "",
             f"The worst group for each metric, among the groups with at least {least} photos scored on the whole "
             f"split's like ratio ({', '.join(dimension_label(d) for d in GROUP_DIMENSIONS if d != 'source_gender')}"
             f"), with its 95% bootstrap interval ({gap.get('resamples', '?')} resamples). The gap is a group's "
             "like-ratio weighted MSE over the whole split's.", "",
             "| metric | worst group | value (95% interval) | whole split |", "|---|---|---|---|"]
    lines += [f"| {label(k)} | {slice_label(n)} | {_ci(v, ci)} | {_fmt(whole)} |" for k, n, v, ci, whole in worst]
    lines += ["", gap_gate_line(gap)]
    if gap.get("too_small"):
        lines += ["", "Reported but too small to judge: " + ", ".join(
            f"{slice_label(n)} ({c} photos)" for n, c in gap["too_small"].items()) + "."]
    return lines


GENDER_COLUMNS = {"source_gender": "swiper gender", "target_gender": "photo's gender", "like_ratio": "like ratio"}


def gender_lines(gender_table: str) -> list[str]:
    """gender_table.csv as a Markdown table under readable column names."""
    rows = list(csv.reader(io.StringIO(gender_table.strip())))
    if not rows:
        return []
    head = [GENDER_COLUMNS.get(c, c) for c in rows[0]]
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def render(metrics: dict, data_summary: dict, gender_table: str) -> str:
    slices = metrics.get("slices", {})
    cols = [k for k in CARD_METRICS if k in metrics or any(k in m for m in slices.values())]
    lines = ["# DeepAttraction model card", "",
             "> This model predicts attractiveness (as a like ratio) and gender from a face photo.", "", STATIC,
             f"## Metrics on the {(metrics.get('gate') or {}).get('eval_split', 'test')} split", "",
             "| slice | photos | " + " | ".join(label(k) for k in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, m in {"all": metrics, **slices}.items():
        lines.append(f"| {slice_label(name)} | {m.get('count', '')} | "
                     + " | ".join(_fmt(m.get(k, "")) for k in cols) + " |")
    gaps = largest_gaps(slices)
    if gaps:
        lines += ["", "Largest gap between groups:", ""]
        for group, k, gap, lo, lo_v, hi, hi_v in gaps:
            lines.append(f"- {dimension_label(group)}: **{label(k)}** differs by {gap:.4f} ({slice_label(lo)} "
                         f"{lo_v:.4f}, {slice_label(hi)} {hi_v:.4f})")
    lines += groups_section(metrics)
    lines += ["", f"Blessed: {'yes' if metrics.get('blessed') else 'no'}. Gate: {gate_text(metrics.get('gate'))}.",
              "", "## Data of this run", "",
              f"{data_summary.get('users_in')} users in, {data_summary.get('users_in_splits')} in splits, "
              f"{data_summary.get('users_rejected')} rejected; {data_summary.get('swipes_before_update')} swipes "
              "made before a photo update were not counted.", "", "Mean like ratio by source x target gender:", "",
              *gender_lines(gender_table), ""]
    return "\n".join(lines)


def markdown_html(text: str) -> str:
    """The card's Markdown (tables, fenced code) as HTML, for the run report."""
    import markdown

    return markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")


def with_recipe(card: str, recipe_line: str | None) -> str:
    """The card with a Recipe section under its title: which named recipe trained the model, and
    every value the run set apart from it, so no figure is read as the published recipe's by mistake."""
    if not recipe_line:
        return card
    title, _, rest = card.partition("\n")
    return f"{title}\n\n## Recipe\n\n{recipe_line}.\n{rest}"


def write(path: str, metrics: dict, data_summary: dict, gender_table: str, recipe_line: str | None = None) -> str:
    import tensorflow as tf  # gfile for gs:// roots; render() stays light

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(with_recipe(render(metrics, data_summary, gender_table), recipe_line))
    return path
