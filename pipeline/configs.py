"""Typed pipeline configuration: one object that every runner passes to create_pipeline()."""
from __future__ import annotations

import dataclasses
import hashlib
import os

import tensorflow as tf

from deepattraction import components, trainer
from deepattraction.components.data_gate import policy as validation
from deepattraction.components.evaluator.evaluation import GateConfig

PIPELINE_NAME = "deepattraction"
MODEL_NAME = "deepattraction"
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schema.pbtxt")
# Where the container image installs the package (see the Dockerfile).
IMAGE_SCHEMA_FILE = "/opt/deepattraction/pipeline/schema.pbtxt"
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
CODE_ROOTS = tuple(os.path.dirname(p.__file__) for p in (trainer, components))


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
    gate: GateConfig = GateConfig()
    block_on: str = validation.BLOCK_SCHEMA  # what data validation anomalies stop the Trainer (see DataGate)
    schema_file: str = SCHEMA_FILE
    # The splits Transform writes transformed examples of: the Trainer's two. The Evaluator and
    # the report read the raw examples, through the served model's own Transform graph.
    transform_splits: tuple[str, ...] = ("train", "eval")
    beam_pipeline_args: tuple[str, ...] = LOCAL_BEAM_ARGS
    metadata_path: str | None = None  # sqlite MLMD for local runs; KFP brings its own
    enable_cache: bool = True

    @property
    def push_dir(self) -> str:
        return os.path.join(self.serving_base, self.model_name)

    @property
    def transform_config(self) -> dict:
        return {"backbone": self.backbone, "image_size": self.image_size}

    @property
    def trainer_hparams(self) -> dict:
        return {"backbone": self.backbone, **self.hparams}


def code_fingerprint(roots: tuple[str, ...] = CODE_ROOTS) -> str:
    """Hash of the Python sources the components execute (trainer/ and components/, tests left out).
    Code named by dotted path (run_fn, preprocessing_fn, our executors) is not fingerprinted by
    TFX, so without this a cached result would survive a code change."""
    h = hashlib.sha256()
    for root in roots:
        for dirpath, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                if name.endswith(".py") and not name.endswith("_test.py"):
                    with open(os.path.join(dirpath, name), "rb") as f:
                        h.update(name.encode() + f.read())
    return h.hexdigest()[:16]


def input_fingerprint(*uris: str) -> str:
    """Size and modification time of each input table: new swipes make a new fingerprint,
    so cached ExampleGen results are reused only for the same data."""
    h = hashlib.sha256()
    for uri in uris:
        st = tf.io.gfile.stat(uri)
        h.update(f"{uri}|{st.length}|{st.mtime_nsec}".encode())
    return h.hexdigest()[:16]
