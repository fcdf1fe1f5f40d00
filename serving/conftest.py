"""A real exported model (see sample_model) and a local server over it, built once per session:
what the Pusher writes, without a pipeline run."""
import os
import shutil

import pytest

from deepattraction.serving.sample_model import MODEL_NAME, export_model


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> str:
    """<base>/deepattraction/1, pushed by our Pusher's copy step (warmup file included)."""
    return export_model(str(tmp_path_factory.mktemp("serving_base")), 1)


@pytest.fixture(scope="session")
def photos():
    from deepattraction.serving import warmup

    return warmup.demo_photos(6, size=80, seed=7)


@pytest.fixture(scope="session")
def local_predictions(exported_model, photos):
    """The in-process SavedModel's predictions on `photos`: what every served answer must equal."""
    from deepattraction.serving.predict import LocalModel

    return LocalModel(exported_model).predict_bytes(photos)


def copy_version(src: str, dst: str) -> str:
    """Copies a SavedModel as the Pusher does: saved_model.pb last (TF Serving's completion signal)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("saved_model.pb"))
    shutil.copy(os.path.join(src, "saved_model.pb"), os.path.join(dst, "saved_model.pb"))
    return dst


@pytest.fixture(scope="session")
def server(exported_model, tmp_path_factory):
    """A running local server on loopback with free ports; base path is its own copy, so tests may
    push versions to it."""
    from deepattraction.serving.server import LocalServer, ServerConfig, model_config

    base = str(tmp_path_factory.mktemp("served") / MODEL_NAME)
    os.makedirs(base)
    copy_version(exported_model, os.path.join(base, "1"))
    srv = LocalServer([model_config(MODEL_NAME, base)], ServerConfig(grpc_port=0, rest_port=0, poll_seconds=0.3))
    srv.start()
    srv.wait_ready(300)
    srv.base_path = base
    yield srv
    srv.stop()
