"""Local end-to-end runs on tiny synthetic data: LocalDagRunner, sqlite MLMD, Beam DirectRunner,
real TFX components, a real SavedModel pushed to a TF Serving model base path."""
import argparse
import dataclasses
import json
import os
import subprocess
import sys

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from deepattraction import demo
from deepattraction.cli import cmd_run, pipeline_config
from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.demo_data import DemoDataConfig, data_tables, make_demo_data
from deepattraction.pipeline import local_runner, results
from deepattraction.pipeline.configs import PipelineConfig
from deepattraction.serving import model_dir
from deepattraction.serving.predict import LocalModel

pytestmark = pytest.mark.e2e
COMPONENTS = {"SwipeExampleGen", "ImportSchemaGen", "HParamsGen", "Transform", "Trainer", "Evaluator", "RunReport",
              "Pusher"}
RESOLVER = "LatestBlessedModel"  # resolves inputs only: no execution of its own
COMPLETE, CACHED = metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED


def executions(cfg: PipelineConfig) -> dict:
    """node id -> its executions' states, oldest first, from the run's sqlite MLMD."""
    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = local_runner.metadata_path(cfg)
    conn.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(conn)
    out = {}
    for ctx in store.get_contexts_by_type("node"):
        node = ctx.name.split(".", 1)[1]
        out[node] = [e.last_known_state for e in sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)]
    return out


@pytest.fixture(scope="module")
def hparams(facenet_weights):
    """The demo's recipe: FaceNet's real weights, the head fitted on its frozen outputs."""
    return {**demo.HPARAMS, "weights": facenet_weights}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, hparams):
    work = tmp_path_factory.mktemp("e2e")
    data = str(work / "data")
    made = make_demo_data(DemoDataConfig(out_dir=data, num_users=240, image_size=96, seed=11))
    users, swipes = data_tables(data)
    cfg = PipelineConfig(pipeline_root=str(work / "root"), users_uri=users, swipes_uri=swipes,
                         serving_base=str(work / "serving"), backbone=demo.BACKBONE, hparams=hparams)
    local_runner.run(cfg)
    return cfg, made, data


def test_every_component_executed_and_recorded_in_mlmd(first_run):
    cfg, _, _ = first_run
    states = {k: v for k, v in executions(cfg).items() if k != RESOLVER}
    assert set(states) == COMPONENTS
    assert all(s == [COMPLETE] for s in states.values()), states


def test_counts_add_up_and_rejects_have_reasons(first_run):
    cfg, made, _ = first_run
    r = results.latest(cfg)
    s = r.data_summary
    assert s["users_in"] == made.users == sum(s["users_in_splits"].values()) + s["users_rejected"]
    assert s["users_rejected"] == made.bad_users and s["swipes_before_update"] == made.pre_update_swipes
    assert s["swipes_in"] == made.swipes == s["swipes_counted"] + s["swipes_before_update"] + s["swipes_rejected"]
    with open(r.rejects_path) as f:
        assert f.readline().strip() == "kind,id,reason,source"
        kinds = [line.split(",")[0] for line in f]
    # Each refused photo's target also has one `swipes` row for the swipes on it that cannot count.
    assert (kinds.count("user"), kinds.count("swipe"), kinds.count("swipes")) == (made.bad_users, made.bad_swipes, 2)


def test_learnable_data_gives_a_blessed_pushed_model(first_run):
    cfg, _, _ = first_run
    r = results.latest(cfg)
    m = r.metrics
    assert m["blessed"], m["not_blessed_because"]
    assert m["ratio_weighted_mse"] < m["constant_weighted_mse"] and m["gender_accuracy"] > m["majority_accuracy"]
    assert len(r.pushed_versions) == 1
    version_dir = os.path.join(cfg.push_dir, str(r.pushed_versions[0]))
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb")) and os.path.isdir(os.path.join(version_dir, "variables"))
    assert "demo: like-ratio weighted MSE" in r.demo_line()


