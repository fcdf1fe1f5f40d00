"""`deepattraction predict --server` against the local server: one line per photo, bad ones named."""
import dataclasses
import json

import pytest

from deepattraction import cli


def test_predict_through_the_server_matches_in_process_and_names_bad_photos(server, local_predictions, photos,
                                                                              tmp_path, capsys):
    paths = []
    for i, p in enumerate(photos[:3]):
        paths.append(str(tmp_path / f"p{i}.jpg"))
        with open(paths[-1], "wb") as f:
            f.write(p)
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not a photo")
    args = paths[:2] + [str(bad), paths[2], str(tmp_path / "missing.jpg")]

    assert cli.main(["predict", *args, "--server", server.grpc_target, "--json", "--batch-size", "4"]) == 1
    remote = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    by_photo = {r["photo"]: r for r in remote}
    assert set(by_photo) == set(args)  # one line per photo, in any failure
    assert "image_bytes[0]: not an encoded JPEG" in by_photo[str(bad)]["error"]
    assert "error" in by_photo[str(tmp_path / "missing.jpg")]
    for path, expected in zip(paths, local_predictions[:3]):  # same numbers through TF Serving's API as in-process
        assert by_photo[path] == json.loads(json.dumps({"photo": path, **dataclasses.asdict(expected)}))

    assert cli.main(["predict", paths[0], "--server", server.rest_url, "--rest"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{paths[0]}: like_ratio ") and "face_count" in line


def test_predict_needs_exactly_one_of_model_or_server():
    with pytest.raises(SystemExit, match="--model DIR"):
        cli.main(["predict", "x.jpg"])
    with pytest.raises(SystemExit, match="--model-base"):
        cli.main(["serve"])
