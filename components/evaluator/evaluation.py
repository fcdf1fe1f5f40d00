"""Metrics against baselines and the blessing rule, on plain arrays (testable without TFX)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from deepattraction.trainer import metrics


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """When a model is blessed. Both rules apply to the tasks the model has.

    max_mse_ratio: weighted MSE must be below the best constant's MSE times this.
    min_accuracy_gain: gender accuracy must exceed the majority share by more than this.
    """

    max_mse_ratio: float = 1.0
    min_accuracy_gain: float = 0.0
    # Against the last blessed model (when there is one): how much worse the candidate may be.
    max_mse_regression: float = 0.0  # relative: weighted MSE <= baseline model's x (1 + this)
    max_accuracy_regression: float = 0.0  # absolute: accuracy >= baseline model's - this
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


def subset(labels: Labels, mask) -> Labels:
    return Labels(labels.like_ratio[mask], labels.swipe_count[mask], labels.male[mask])


def slice_masks(labels: Labels, face_count=None) -> dict:
    """The slices every evaluation reports: target gender, and the starred subset (exactly one
    face counts) when the model reports faces."""
    masks = {"female": labels.male == 0, "male": labels.male == 1}
    if face_count is not None:
        from deepattraction.trainer.features import is_starred

        masks["starred"] = is_starred(np.asarray(face_count))
        masks["unstarred"] = ~masks["starred"]
    return masks


def evaluate_slices(labels: Labels, base: dict, ratio_pred=None, male_prob=None, face_count=None) -> dict:
    """evaluate() on each slice that has photos; the largest gap between the gender slices too."""
    out = {}
    for name, mask in slice_masks(labels, face_count).items():
        if mask.any():
            out[name] = evaluate(subset(labels, mask), base,
                                 None if ratio_pred is None else np.asarray(ratio_pred)[mask],
                                 None if male_prob is None else np.asarray(male_prob)[mask])
    return out


def baselines(train: Labels) -> dict:
    """Every baseline comes from the training split, never from the data it is scored on."""
    majority_class, _ = metrics.majority(train.male)
    return {
        "constant": metrics.best_constant(train.like_ratio, train.swipe_count),
        "gender_constants": {int(k): v for k, v in metrics.group_constants(train.like_ratio, train.swipe_count, train.male).items()},
        "majority_male": majority_class,
    }


def evaluate(labels: Labels, base: dict, ratio_pred=None, male_prob=None) -> dict:
    """Model and baseline metrics on one split; keys are stable names used by reports and tests."""
    out = {"count": int(len(labels.like_ratio))}
    if ratio_pred is not None:
        w = labels.swipe_count
        gender_pred = np.array([base["gender_constants"].get(int(m), base["constant"]) for m in labels.male])
        out.update({
            "ratio_weighted_mse": metrics.weighted_mse(labels.like_ratio, ratio_pred, w),
            "constant_weighted_mse": metrics.weighted_mse(labels.like_ratio, np.full_like(labels.like_ratio, base["constant"]), w),
            "gender_constant_weighted_mse": metrics.weighted_mse(labels.like_ratio, gender_pred, w),
            "constant": base["constant"],
        })
        out["mse_ratio"] = out["ratio_weighted_mse"] / max(out["constant_weighted_mse"], metrics.EPS)
    if male_prob is not None:
        majority_pred = np.full(len(labels.male), float(base["majority_male"]))
        out.update({
            "gender_accuracy": metrics.accuracy(labels.male, male_prob),
            "gender_log_loss": metrics.log_loss(labels.male, male_prob),
            "majority_accuracy": metrics.accuracy(labels.male, majority_pred),
        })
    return out


def bless(result: dict, gate: GateConfig) -> tuple[bool, list[str]]:
    """Blessed only if every task the model has beats its baseline by the gate's margins."""
    reasons = []
    if "ratio_weighted_mse" in result and not result["mse_ratio"] < gate.max_mse_ratio:
        reasons.append(f"like-ratio weighted MSE {result['ratio_weighted_mse']:.5f} is not below "
                       f"{gate.max_mse_ratio} x constant {result['constant_weighted_mse']:.5f}")
    if "gender_accuracy" in result and not result["gender_accuracy"] > result["majority_accuracy"] + gate.min_accuracy_gain:
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
    return not reasons, reasons
