"""nsfwjs's tarball: refused unless it is the pinned one, and its member and shard names cannot
reach outside the folders they are read from or written to (Node runs the modules here)."""
import io
import json
import tarfile

import pytest

from deepattraction import nsfwjs
from deepattraction.weights import sha256

MODEL = nsfwjs.MODEL_DIR


def _tarball(path, files: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return str(path)


def _module(export) -> bytes:
    return f"module.exports = {json.dumps(export)};".encode()


def _model(paths: list[str]) -> bytes:
    return _module({"modelTopology": {}, "weightsManifest": [{"paths": paths, "weights": []}]})


def unpack(tgz: str, out: str) -> str:
    """Past the pin with the crafted tarball's own hash, to reach the checks after it."""
    return nsfwjs.unpack_inception(tgz, out, pinned_sha256=sha256(tgz))


def test_an_unpinned_tarball_is_refused_before_it_is_opened(tmp_path):
    tgz = _tarball(tmp_path / "nsfwjs-4.3.0.tgz", {f"{MODEL}/model.min.js": _model([])})
    with pytest.raises(ValueError, match=f"sha256 {sha256(tgz)} is not the pinned nsfwjs 4.3.0 tarball"):
        nsfwjs.unpack_inception(tgz, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_well_formed_tarball_unpacks_to_model_json_and_shards(tmp_path):
    tgz = _tarball(tmp_path / "ok.tgz", {f"{MODEL}/model.min.js": _model(["group1-shard1of1"]),
                                         f"{MODEL}/group1-shard1of1.min.js": _module("AAECAw==")})
    path = unpack(tgz, str(tmp_path / "out"))
    assert json.load(open(path))["weightsManifest"][0]["paths"] == ["group1-shard1of1"]
    assert (tmp_path / "out" / "group1-shard1of1").read_bytes() == bytes([0, 1, 2, 3])


@pytest.mark.parametrize("name", [f"{MODEL}/../../../../escaped.min.js", f"/{MODEL}/model.min.js"])
def test_member_names_that_leave_the_archive_refuse_it(tmp_path, name):
    tgz = _tarball(tmp_path / "bad.tgz", {f"{MODEL}/model.min.js": _model([]), name: b"x"})
    with pytest.raises(ValueError, match=f"member {name!r} is not a relative path inside its folder"):
        unpack(tgz, str(tmp_path / "out"))


def test_a_link_in_the_model_folder_refuses_the_archive(tmp_path):
    secret = tmp_path / "secret.js"
    secret.write_bytes(_model([]))
    tgz = _tarball(tmp_path / "link.tgz", {}, links={f"{MODEL}/model.min.js": str(secret)})
    with pytest.raises(ValueError, match="model.min.js' is a link; refusing the archive"):
        unpack(tgz, str(tmp_path / "out"))


@pytest.mark.parametrize("shard", ["../inception_v3/s", "/tmp/s", "sub/s"])
def test_shard_names_must_be_plain_file_names(tmp_path, shard):
    """The first would have been found in the archive and written outside the output folder."""
    tgz = _tarball(tmp_path / "shard.tgz", {f"{MODEL}/model.min.js": _model([shard]),
                                            f"{MODEL}/s.min.js": _module("AAAA")})
    with pytest.raises(ValueError, match=f"weight shard {shard!r} is not a plain file name"):
        unpack(tgz, str(tmp_path / "out" / "model"))
    assert not list((tmp_path).glob("out/**/s")) and not (tmp_path / "out").exists()
