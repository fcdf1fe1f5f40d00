"""`deepattraction experiments`: the study's two tables from real pipeline runs.

Each variant (Inception, Inception*, FaceNet*) is one local run of the whole pipeline, in its
own pipeline root, with its backbone's pretrained weights. Starred variants train on the
starred subset (starred_only) and are scored on the Evaluator's starred slice; the others on
the whole test split. By default one two-headed model per variant gives both columns;
separate_tasks trains a like-ratio model and a gender model per variant, as the study did.
"""
from __future__ import annotations

import dataclasses
import json
import os

from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.pipeline.configs import LOCAL_BEAM_ARGS, PipelineConfig
from deepattraction.weights import fetch

STARRED_SLICE = "starred"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    backbone: str
    weights: str  # a `deepattraction weights fetch` name, or "none"
    starred: bool


VARIANTS = (Variant("Inception", "inception_v3", "inception", False),
            Variant("Inception*", "inception_v3", "inception", True),
            Variant("FaceNet*", "facenet", "facenet", True))

# The study's schedule on small data: head on the frozen backbone, then its top two blocks.
HPARAMS = {"head_epochs": 4, "epochs": 6, "learning_rate": 1e-3, "fine_tune_learning_rate": 1e-4,
           "trainable_blocks": 2, "early_stopping_patience": 3, "batch_size": 16, "gender_loss_weight": 0.1,
           "head_layers": 2, "head_width": 128, "serve_mirrored": 1}


@dataclasses.dataclass(frozen=True)
class ExperimentsConfig:
    users_uri: str
    swipes_uri: str
    workdir: str
    weights_dir: str
    variants: tuple[str, ...] = tuple(v.name for v in VARIANTS)
    hparams: dict = dataclasses.field(default_factory=dict)  # over HPARAMS, for every variant
    image_sizes: dict = dataclasses.field(default_factory=dict)  # backbone -> px; absent: native
    separate_tasks: bool = False

    def __post_init__(self):
        unknown = set(self.variants) - {v.name for v in VARIANTS}
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; known: {[v.name for v in VARIANTS]}")


def _slug(name: str) -> str:
    return name.lower().replace("*", "_starred")


def pipeline_config(cfg: ExperimentsConfig, v: Variant, task: str, weights: str):
    root = os.path.join(os.path.abspath(cfg.workdir), f"{_slug(v.name)}-{task}")
    hparams = {**HPARAMS, **cfg.hparams, "task": task, "weights": weights, "starred_only": int(v.starred)}
    # Experiments compare variants: a variant is scored even if it does not beat its baselines.
    return PipelineConfig(pipeline_root=os.path.join(root, "pipeline"), users_uri=cfg.users_uri,
                          swipes_uri=cfg.swipes_uri,
                          serving_base=os.path.join(root, "serving"), backbone=v.backbone,
                          image_size=cfg.image_sizes.get(v.backbone, 0), hparams=hparams,
                          gate=GateConfig(), beam_pipeline_args=LOCAL_BEAM_ARGS)


def scored(metrics: dict, v: Variant) -> dict:
    """The metrics a variant is judged on: the starred slice for starred variants."""
    if not v.starred:
        return metrics
    if STARRED_SLICE not in metrics.get("slices", {}):
        raise ValueError(f"{v.name}: the evaluation has no {STARRED_SLICE!r} slice (no test photo "
                         f"with exactly one face)")
    return metrics["slices"][STARRED_SLICE]


def run_variant(cfg: ExperimentsConfig, v: Variant, log=print) -> dict:
    """task -> (metrics the variant is judged on, report path); one pipeline run per task."""
    from deepattraction.pipeline import local_runner, results  # TFX and Beam: the CLI imports this module

    weights = "none" if v.weights == "none" else fetch(v.weights, cfg.weights_dir)
    out = {}
    for task in (("ratio", "gender") if cfg.separate_tasks else ("both",)):
        pc = pipeline_config(cfg, v, task, weights)
        log(f"experiments: {v.name} ({task}) in {pc.pipeline_root}")
        local_runner.run(pc, show_progress=False)
        r = results.latest(pc)
        out[task] = {"metrics": scored(r.metrics, v), "report": r.report_path, "pipeline_root": pc.pipeline_root}
    return out


def _get(runs: dict, task: str, key: str):
    run = runs.get(task) or runs.get("both")
    return run["metrics"].get(key) if run else None


def tables(results: dict[str, dict]) -> dict[str, list[dict]]:
    """Rows Baseline + each variant; the study's column first, then ours."""
    first = next(iter(results.values()))
    ratio = [{"model": "Baseline (best constant)", "weighted_mse": _get(first, "ratio", "constant_weighted_mse"),
              "gender_constant_weighted_mse": _get(first, "ratio", "gender_constant_weighted_mse"), "pearson": None,
              "photos": _get(first, "ratio", "count")}]
    gender = [{"model": "Baseline (majority)", "accuracy": _get(first, "gender", "majority_accuracy"), "log_loss": None,
               "auc": None, "photos": _get(first, "gender", "count")}]
    for name, runs in results.items():
        ratio.append({"model": name, "weighted_mse": _get(runs, "ratio", "ratio_weighted_mse"),
                      "gender_constant_weighted_mse": _get(runs, "ratio", "gender_constant_weighted_mse"),
                      "pearson": _get(runs, "ratio", "ratio_pearson"), "photos": _get(runs, "ratio", "count")})
        gender.append({"model": name, "accuracy": _get(runs, "gender", "gender_accuracy"),
                       "log_loss": _get(runs, "gender", "gender_log_loss"), "auc": _get(runs, "gender", "gender_auc"),
                       "photos": _get(runs, "gender", "count")})
    return {"like_ratio": ratio, "gender": gender}


def markdown(rows: list[dict]) -> str:
    cols = list(rows[0])

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows])


def run(cfg: ExperimentsConfig, log=print) -> dict:
    """Runs the variants, prints and saves the tables (experiments.md and .json in workdir)."""
    chosen = [v for v in VARIANTS if v.name in cfg.variants]
    results = {v.name: run_variant(cfg, v, log) for v in chosen}
    t = tables(results)
    text = (f"## Like ratio (weighted MSE; * = starred subset)\n\n{markdown(t['like_ratio'])}\n\n"
            f"## Gender\n\n{markdown(t['gender'])}\n")
    os.makedirs(cfg.workdir, exist_ok=True)
    md, js = os.path.join(cfg.workdir, "experiments.md"), os.path.join(cfg.workdir, "experiments.json")
    with open(md, "w") as f:
        f.write(text)
    with open(js, "w") as f:
        json.dump({"tables": t, "runs": results, "hparams": {**HPARAMS, **cfg.hparams}}, f, indent=1)
    log(text)
    log(f"experiments: wrote {md} and {js}")
    return {"tables": t, "runs": results, "markdown": md}
