"""The model card of a run, in Markdown: what the model is, what it is not for, and its metrics
overall and per slice with the largest gap between groups."""
from __future__ import annotations

import os

import tensorflow as tf

MODEL_CARD_FILE = "model_card.md"

STATIC = """\
## What it is
A model that predicts, from one profile photo, (a) its **like ratio**: the share of likes among
the swipes other users of a dating-style app gave it, after the owner's last photo update, and
(b) the **gender** the data records for the person, as a probability of "male". It predicts how a
photo was *received* by a particular group of people; that is a judgement of attractiveness by
those people, with all their biases, not a property of the person.

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
benchmarks use SCUT-FBP5500 (research use only), whose 60 raters stand in for swipers.

## Known limits
Trained from the data of one app and its users: the like ratio encodes their tastes, which differ
by the swipers' gender and culture. Face detection (MTCNN) misses faces that are small, turned or
covered; such photos are scored whole. Small evaluation splits give noisy metrics.
"""


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render(metrics: dict, data_summary: dict, gender_table: str) -> str:
    lines = ["# DeepAttraction model card", "",
             "> This model predicts attractiveness (as a like ratio) and gender from a face photo.", "", STATIC,
             "## Metrics on the test split", "",
             "| slice | photos | like-ratio weighted MSE | constant | gender-conditional constant | gender accuracy | majority |",
             "|---|---|---|---|---|---|---|"]
    rows = {"all": metrics, **metrics.get("slices", {})}
    for name, m in rows.items():
        lines.append(f"| {name} | {m.get('count', '')} | " + " | ".join(_fmt(m.get(k, "")) for k in (
            "ratio_weighted_mse", "constant_weighted_mse", "gender_constant_weighted_mse", "gender_accuracy", "majority_accuracy")) + " |")
    female, male = metrics.get("slices", {}).get("female"), metrics.get("slices", {}).get("male")
    if female and male:
        gaps = {k: abs(female[k] - male[k]) for k in ("ratio_weighted_mse", "gender_accuracy") if k in female and k in male}
        if gaps:
            worst = max(gaps, key=gaps.get)
            lines += ["", f"Largest gap between the gender groups: **{worst}** differs by {gaps[worst]:.4f} "
                          f"(female {female[worst]:.4f}, male {male[worst]:.4f})."]
    lines += ["", f"Blessed: {metrics.get('blessed')}; gate: {metrics.get('gate')}.",
              "", "## Data of this run", "",
              f"{data_summary.get('users_in')} users in, {data_summary.get('users_in_splits')} in splits, "
              f"{data_summary.get('users_rejected')} rejected; {data_summary.get('swipes_before_update')} swipes "
              "made before a photo update were not counted.", "", "Mean like ratio by source x target gender:", "",
              "```", gender_table.strip(), "```", ""]
    return "\n".join(lines)


def write(path: str, metrics: dict, data_summary: dict, gender_table: str) -> str:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(render(metrics, data_summary, gender_table))
    return path
