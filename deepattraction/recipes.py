"""Named recipes: the one place where what the product trains is decided.

A recipe is a backbone, the Transform's settings (the crop size), the Trainer's hyperparameters
(a TrainConfig), the blessing rule (a GateConfig) and the data validation policy, under one name.
Every path that trains takes a recipe: `deepattraction run`, `compile` (the KFP spec's parameter
defaults are the recipe's), `demo`, and the lab's experiments and benchmarks. `--hparam` and the
gate flags override single values on top of it, and the run report and model card name the
recipe and every value that differs from it, so a published figure always names its recipe.

Pretrained weights are named by their `deepattraction weights fetch` name; each path resolves the
name to a file in its weights folder (build/weights on a laptop, IMAGE_WEIGHTS_DIR in the
container image, which fetches them at build time). A URI (gs://...) in `weights` is used as given.
"""
from __future__ import annotations

import dataclasses
import os

from deepattraction.components.data_gate import policy as validation
from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.trainer.train import TrainConfig

DEFAULT_RECIPE = "facenet"
# Where the container image keeps the converted weights (the Dockerfile runs `weights fetch` into it).
IMAGE_WEIGHTS_DIR = "/opt/deepattraction/weights"
LOCAL_WEIGHTS_DIR = "build/weights"  # where `make weights` and `make demo` put them
NO_WEIGHTS = ("none", "")

# The study's schedule on small data, as published (docs/benchmarks.md, bench-quality): the head
# on the frozen backbone for 4 epochs, then its top two blocks for 6 at a tenth of the rate, early
# stopping, a 2-layer head, and the served prediction averaged over the photo and its mirror.
STUDY_SCHEDULE = {"head_epochs": 4, "epochs": 6, "learning_rate": 1e-3, "fine_tune_learning_rate": 1e-4,
                  "trainable_blocks": 2, "early_stopping_patience": 3, "batch_size": 16,
                  "gender_loss_weight": 0.1, "head_layers": 2, "head_width": 128, "serve_mirrored": 1}


# How much the worst group's gap (its weighted MSE over the whole split's) may grow against the
# last blessed model, at the low end of the growth's 95% interval. Retraining the facenet recipe on
# the same SCUT data moved it by +0.02 (+0.007 to +0.033, docs/benchmarks.md): a tolerance of 0
# refuses retraining noise, 0.05 still refuses a group whose error grows by a twentieth of the split's.
GROUP_GAP_TOLERANCE = 0.05
PRODUCT_GATE = GateConfig(max_group_gap_regression=GROUP_GAP_TOLERANCE)


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    backbone: str
    weights: str  # a `deepattraction weights fetch` name, "none", or a weights-file URI
    hparams: dict = dataclasses.field(default_factory=dict)  # TrainConfig / ModelConfig fields over their defaults
    image_size: int = 0  # the Transform's crop size; 0: the backbone's native size
    gate: GateConfig = PRODUCT_GATE
    block_on: str = validation.BLOCK_SCHEMA

    def __post_init__(self):
        bad = {"backbone", "weights"} & set(self.hparams)
        if bad:
            raise ValueError(f"recipe {self.name}: {sorted(bad)} are recipe fields, not hparams")
        self.train_config()  # unknown or ill-typed hyperparameters fail at import, not in a run
        validation.check_policy(self.block_on)

    @property
    def pretrained(self) -> bool:
        return self.weights not in NO_WEIGHTS

    def train_config(self, weights_file: str = "none") -> TrainConfig:
        return TrainConfig.from_dict(self.trainer_hparams(weights_file))

    def trainer_hparams(self, weights_file: str = "none") -> dict:
        """The Trainer's hyperparameters with the weights resolved to a file (or "none")."""
        return {**self.hparams, "backbone": self.backbone, "weights": weights_file}


