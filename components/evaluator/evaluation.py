"""Metrics against baselines and the blessing rule, on plain arrays (testable without TFX)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from deepattraction.trainer import features, metrics

# Swipe-count buckets (inclusive bounds; None: no upper bound). Both demo sources draw 3-60
# counted swipes per photo: under 10 a like ratio is coarse, 30 and more it is fairly stable.
SWIPE_BUCKETS = ((1, 9), (10, 29), (30, None))
CALIBRATION_BINS = 10  # equal-count bins of the predicted like ratio


# Which splits the gate scores and fits baselines on: compiled into a pipeline, never a run's flag.
GATE_SPLIT_FIELDS = ("eval_split", "baseline_split")


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """When a model is blessed. Both rules apply to the tasks the model has.

    max_mse_ratio: weighted MSE must be below the best constant's MSE times this.
    min_accuracy_gain: gender accuracy must exceed the majority share by more than this.
    Flat numbers and strings only: each field is a pipeline parameter.
    """

    max_mse_ratio: float = 1.0
    min_accuracy_gain: float = 0.0
    # Against the last blessed model (when there is one): how much worse the candidate may be.
    max_mse_regression: float = 0.0  # relative: weighted MSE <= baseline model's x (1 + this)
    max_accuracy_regression: float = 0.0  # absolute: accuracy >= baseline model's - this
    # The group gap: the worst group's like-ratio weighted MSE over the whole split's (fairness.py).
    # Refused when the candidate's gap exceeds the last blessed model's by more than this even at
    # the low end of the 95% interval of the growth (absolute, in units of the whole split's MSE).
    max_group_gap_regression: float = 0.0
    min_group_photos: int = 50  # a group with fewer photos in the split is reported, not gated on
    bootstrap_resamples: int = 1000  # resamples behind every 95% interval
    bootstrap_seed: int = 0  # fixed: the same photos and predictions give the same intervals
    eval_split: str = "test"
    baseline_split: str = "train"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "GateConfig":
        return cls(**json.loads(text)) if text else cls()


@dataclasses.dataclass
class Labels:
    like_ratio: np.ndarray
    swipe_count: np.ndarray
    male: np.ndarray  # 1 for male, 0 for female
    # Optional, for slices: post-update likes and swipes per swiper gender, columns in
    # features.GENDERS order, and the users table's group ("" where it has none).
    source_likes: np.ndarray | None = None
    source_swipes: np.ndarray | None = None
    group: np.ndarray | None = None


def subset(labels: Labels, mask) -> Labels:
    return Labels(*(None if a is None else a[mask]
                    for a in (getattr(labels, f.name) for f in dataclasses.fields(labels))))


def swipe_bucket_name(lo: int, hi: int | None) -> str:
    return f"swipe_count={lo}+" if hi is None else f"swipe_count={lo}-{hi}"


def slice_masks(labels: Labels, face_count=None) -> dict:
    """Photo subsets every evaluation reports: target gender, the starred subset (exactly one face
    counts) when the model reports faces, the group where the data has one, swipe-count bucket.
    Names are "<dimension>=<value>", except the original bare female/male/starred/unstarred."""
    masks = {"female": labels.male == 0, "male": labels.male == 1}
    if face_count is not None:
        masks["starred"] = features.is_starred(np.asarray(face_count))
        masks["unstarred"] = ~masks["starred"]
    if labels.group is not None:
        for g in sorted(set(labels.group) - {""}):
            masks[f"group={g}"] = labels.group == g
    for lo, hi in SWIPE_BUCKETS:
        masks[swipe_bucket_name(lo, hi)] = (labels.swipe_count >= lo) & (True if hi is None
                                                                         else labels.swipe_count <= hi)
    return masks


def source_gender_labels(labels: Labels) -> dict:
    """name -> (mask, labels): for each swiper gender, the photos it swiped, labelled with its own
    like ratio and weighted by its own swipes. The model predicts the all-swiper ratio, so the
    gap between the two slices shows how differently women and men judge."""
    out = {}
    if labels.source_swipes is None:
        return out
    for i, g in enumerate(features.GENDERS):
        mask = labels.source_swipes[:, i] > 0
        sub = subset(labels, mask)
        swipes = sub.source_swipes[:, i].astype(np.float64)
        out[f"source_gender={g}"] = (mask,
                                     dataclasses.replace(sub, like_ratio=sub.source_likes[:, i] / swipes,
                                                         swipe_count=swipes))
    return out


def evaluate_slices(labels: Labels, base: dict, ratio_pred=None, male_prob=None, face_count=None) -> dict:
    """evaluate() on each slice that has photos; slice -> the same keys as the whole split. A
    source_gender slice is scored against that swiper gender's own baselines."""
    def pick(a, mask):
        return None if a is None else np.asarray(a)[mask]

    slices = {name: (mask, subset(labels, mask)) for name, mask in slice_masks(labels, face_count).items()}
    slices.update(source_gender_labels(labels))
    own = base.get("source_gender", {})
    return {name: evaluate(sub, {**base, **own.get(name, {})}, pick(ratio_pred, mask), pick(male_prob, mask))
            for name, (mask, sub) in slices.items() if mask.any()}


