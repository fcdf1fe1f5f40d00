"""The model card of a run, in Markdown: what the model is, what it is not for, and its metrics
overall and per slice with the largest gap between groups. Lives with the report component,
which puts the card into every run's report; pipeline/results.py writes it to the pipeline root."""
from __future__ import annotations

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
The **starred subset** is the photos in which exactly one face counts (MTCNN, confidence and size
rules in trainer/features.py), as in the study; the slices `starred` and `unstarred` report it.

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


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "n/a" if v is None else str(v)


def slice_group(name: str) -> str:
    """Slices compared with each other: the evaluator's "<group>=<value>" slices share a group, e.g.
    source_gender=female and source_gender=male; target gender and starred are the unprefixed slices."""
    if "=" in name:
        return name.split("=", 1)[0]
    if name in ("female", "male"):
        return "target gender"
    if name in ("starred", "unstarred"):
        return "starred subset"
    return name


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


def render(metrics: dict, data_summary: dict, gender_table: str) -> str:
    slices = metrics.get("slices", {})
    cols = [k for k in CARD_METRICS if k in metrics or any(k in m for m in slices.values())]
    lines = ["# DeepAttraction model card", "",
             "> This model predicts attractiveness (as a like ratio) and gender from a face photo.", "", STATIC,
             f"## Metrics on the {(metrics.get('gate') or {}).get('eval_split', 'test')} split", "",
             "| slice | photos | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, m in {"all": metrics, **slices}.items():
        lines.append(f"| {name} | {m.get('count', '')} | " + " | ".join(_fmt(m.get(k, "")) for k in cols) + " |")
    gaps = largest_gaps(slices)
    if gaps:
        lines += ["", "Largest gap between groups:", ""]
        for group, k, gap, lo, lo_v, hi, hi_v in gaps:
            lines.append(f"- {group}: **{k}** differs by {gap:.4f} ({lo} {lo_v:.4f}, {hi} {hi_v:.4f})")
    lines += ["", f"Blessed: {metrics.get('blessed')}; gate: {metrics.get('gate')}.",
              "", "## Data of this run", "",
              f"{data_summary.get('users_in')} users in, {data_summary.get('users_in_splits')} in splits, "
              f"{data_summary.get('users_rejected')} rejected; {data_summary.get('swipes_before_update')} swipes "
              "made before a photo update were not counted.", "", "Mean like ratio by source x target gender:", "",
              "```", gender_table.strip(), "```", ""]
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
