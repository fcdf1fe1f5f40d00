"""Models in the Pusher's layout (see sample_model) and a local server, built once per session:
the tiny model for the server's behaviour, the real one for the parity test."""
import os
import shutil

import pytest

from deepattraction.serving import warmup
from deepattraction.serving.predict import LocalModel
from deepattraction.serving.sample_model import MODEL_NAME, export_model, export_tiny_model
from deepattraction.serving.server import LocalServer, ServerConfig, model_config


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> str:
    """A real model at <base>/deepattraction/1, pushed by our Pusher's copy step (warmup file included)."""
    return export_model(str(tmp_path_factory.mktemp("serving_base")), 1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The tiny model at <base>/deepattraction/1, pushed the same way."""
    return export_tiny_model(str(tmp_path_factory.mktemp("tiny_base")), 1)


@pytest.fixture(scope="session")
def photos():
    return warmup.demo_photos(6, size=80, seed=7)


@pytest.fixture(scope="session")
def local_predictions(tiny_model, photos):
    """The in-process tiny model's predictions on `photos`: what the server's answers must equal."""
    return LocalModel(tiny_model).predict_bytes(photos)


def copy_version(src: str, dst: str) -> str:
    """Copies a SavedModel as the Pusher does: saved_model.pb last (TF Serving's completion signal)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("saved_model.pb"))
    shutil.copy(os.path.join(src, "saved_model.pb"), os.path.join(dst, "saved_model.pb"))
    return dst


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    """A running local server over the tiny model on loopback with free ports; base path is its own
    copy, so tests may push versions to it."""
    base = str(tmp_path_factory.mktemp("served") / MODEL_NAME)
    os.makedirs(base)
    copy_version(tiny_model, os.path.join(base, "1"))
    srv = LocalServer([model_config(MODEL_NAME, base)], ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.3))
    srv.start()
    srv.wait_ready(300)
    srv.base_path = base
    yield srv
    srv.stop()