def _ratio_baselines(labels: Labels) -> dict:
    return {"constant": metrics.best_constant(labels.like_ratio, labels.swipe_count),
            "gender_constants": {int(k): v for k, v in
                                 metrics.group_constants(labels.like_ratio, labels.swipe_count, labels.male).items()}}


def baselines(train: Labels) -> dict:
    """Every baseline comes from the training split, never from the data it is scored on.

    "source_gender": per swiper gender, the same like-ratio baselines fitted on that gender's own
    swipes. Its gender constants are the study's table of mean like ratio by source and target
    gender; women and men judge differently, so the all-swiper constants are no fair baseline
    for one gender's like ratio."""
    majority_class, _ = metrics.majority(train.male)
    base = {**_ratio_baselines(train), "majority_male": majority_class, "male_share": float(np.mean(train.male))}
    own = {name: _ratio_baselines(sub) for name, (mask, sub) in source_gender_labels(train).items() if mask.any()}
    if own:
        base["source_gender"] = own
    return base


def _errors(prefix: str, y, pred, w) -> dict:
    return {f"{prefix}_weighted_mse": metrics.weighted_mse(y, pred, w),
            f"{prefix}_mse": metrics.weighted_mse(y, pred, np.ones_like(y)),
            f"{prefix}_weighted_mae": metrics.weighted_mae(y, pred, w), f"{prefix}_mae": metrics.mae(y, pred)}


def correlations(prefix: str, target, pred, weights=None) -> dict:
    """Per photo (unweighted) Pearson and Spearman of a prediction with a target, and with weights
    (swipes) the weighted Pearson; None where undefined. The target may be the label or anything
    else known per photo (the quality benchmark's mean SCUT score)."""
    out = {f"{prefix}_pearson": metrics.pearson(target, pred), f"{prefix}_spearman": metrics.spearman(target, pred)}
    if weights is not None:
        out[f"{prefix}_weighted_pearson"] = metrics.pearson(target, pred, weights)
    return out


def evaluate(labels: Labels, base: dict, ratio_pred=None, male_prob=None) -> dict:
    """Model and baseline metrics on one split; keys are stable names used by reports and tests.

    Like ratio, for the model (ratio_*), the best constant (constant_*: errors only, its
    correlations are undefined) and the gender-conditional constant (gender_constant_*): errors
    weighted by swipes and per photo, correlations; the model's calibration. Gender: accuracy,
    log-loss and AUC against the majority class and the training share of men as a probability."""
    out = {"count": int(len(labels.like_ratio))}
    if ratio_pred is not None:
        y, w, pred = labels.like_ratio, labels.swipe_count, np.asarray(ratio_pred, np.float64)
        gender_pred = np.array([base["gender_constants"].get(int(m), base["constant"]) for m in labels.male],
                               np.float64)
        bins, ece = metrics.calibration(y, pred, w, CALIBRATION_BINS)
        out.update({**_errors("ratio", y, pred, w), **correlations("ratio", y, pred, w),
                    **_errors("constant", y, np.full_like(y, base["constant"]), w),
                    **_errors("gender_constant", y, gender_pred, w),
                    **correlations("gender_constant", y, gender_pred, w),
                    "constant": base["constant"], "ratio_calibration": bins, "ratio_ece": ece})
        out["mse_ratio"] = out["ratio_weighted_mse"] / max(out["constant_weighted_mse"], metrics.EPS)
        # How much of the constant's error knowing the photo's gender alone removes.
        out["gender_constant_mse_ratio"] = out["gender_constant_weighted_mse"] / max(out["constant_weighted_mse"],
                                                                                     metrics.EPS)
    if male_prob is not None:
        n = len(labels.male)
        out.update({
            "gender_accuracy": metrics.accuracy(labels.male, male_prob),
            "gender_log_loss": metrics.log_loss(labels.male, male_prob),
            "gender_auc": metrics.auc(labels.male, male_prob),
            "majority_accuracy": metrics.accuracy(labels.male, np.full(n, float(base["majority_male"]))),
            "prior_log_loss": metrics.log_loss(labels.male, np.full(n, base["male_share"])),
        })
    return out


