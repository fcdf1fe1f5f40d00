"""The study's two tables from real pipeline runs (`python -m bench.experiments`, `make experiments`).

Each variant (Inception, Inception*, FaceNet*) is one local run of the whole pipeline, in its
own pipeline root, with its recipe (recipes.py: `inception`, `facenet`; `--recipe` gives every
variant the schedule of another) and that recipe's pretrained weights. Starred variants train on the
starred subset (starred_only) and are scored on the Evaluator's starred slice; the others on
the whole test split. By default one two-headed model per variant gives both columns;
separate_tasks trains a like-ratio model and a gender model per variant, as the study did.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from deepattraction import recipes
from deepattraction.demo_data import DemoDataConfig, data_tables, make_demo_data
from deepattraction.pipeline.configs import LOCAL_BEAM_ARGS, from_recipe
from deepattraction.pipeline.params import parse_hparams

STARRED_SLICE = "starred"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    recipe: str  # its backbone and pretrained weights
    starred: bool

    @property
    def backbone(self) -> str:
        return recipes.get(self.recipe).backbone


VARIANTS = (Variant("Inception", "inception", False),
            Variant("Inception*", "inception", True),
            Variant("FaceNet*", "facenet", True))


@dataclasses.dataclass(frozen=True)
class ExperimentsConfig:
    users_uri: str
    swipes_uri: str
    workdir: str
    weights_dir: str
    variants: tuple[str, ...] = tuple(v.name for v in VARIANTS)
    recipe: str = ""  # the schedule every variant trains with; "": each variant's own recipe's
    hparams: dict = dataclasses.field(default_factory=dict)  # over the schedule, for every variant
    image_sizes: dict = dataclasses.field(default_factory=dict)  # backbone -> px; absent: native
    separate_tasks: bool = False

    def __post_init__(self):
        unknown = set(self.variants) - {v.name for v in VARIANTS}
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; known: {[v.name for v in VARIANTS]}")


def _slug(name: str) -> str:
    return name.lower().replace("*", "_starred")


def schedule(cfg: ExperimentsConfig, v: Variant) -> dict:
    """The variant's hyperparameters: --recipe's schedule (else the variant's recipe's), then --hparam."""
    return {**recipes.get(cfg.recipe or v.recipe).hparams, **cfg.hparams}


def pipeline_config(cfg: ExperimentsConfig, v: Variant, task: str, weights: str):
    root = os.path.join(os.path.abspath(cfg.workdir), f"{_slug(v.name)}-{task}")
    hparams = {**schedule(cfg, v), "task": task, "starred_only": int(v.starred)}
    # Experiments compare variants: each is scored, blessed or not.
    return from_recipe(v.recipe, pipeline_root=os.path.join(root, "pipeline"), users_uri=cfg.users_uri,
                       swipes_uri=cfg.swipes_uri, serving_base=os.path.join(root, "serving"), weights_file=weights,
                       image_size=cfg.image_sizes.get(v.backbone), hparams=hparams,
                       beam_pipeline_args=LOCAL_BEAM_ARGS)


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

    weights = recipes.ensure_weights(recipes.get(v.recipe).weights, cfg.weights_dir)
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
        json.dump({"tables": t, "runs": results, "hparams": {v.name: schedule(cfg, v) for v in chosen}}, f, indent=1)
    log(text)
    log(f"experiments: wrote {md} and {js}")
    return {"tables": t, "runs": results, "markdown": md}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="the study's tables: one pipeline run per variant "
                                            "(Inception, Inception*, FaceNet*)")
    p.add_argument("--users")
    p.add_argument("--swipes")
    p.add_argument("--data", help="a demo-data folder (default: synthetic demo data made in <workdir>/data)")
    p.add_argument("--workdir", default="build/experiments")
    p.add_argument("--weights-dir", default=recipes.LOCAL_WEIGHTS_DIR,
                   help="where `weights fetch` keeps the pretrained weights")
    p.add_argument("--variant", action="append", default=[], help="Inception, Inception* or FaceNet* (default: all)")
    p.add_argument("--recipe", choices=tuple(recipes.RECIPES), default="",
                   help="the schedule for every variant (default: each variant's own recipe)")
    p.add_argument("--image-size", action="append", default=[], metavar="BACKBONE=PX", help="e.g. inception_v3=150")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--separate-tasks", action="store_true", help="a like-ratio model and a gender model per variant")
    a = p.parse_args(argv)
    users, swipes = a.users, a.swipes
    if a.data or not (users and swipes):
        data = a.data or os.path.join(a.workdir, "data")
        if not a.data and not os.path.exists(os.path.join(data, "users.csv")):
            print(make_demo_data(DemoDataConfig(out_dir=data, num_users=240, seed=0)).line(data))
        users, swipes = data_tables(data)
    try:
        sizes, hparams = parse_hparams(a.image_size), parse_hparams(a.hparam)
    except ValueError as e:
        raise SystemExit(f"bench.experiments: {e}") from None
    return run(ExperimentsConfig(
        users_uri=os.path.abspath(users), swipes_uri=os.path.abspath(swipes), workdir=os.path.abspath(a.workdir),
        weights_dir=os.path.abspath(a.weights_dir), variants=tuple(a.variant) or tuple(v.name for v in VARIANTS),
        recipe=a.recipe, hparams=hparams, image_sizes={k: int(v) for k, v in sizes.items()},
        separate_tasks=a.separate_tasks))


if __name__ == "__main__":
    main()
