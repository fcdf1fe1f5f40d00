"""Human labels for the Evaluator's metric keys, slice names and gate settings: the report and the
model card show these, and metrics.json alone keeps the raw keys."""
from __future__ import annotations

METRIC_LABELS = {
    "count": "photos",
    "train_count": "training photos",
    "constant": "best constant like ratio",
    "ratio_weighted_mse": "like-ratio weighted MSE",
    "ratio_mse": "like-ratio MSE (unweighted)",
    "ratio_weighted_mae": "like-ratio weighted MAE",
    "ratio_mae": "like-ratio MAE",
    "ratio_pearson": "like-ratio Pearson r",
    "ratio_spearman": "like-ratio Spearman rho",
    "ratio_weighted_pearson": "like-ratio weighted Pearson r",
    "ratio_ece": "like-ratio calibration error (ECE)",
    "mse_ratio": "weighted MSE / constant's",
    "constant_weighted_mse": "weighted MSE of the best constant",
    "constant_mse": "MSE of the best constant (unweighted)",
    "constant_weighted_mae": "weighted MAE of the best constant",
    "constant_mae": "MAE of the best constant",
    "gender_constant_weighted_mse": "weighted MSE of the per-gender constant",
    "gender_constant_mse": "MSE of the per-gender constant (unweighted)",
    "gender_constant_weighted_mae": "weighted MAE of the per-gender constant",
    "gender_constant_mae": "MAE of the per-gender constant",
    "gender_constant_pearson": "Pearson r of the per-gender constant",
    "gender_constant_spearman": "Spearman rho of the per-gender constant",
    "gender_constant_weighted_pearson": "weighted Pearson r of the per-gender constant",
    "gender_constant_mse_ratio": "weighted MSE / per-gender constant's",
    "gender_accuracy": "gender accuracy",
    "gender_log_loss": "gender log-loss",
    "gender_auc": "gender ROC AUC",
    "majority_accuracy": "majority-class accuracy",
    "prior_log_loss": "gender log-loss of the training prior",
    "gap": "weighted MSE / whole split's (gap)",
}

DIMENSION_LABELS = {"target gender": "photo's gender", "group": "group", "source_gender": "swiper gender",
                    "starred subset": "starred subset", "swipe_count": "swipes"}
SWIPER = {"female": "women", "male": "men"}


def label(key: str) -> str:
    """A metric's label; a key this table does not know yet is shown in words, never as spelt."""
    return METRIC_LABELS.get(key, key.replace("_", " "))


def slice_label(name: str) -> str:
    """group=AF -> group AF, source_gender=female -> swiped by women, swipe_count=1-9 -> 1-9 swipes."""
    dim, _, value = name.partition("=")
    if not value:
        return {"starred": "starred (one face)", "unstarred": "unstarred"}.get(name, name.replace("_", " "))
    if dim == "source_gender":
        return f"swiped by {SWIPER.get(value, value)}"
    if dim == "swipe_count":
        return f"{value} swipes"
    return f"{dim.replace('_', ' ')} {value}"


def dimension_label(dim: str) -> str:
    return DIMENSION_LABELS.get(dim, dim.replace("_", " "))


def gate_text(gate: dict) -> str:
    """The gate's settings in words (its field names are pipeline parameters, not for readers)."""
    g = dict(gate or {})
    parts = []
    if "max_mse_ratio" in g:
        parts.append(f"like-ratio weighted MSE below {g['max_mse_ratio']:g} x the best constant's")
    if "min_accuracy_gain" in g:
        parts.append(f"gender accuracy above the majority class's + {g['min_accuracy_gain']:g}")
    if "max_mse_regression" in g:
        parts.append(f"weighted MSE at most (1 + {g['max_mse_regression']:g}) x the last blessed model's")
    if "max_accuracy_regression" in g:
        parts.append(f"gender accuracy at least the last blessed model's - {g['max_accuracy_regression']:g}")
    if "max_group_gap_regression" in g:
        parts.append(f"the worst group's gap at most {g['max_group_gap_regression']:g} above the last blessed "
                     f"model's at the low end of its 95% interval (groups of {g.get('min_group_photos', '?')}+ "
                     f"photos; {g.get('bootstrap_resamples', '?')} bootstrap resamples, seed "
                     f"{g.get('bootstrap_seed', '?')})")
    if "eval_split" in g:
        parts.append(f"scored on the {g['eval_split']} split against baselines from the "
                     f"{g.get('baseline_split', 'train')} split")
    return "; ".join(parts)
