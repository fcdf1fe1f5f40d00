"""predict_paths, the `predict` command's workflow: batches, and a bad photo that fails its batch
retried alone so it never hides the others' predictions; the tiny model decodes in its graph."""
import pytest

from deepattraction.serving.predict import LocalModel, PhotoResult, predict_paths
from deepattraction.trainer.features import MAX_PHOTO_BYTES


@pytest.fixture
def paths(photos, tmp_path):
    out = []
    for i, p in enumerate(photos[:3]):
        out.append(str(tmp_path / f"p{i}.jpg"))
        with open(out[-1], "wb") as f:
            f.write(p)
    (tmp_path / "notes.jpg").write_bytes(b"not a photo")
    (tmp_path / "cut.jpg").write_bytes(photos[0][:len(photos[0]) // 3])  # a JPEG cut short: the graph refuses it
    return out[:2] + [str(tmp_path / "notes.jpg"), out[2], str(tmp_path / "missing.jpg"), str(tmp_path / "cut.jpg")]


def test_one_result_per_photo_in_order_bad_ones_named_good_ones_predicted(tiny_model, local_predictions, paths):
    model = LocalModel(tiny_model)
    calls = []

    def predict(photos):
        calls.append(len(photos))
        return model.predict_bytes(photos)

    results = list(predict_paths(paths, predict, batch_size=4))
    assert [r.path for r in results] == paths
    assert calls == [4, 1, 1, 1, 1, 1, 1]  # the batches of four and of cut.jpg failed, then each photo alone
    good = [r for r in results if r.error is None]
    assert [r.prediction for r in good] == local_predictions[:3]
    errors = {r.path: r.error for r in results if r.error is not None}
    assert set(errors) == {paths[2], paths[4], paths[5]}
    # The server's words for bytes that are no photo (cli_serving_test); the reader's for a missing file;
    # for a cut JPEG, the decoder's own message, not TF's "Graph execution error:" header.
    assert errors[paths[2]] == "image_bytes[0]: not an encoded JPEG, PNG, GIF or BMP image (starts b'not a ph')"
    assert "No such file" in errors[paths[4]]
    assert "JPEG" in errors[paths[5]] and "Graph execution" not in errors[paths[5]], errors[paths[5]]


def test_a_batch_of_good_photos_is_one_call(tiny_model, local_predictions, paths):
    model = LocalModel(tiny_model)
    calls = []

    def predict(photos):
        calls.append(len(photos))
        return model.predict_bytes(photos)

    good = [paths[0], paths[1], paths[3]]
    assert [r.prediction for r in predict_paths(good, predict, batch_size=2)] == local_predictions[:3]
    assert calls == [2, 1]


def test_a_file_over_the_byte_limit_is_named_unread_and_the_others_predicted(tiny_model, local_predictions, paths,
                                                                            tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:  # sparse: one byte over the limit
        f.truncate(MAX_PHOTO_BYTES + 1)
    model = LocalModel(tiny_model)
    results = list(predict_paths([paths[0], str(huge), paths[1]], model.predict_bytes, batch_size=4))
    assert [r.path for r in results] == [paths[0], str(huge), paths[1]]  # in order, the error where it falls
    assert [r.prediction for r in (results[0], results[2])] == local_predictions[:2]
    assert results[1].error == "photo file is over the 67,108,864-byte limit"


def test_result_lines_as_the_command_prints_them(local_predictions):
    ok, bad = PhotoResult("a.jpg", local_predictions[0]), PhotoResult("b.jpg", error="unreadable")
    assert ok.line() == f"a.jpg: {local_predictions[0].line()}" and bad.line() == "b.jpg: error: unreadable"
    assert ok.as_dict()["like_ratio"] == local_predictions[0].like_ratio and bad.as_dict() == {"photo": "b.jpg",
                                                                                               "error": "unreadable"}
