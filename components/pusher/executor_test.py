"""The Pusher executor on a real (tiny) SavedModel: TFX's push plus TF Serving's warmup file."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from deepattraction.components.pusher import executor
from deepattraction.serving import model_dir, push, warmup


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


def test_blessed_model_is_pushed_with_tf_serving_warmup_requests(tmp_path):
    base, pushed = _run(tmp_path, blessed=1)
    (version,) = model_dir.versions(base)
    path = os.path.join(base, str(version))
    assert push.leftovers(base) == []  # published by rename: no staging folder stays behind
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == path
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
        return pushed.get_string_custom_property("pushed_version")

    first = push("a", 2.0)
    assert push("a", 2.0) == first and model_dir.versions(base) == [int(first)]
    second = push("b", 3.0)
    assert int(second) > int(first) and model_dir.versions(base) == [int(first), int(second)]


def _save(path: str, w: float) -> str:
    m = _Weighted(w)
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
    return path


def _child(script: str) -> subprocess.Popen:
    """A push in its own process, as two pipeline runs (or a killed one) would be."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)


def test_a_push_killed_midway_leaves_no_version_and_the_next_push_clears_what_it_left(tmp_path):
    model, base = _save(str(tmp_path / "model"), 2.0), str(tmp_path / "serving" / "deepattraction")
    os.mkfifo(os.path.join(model, "variables", "stall"))  # reading it blocks: the copy stops there, mid-push
    child = _child(f"""
        from deepattraction.serving.push import push_model
        push_model({model!r}, {base!r}, "deepattraction", first=100)
    """)
    try:
        deadline = time.monotonic() + 240  # a generous bound on the child's start, not a timing check
        while not push.leftovers(base) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        staged = push.leftovers(base)
        assert staged and staged[0].startswith(push.STAGING_PREFIX), staged
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    # the killed push left a staging folder and no numeric one: nothing any server takes for a version
    assert [n for n in os.listdir(base) if n.isdigit()] == [] and model_dir.versions(base) == []
    os.remove(os.path.join(model, "variables", "stall"))
    version, pushed = push.push_model(model, base, "deepattraction", first=100)
    assert pushed and version == 100 and push.leftovers(base) == []  # the next push removed the leftover
    assert model_dir.versions(base) == [100]


def test_two_pushes_to_one_base_at_once_make_two_complete_distinct_versions(tmp_path):
    """Both pushes ask for the same version number at the same moment (as two runs in one second
    would): one gets it, the other the next, and each folder holds its own whole model."""
    models = [_save(str(tmp_path / f"model{i}"), w) for i, w in enumerate((2.0, 3.0))]
    base, go = str(tmp_path / "serving" / "deepattraction"), tmp_path / "go"
    children = [_child(f"""
        import os, time
        from deepattraction.serving.push import push_model
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print(push_model({m!r}, {base!r}, "deepattraction", first=500)[0], flush=True)
    """) for m in models]
    for c in children:
        assert c.stdout.readline().strip() == "ready"
    go.touch()
    versions = [int(c.communicate(timeout=300)[0].strip()) for c in children]
    assert all(c.returncode == 0 for c in children)
    assert sorted(versions) == [500, 501] and model_dir.versions(base) == [500, 501]
    for v, w in zip(versions, (2.0, 3.0)):
        serve = tf.saved_model.load(os.path.join(base, str(v))).signatures["serving_default"]
        assert serve(image_bytes=tf.constant([b"abcd"]))["n"].numpy()[0] == 4 * w  # its own model, whole
        assert os.path.exists(warmup.warmup_path(os.path.join(base, str(v))))
    assert push.leftovers(base) == []