RECIPES = {r.name: r for r in (
    Recipe("facenet", "FaceNet (Inception-ResNet-v1, MS-Celeb) fine-tuned with the study's schedule: the "
           "published recipe and the default", backbone="facenet", weights="facenet", hparams=STUDY_SCHEDULE),
    Recipe("inception", "Inception v3 (ImageNet lower layers, from nsfwjs) fine-tuned with the study's schedule",
           backbone="inception_v3", weights="inception", hparams=STUDY_SCHEDULE),
    # FaceRes (HSE-FaceRes, VGGFace2 identities then age and gender; npm @vladmandic/human): a
    # third of FaceNet's compute for a lower like-ratio figure (probes: docs/benchmarks.md).
    Recipe("faceres", "FaceRes (MobileNet, VGGFace2, from @vladmandic/human) fine-tuned with the study's schedule: "
           "cheaper than FaceNet, less accurate", backbone="faceres", weights="faceres", hparams=STUDY_SCHEDULE),
    # The head alone on FaceNet's frozen pool features, computed once per photo: each epoch is
    # seconds, so `make demo` learns on any machine. No mirrored views: they would double the one
    # FaceNet pass that dominates the demo's time.
    Recipe("demo", "FaceNet frozen, a 1-layer head on its pool features: minutes on a laptop",
           backbone="facenet", weights="facenet",
           hparams={"head_epochs": 40, "epochs": 0, "learning_rate": 3e-3, "batch_size": 32,
                    "early_stopping_patience": 8, "head_layers": 1, "gender_loss_weight": 0.1, "flip": 0}),
    # Tests: the smallest Inception the Keras builder allows, from random weights, one short epoch.
    Recipe("tiny", "Inception v3 at 75 px from random weights, one epoch: for tests of the plumbing, not quality",
           backbone="inception_v3", weights="none", image_size=75,
           hparams={"epochs": 1, "batch_size": 8, "head_width": 16}),
)}


def get(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def is_uri_or_path(weights: str) -> bool:
    return "://" in weights or os.sep in weights or weights.endswith(".h5")


def weights_file(weights: str, weights_dir: str) -> str:
    """A recipe's `weights` as the file the Trainer loads: "none" stays "none", a URI or path stays
    as given, a fetch name becomes its converted file in `weights_dir` (which may not exist yet:
    see ensure_weights)."""
    if weights in NO_WEIGHTS or is_uri_or_path(weights):
        return weights or "none"
    from deepattraction.weights import output_file

    return os.path.join(weights_dir, output_file(weights))


def ensure_weights(weights: str, weights_dir: str) -> str:
    """On this machine: the weights file, fetched from the package registry and converted when it
    is not there yet (as `make weights` does); a URI or path is checked, never replaced by random
    weights."""
    if weights in NO_WEIGHTS:
        return "none"
    if is_uri_or_path(weights):
        import tensorflow as tf

        if not tf.io.gfile.exists(weights):
            raise FileNotFoundError(f"pretrained weights {weights} do not exist")
        return weights
    from deepattraction.weights import fetch

    return fetch(weights, weights_dir)


def resolve_weights(recipe: str, hparams: dict, weights_dir: str) -> tuple[str, dict]:
    """(the weights file on this machine, the other hyperparameters): a `weights` hparam overrides
    the recipe's, and either is fetched or checked by ensure_weights."""
    rest = dict(hparams)
    return ensure_weights(rest.pop("weights", None) or get(recipe).weights, weights_dir), rest


def gate_with(gate: GateConfig, overrides: dict) -> GateConfig:
    """The recipe's gate with the values a command line set (None: the recipe's)."""
    return dataclasses.replace(gate, **{k: v for k, v in overrides.items() if v is not None})


def differences(recipe: Recipe, hparams: dict, gate: dict | None = None, image_size: int | None = None) -> dict:
    """name -> {"recipe": value, "run": value} for every value a run set apart from its recipe.
    `hparams` are the Trainer's (backbone and weights included); a weights file that is the
    recipe's own converted file counts as the recipe's."""
    ref = _flat(recipe.train_config())
    run = _flat(TrainConfig.from_dict({**hparams, "weights": "none"}))
    out = {k: {"recipe": ref[k], "run": run[k]} for k in sorted(ref) if k != "weights" and ref[k] != run[k]}
    weights = str(hparams.get("weights", "none") or "none")
    own_file = os.path.basename(weights_file(recipe.weights, "")) if recipe.pretrained else None
    if weights != recipe.weights and os.path.basename(weights) != own_file:
        out["weights"] = {"recipe": recipe.weights, "run": weights}
    if gate is not None:
        ref_gate = dataclasses.asdict(recipe.gate)
        out.update({f"gate.{k}": {"recipe": ref_gate[k], "run": gate[k]} for k in sorted(ref_gate)
                    if k in gate and gate[k] != ref_gate[k]})
    if image_size is not None and image_size != recipe.image_size:
        out["image_size"] = {"recipe": recipe.image_size, "run": image_size}
    return out


def _flat(cfg: TrainConfig) -> dict:
    return {**dataclasses.asdict(cfg.model), **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "model"}}


def describe(name: str, diffs: dict) -> str:
    """One line for logs, reports and model cards."""
    if not diffs:
        return f"recipe {name}, as published"
    return f"recipe {name}, with " + ", ".join(f"{k}={v['run']} (recipe: {v['recipe']})" for k, v in diffs.items())