def test_pushed_model_predicts_a_photo_through_the_cli(first_run):
    cfg, _, data = first_run
    photos = sorted(os.path.join(data, "photos", p) for p in os.listdir(os.path.join(data, "photos")) if p.startswith("u"))[:2]
    out = subprocess.run([sys.executable, "-m", "deepattraction.cli", "predict", "--json", "--model", cfg.push_dir, *photos],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert len(out) == 2
    in_process = LocalModel(cfg.push_dir).predict_files(photos)
    for line, expected in zip(out, in_process):
        got = json.loads(line)
        assert 0 < got["like_ratio"] < 1 and 0 <= got["male_probability"] <= 1 and got["face_count"] >= 0
        assert got["like_ratio"] == pytest.approx(expected.like_ratio, abs=1e-6)


def test_served_model_counts_faces_in_a_raw_photo(first_run):
    """The MTCNN in the Transform graph runs inside the pushed model: raw photo in, faces out."""
    import numpy as np
    from skimage import data

    from deepattraction.face_parity import encode_jpeg

    cfg, _, _ = first_run
    astronaut = data.astronaut()
    face = astronaut[20:220, 130:330]  # her head, with a margin
    three = np.concatenate([face, face[:, ::-1], face], axis=1)
    one_pred, three_pred, none_pred = LocalModel(cfg.push_dir).predict_bytes(
        [encode_jpeg(astronaut), encode_jpeg(three), encode_jpeg(data.coffee())])
    assert one_pred.face_count == 1 and 0 < one_pred.like_ratio < 1
    assert three_pred.face_count == 3
    assert none_pred.face_count == 0


def test_cli_names_a_bad_photo_and_still_predicts_the_good_one(first_run, tmp_path):
    cfg, _, data = first_run
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    good = os.path.join(data, "photos", "u00001.jpg")
    proc = subprocess.run([sys.executable, "-m", "deepattraction.cli", "predict", "--model", cfg.push_dir, str(bad), good],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"{bad}: error:") and lines[1].startswith(f"{good}: like_ratio")


def test_unreachable_gate_pushes_nothing_and_reuses_the_cache(first_run, hparams, capsys):
    """Through `deepattraction run` (its arguments give the first run's config but the gate), which
    prints where this run's report is."""
    cfg, _, _ = first_run
    before = model_dir.versions(cfg.push_dir)
    strict = dataclasses.replace(cfg, gate=GateConfig(max_mse_ratio=0.0))
    args = argparse.Namespace(users=cfg.users_uri, swipes=cfg.swipes_uri, data=None, pipeline_root=cfg.pipeline_root,
                              serving_base=cfg.serving_base, backbone=cfg.backbone, image_size=cfg.image_size,
                              hparam=[], max_mse_ratio=0.0, min_accuracy_gain=0.0, max_mse_regression=0.0,
                              max_accuracy_regression=0.0, beam_arg=[], threads=0)
    assert pipeline_config(args, hparams) == strict  # so the cached steps are reused
    r = cmd_run(args, hparams)
    assert not r.metrics["blessed"] and "not below 0.0 x constant" in r.metrics["not_blessed_because"][0]
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("report: ")]
    assert printed == [f"report: {r.report_path}"] and r.report_path.startswith(cfg.pipeline_root)
    with open(r.report_path) as f:
        page = f.read()
    assert len(page) > 50_000 and "NOT BLESSED" in page and "not below 0.0 x constant" in page
    assert page.count('<figure class="thumb">') > 0 and "<h1>DeepAttraction model card</h1>" in page
    assert model_dir.versions(cfg.push_dir) == before
    states = executions(cfg)
    for node in ("SwipeExampleGen", "Transform", "Trainer"):
        assert states[node] == [COMPLETE, CACHED], (node, states[node])
    assert states["Evaluator"] == [COMPLETE, COMPLETE] and states["RunReport"] == [COMPLETE, COMPLETE]


def test_new_swipes_retrain_and_push_only_a_model_that_does_not_regress(first_run):
    """Continuous training: new swipes change the data fingerprint, so everything from ExampleGen
    on runs again; the Evaluator scores the last blessed model on the same photos and gates on it."""
    cfg, _, data = first_run
    users, swipes = data_tables(data)
    with open(swipes) as f:
        header, *rows = f.read().splitlines()
    later = [r.replace("2026-", "2027-", 1) for r in rows if r.count(",") == 3][:500]  # a year later: after every update
    with open(swipes, "a") as f:
        f.write("\n".join(later) + "\n")
    before = model_dir.versions(cfg.push_dir)
    first_model = results.latest_output(cfg.pipeline_root, "Trainer", "model")
    local_runner.run(cfg)
    states = executions(cfg)
    for node in ("SwipeExampleGen", "Transform", "Trainer", "Evaluator"):
        assert states[node][-1] == COMPLETE, (node, states[node])
    m = results.latest(cfg).metrics
    assert m["baseline_model"]["uri"] == first_model
    assert m["baseline_model"]["count"] == m["count"]
    after = model_dir.versions(cfg.push_dir)
    if m["blessed"]:
        assert len(after) == len(before) + 1 and m["ratio_weighted_mse"] <= m["baseline_model"]["ratio_weighted_mse"]
    else:
        assert after == before