def bless(result: dict, gate: GateConfig) -> tuple[bool, list[str]]:
    """Blessed only if every task the model has beats its baseline by the gate's margins."""
    reasons = []
    if "ratio_weighted_mse" in result and not result["mse_ratio"] < gate.max_mse_ratio:
        reasons.append(f"like-ratio weighted MSE {result['ratio_weighted_mse']:.5f} is not below "
                       f"{gate.max_mse_ratio} x constant {result['constant_weighted_mse']:.5f}")
    if "gender_accuracy" in result and \
            not result["gender_accuracy"] > result["majority_accuracy"] + gate.min_accuracy_gain:
        reasons.append(f"gender accuracy {result['gender_accuracy']:.4f} is not above majority "
                       f"{result['majority_accuracy']:.4f} + {gate.min_accuracy_gain}")
    if result.get("count", 0) == 0:
        reasons.append("no examples to evaluate")
    last = result.get("baseline_model")
    if last:
        if "ratio_weighted_mse" in result and "ratio_weighted_mse" in last and \
                result["ratio_weighted_mse"] > last["ratio_weighted_mse"] * (1 + gate.max_mse_regression):
            reasons.append(f"like-ratio weighted MSE {result['ratio_weighted_mse']:.5f} regresses against the last "
                           f"blessed model's {last['ratio_weighted_mse']:.5f} (tolerance {gate.max_mse_regression})")
        if "gender_accuracy" in result and "gender_accuracy" in last and \
                result["gender_accuracy"] < last["gender_accuracy"] - gate.max_accuracy_regression:
            reasons.append(f"gender accuracy {result['gender_accuracy']:.4f} regresses against the last blessed "
                           f"model's {last['gender_accuracy']:.4f} (tolerance {gate.max_accuracy_regression})")
    gap = group_gap_reason(result.get("group_gap"), gate)
    if gap:
        reasons.append(gap)
    return not reasons, reasons


def group_gap_reason(gap: dict | None, gate: GateConfig) -> str | None:
    """Why the candidate's group gap is refused, or None.

    The gap is the worst group's weighted MSE over the whole split's; the growth is the
    candidate's gap minus the last blessed model's (each its own worst group), both measured on
    the same bootstrap resamples of the same photos (fairness.group_figures). Refused only when the
    growth's 95% interval lies wholly above gate.max_group_gap_regression: a growth the photos'
    noise could explain does not block, and the pairing makes the interval narrow enough that a
    real regression on one group still does. Groups under gate.min_group_photos are not judged."""
    if not gap or not gap.get("growth_ci"):
        return None
    lo, hi = gap["growth_ci"]
    if not lo > gate.max_group_gap_regression:
        return None
    last = gap["baseline_model"]
    clo, chi = gap["gap_ci"]
    return (f"group gap regresses: {gap['worst_group']}'s like-ratio weighted MSE is {gap['gap']:.2f}x the whole "
            f"split's (95% {clo:.2f}-{chi:.2f}), against {last['gap']:.2f}x for the last blessed model's worst group "
            f"{last['worst_group']}; the growth {gap['growth']:+.2f} (95% {lo:+.2f} to {hi:+.2f}) exceeds the "
            f"tolerance {gate.max_group_gap_regression} even at its low end")
