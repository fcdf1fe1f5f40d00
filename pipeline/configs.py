"""Typed pipeline configuration: one object that every runner passes to create_pipeline()."""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import os

import tensorflow as tf

from deepattraction import recipes
from deepattraction.components.data_gate import policy as validation
from deepattraction.components.evaluator.evaluation import GateConfig

PIPELINE_NAME = "deepattraction"
MODEL_NAME = "deepattraction"
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schema.pbtxt")
# Where the container image installs the package (see the Dockerfile).
IMAGE_SCHEMA_FILE = "/opt/deepattraction/pipeline/schema.pbtxt"
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
# The modules each step that runs our code executes, named by the dotted paths TFX loads (the
# Transform's preprocessing_fn, the Trainer's run_fn) or our executors; see step_code_versions.
STEP_MODULES = {
    "SwipeExampleGen": ("deepattraction.components.swipe_example_gen.executor",),
    "Transform": ("deepattraction.trainer.preprocessing",),
    "Trainer": ("deepattraction.trainer.task",),
    "Evaluator": ("deepattraction.components.evaluator.executor",),
    "RunReport": ("deepattraction.components.report.executor",),
}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs. URIs may be local paths or gs:// (read through tf.io.gfile).

    serving_base is TF Serving's model base path: models land in <serving_base>/<model_name>/<version>/.
    backbone and image_size shape the Transform graph, so they are fixed per compiled pipeline;
    hparams (TrainConfig / ModelConfig fields) can be overridden per run.
    """

    pipeline_root: str
    users_uri: str
    swipes_uri: str
    serving_base: str
    name: str = PIPELINE_NAME
    model_name: str = MODEL_NAME
    backbone: str = "inception_v3"
    image_size: int = 0
    hparams: dict = dataclasses.field(default_factory=dict)
    recipe: str = ""  # the recipe these values come from (recipes.py; from_recipe), named in the report
    gate: GateConfig = GateConfig()
    block_on: str = validation.BLOCK_SCHEMA  # what data validation anomalies stop the Trainer (see DataGate)
    schema_file: str = SCHEMA_FILE
    # The splits Transform writes transformed examples of: the Trainer's two. The Evaluator and
    # the report read the raw examples, through the served model's own Transform graph.
    transform_splits: tuple[str, ...] = ("train", "eval")
    beam_pipeline_args: tuple[str, ...] = LOCAL_BEAM_ARGS
    metadata_path: str | None = None  # sqlite MLMD for local runs; KFP brings its own
    enable_cache: bool = True
    # GCS buckets (gs://B or gs://B/PREFIX) the users table's photo_uri may name besides its own
    # folder; empty: only the table's folder (SwipeExampleGen rejects any other photo).
    photo_buckets: tuple[str, ...] = ()

    @property
    def push_dir(self) -> str:
        return os.path.join(self.serving_base, self.model_name)

    @property
    def transform_config(self) -> dict:
        return {"backbone": self.backbone, "image_size": self.image_size}

    @property
    def trainer_hparams(self) -> dict:
        return {"backbone": self.backbone, **self.hparams}

    def recipe_line(self) -> str:
        """The recipe and every value this configuration sets apart from it."""
        if not self.recipe:
            return "no recipe"
        return recipes.describe(self.recipe, recipes.differences(
            recipes.get(self.recipe), self.trainer_hparams, dataclasses.asdict(self.gate), self.image_size))


def from_recipe(recipe: str, *, pipeline_root: str, users_uri: str, swipes_uri: str, serving_base: str,
                weights_file: str, hparams: dict | None = None, gate: dict | None = None,
                image_size: int | None = None, block_on: str | None = None, **fields) -> PipelineConfig:
    """A PipelineConfig that trains `recipe`, with `weights_file` for its weights (recipes.weights_file
    or ensure_weights resolve the recipe's) and single values overridden: `hparams` (Trainer
    fields), `gate` (GateConfig fields; None values keep the recipe's), the crop size, the policy."""
    r = recipes.get(recipe)
    hparams = dict(hparams or {})
    if "backbone" in hparams and hparams["backbone"] != r.backbone:
        raise ValueError(f"the backbone is the recipe's ({recipe}: {r.backbone}): choose another recipe "
                         f"({', '.join(recipes.RECIPES)}), not --hparam backbone")
    hparams.pop("backbone", None)
    return PipelineConfig(
        pipeline_root=pipeline_root, users_uri=users_uri, swipes_uri=swipes_uri, serving_base=serving_base,
        backbone=r.backbone, image_size=r.image_size if image_size is None else image_size,
        hparams={**r.hparams, "weights": weights_file, **hparams}, recipe=recipe,
        gate=recipes.gate_with(r.gate, gate or {}), block_on=block_on or r.block_on, **fields)


def module_files(modules: tuple[str, ...], package: str = "deepattraction") -> dict[str, str]:
    """Module name -> source file of `modules` and every module of `package` they import, directly
    or not (imports inside functions included), with their packages' __init__ files. Found from
    the import statements in their sources, without importing the modules themselves (find_spec
    imports only their parent packages)."""
    found: dict[str, str] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, AttributeError, ValueError):  # `from a.b import NAME`: NAME is no module
            spec = None
        if spec is None or not (spec.origin or "").endswith(".py"):
            continue
        found[name] = spec.origin
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read(), spec.origin)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                named = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            todo += [n for n in named if n.split(".")[0] == package]
    return found


def code_version(modules: tuple[str, ...], package: str = "deepattraction") -> str:
    """Hash of the sources a step executes (module_files) and of the data files beside them (the
    report's stylesheet). Code named by dotted path (run_fn, preprocessing_fn, our executors) is
    not fingerprinted by TFX, so without this a cached result would survive a code change; and
    per step, so an edit to the Trainer's code does not rerun the Transform's face detection."""
    h = hashlib.sha256()
    files = module_files(modules, package)
    dirs = sorted({os.path.dirname(path) for path in files.values()})
    for name in sorted(files):
        with open(files[name], "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    for d in dirs:
        for entry in sorted(os.listdir(d)):
            path = os.path.join(d, entry)
            if os.path.isfile(path) and not entry.endswith((".py", ".pyc")) and not entry.startswith("."):
                with open(path, "rb") as f:
                    h.update(entry.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def step_code_versions(step_modules: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """Step id -> code_version, for the local runs' cache keys (on Kubeflow the image digest
    plays this part)."""
    return {step: code_version(mods) for step, mods in (step_modules or STEP_MODULES).items()}


LOCAL_PATH_FIELDS = ("pipeline_root", "users_uri", "swipes_uri", "serving_base", "schema_file", "metadata_path")


def with_absolute_paths(cfg: PipelineConfig) -> PipelineConfig:
    """Local paths made absolute (URIs such as gs:// kept): the steps' cache keys hold the input
    URIs, so the same tables named from two working directories would otherwise miss the cache."""
    def absolute(path: str | None) -> str | None:
        return path if path is None or "://" in path else os.path.abspath(path)

    return dataclasses.replace(cfg, **{f: absolute(getattr(cfg, f)) for f in LOCAL_PATH_FIELDS})


def input_fingerprint(*uris: str) -> str:
    """Size and modification time of each input table: new swipes make a new fingerprint,
    so cached ExampleGen results are reused only for the same data."""
    h = hashlib.sha256()
    for uri in uris:
        st = tf.io.gfile.stat(uri)
        h.update(f"{uri}|{st.length}|{st.mtime_nsec}".encode())
    return h.hexdigest()[:16]
