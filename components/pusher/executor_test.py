"""The Pusher executor on a real (tiny) SavedModel: TFX's push plus TF Serving's warmup file."""
import os
import time

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from deepattraction.components.pusher import executor
from deepattraction.serving import warmup


class _Echo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes):
        return {"n": tf.strings.length(image_bytes)}


def _run(tmp_path, blessed: int):
    model, blessing, pushed = (standard_artifacts.Model(), standard_artifacts.ModelBlessing(),
                               standard_artifacts.PushedModel())
    model.uri, blessing.uri, pushed.uri = (str(tmp_path / n) for n in ("model", "blessing", "pushed"))
    m = _Echo()
    tf.saved_model.save(m, os.path.join(model.uri, "Format-Serving"), signatures={"serving_default": m.serve})
    blessing.set_int_custom_property("blessed", blessed)
    base = str(tmp_path / "serving" / "deepattraction")
    dest = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    executor.Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                           {"push_destination": proto_utils.proto_to_json(dest)})
    return base, pushed


def test_blessed_model_is_pushed_with_tf_serving_warmup_requests(tmp_path, monkeypatch):
    copies = []  # (destination, whether the warmup file existed then) of each file TFX's io_utils copies

    def copy_file(src, dst, *args, **kwargs):
        copies.append((dst, os.path.exists(warmup.warmup_path(os.path.dirname(dst)))))
        return tfx_copy_file(src, dst, *args, **kwargs)

    tfx_copy_file = io_utils.copy_file
    monkeypatch.setattr(io_utils, "copy_file", copy_file)
    base, pushed = _run(tmp_path, blessed=1)
    (version,) = os.listdir(base)
    path = os.path.join(base, version)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == path
    # warmup was in place when saved_model.pb, the file TF Serving takes as "version complete", landed
    assert dict(copies)[os.path.join(path, "saved_model.pb")] is True
    # read back with TF Serving's own record type, as the model server does
    raw = [r.numpy() for r in tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))]
    logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in raw]
    assert len(logs) == 3 and all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    req = logs[-1].predict_log.request
    assert req.model_spec.name == "deepattraction" and req.model_spec.signature_name == "serving_default"
    photos = tf.make_ndarray(req.inputs["image_bytes"])
    assert photos.shape == (4,)
    assert all(tf.io.decode_image(p).shape[-1] == 3 for p in photos)  # real, decodable photos
    # the pushed model still serves
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert serve(image_bytes=tf.constant([b"abc"]))["n"].numpy()[0] == 3
    assert os.path.exists(warmup.warmup_path(pushed.uri))


def test_unblessed_model_is_not_pushed(tmp_path):
    base, pushed = _run(tmp_path, blessed=0)
    assert not os.path.exists(base) and pushed.get_int_custom_property("pushed") == 0


class _Weighted(tf.Module):
    def __init__(self, w: float):
        super().__init__()
        self.w = tf.Variable(w)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes):
        return {"n": tf.cast(tf.strings.length(image_bytes), tf.float32) * self.w}


def test_the_model_already_served_is_not_pushed_again_but_a_new_one_is(tmp_path):
    base = str(tmp_path / "serving" / "deepattraction")
    dest = proto_utils.proto_to_json(
        pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base)))

    def push(name: str, w: float):
        model, blessing, pushed = (standard_artifacts.Model(), standard_artifacts.ModelBlessing(),
                                   standard_artifacts.PushedModel())
        model.uri, pushed.uri = str(tmp_path / name), str(tmp_path / f"pushed-{name}")
        if not os.path.exists(model.uri):  # a cached Trainer hands over the very same folder
            m = _Weighted(w)
            tf.saved_model.save(m, os.path.join(model.uri, "Format-Serving"), signatures={"serving_default": m.serve})
        blessing.set_int_custom_property("blessed", 1)
        executor.Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                               {"push_destination": dest})
        time.sleep(1.1)  # versions are unix seconds: a new push would get a new one
        return pushed.get_string_custom_property("pushed_version")

    first = push("a", 2.0)
    assert push("a", 2.0) == first and os.listdir(base) == [first]
    second = push("b", 3.0)
    assert second != first and sorted(os.listdir(base)) == sorted([first, second])
