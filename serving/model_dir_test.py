import os

import pytest

from deepattraction.serving import model_dir


def _version(base, v, complete=True):
    d = os.path.join(base, str(v))
    os.makedirs(os.path.join(d, "variables"))
    if complete:
        open(os.path.join(d, "saved_model.pb"), "wb").close()


def test_latest_complete_numeric_version_is_served(tmp_path):
    base = str(tmp_path / "deepattraction")
    for v in (3, 12):
        _version(base, v)
    _version(base, 20, complete=False)  # still being copied: saved_model.pb comes last
    os.makedirs(os.path.join(base, "tmp-upload"))
    assert model_dir.versions(base) == [3, 12]
    assert model_dir.resolve(base) == os.path.join(base, "12")
    assert model_dir.resolve(os.path.join(base, "3")) == os.path.join(base, "3")


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a SavedModel nor a model base path"):
        model_dir.resolve(str(tmp_path))
