"""Local end-to-end runs: LocalDagRunner, sqlite MLMD, Beam DirectRunner, real TFX components, a
real SavedModel pushed to a TF Serving model base path and served over gRPC.

The runs are `make demo`'s own command at reduced size, for three seeds, two with 2 intra-op
threads and one with 1, so a recipe that only learns on some machines fails here first. The
first seed's run is then the pipeline that the other tests continue (caching, the gate,
continuous training, predictions)."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
from google.protobuf import text_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from conftest import WEIGHTS_DIR
from deepattraction import demo
from deepattraction.cli import build_parser, cmd_run, pipeline_config
from deepattraction.components.data_gate.executor import DataValidationBlocked
from deepattraction.components.data_gate.validation import BASELINE_DIR, VERDICT_FILE
from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.components.report import browser
from deepattraction.demo_data import DemoDataConfig, data_tables, make_demo_data
from deepattraction.pipeline import local_runner, results
from deepattraction.pipeline.configs import PipelineConfig
from deepattraction.sample_photos import encode_jpeg
from deepattraction.serving import model_dir
from deepattraction.serving.predict import LocalModel
from deepattraction.trainer import features

pytestmark = pytest.mark.e2e
COMPONENTS = {"SwipeExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator", "DataGate", "HParamsGen",
              "Transform", "Trainer", "Evaluator", "RunReport", "Pusher"}
RESOLVER = "LatestBlessedModel"  # resolves inputs only: no execution of its own
COMPLETE, CACHED, FAILED = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED,
                           metadata_store_pb2.Execution.FAILED)
USERS = 400  # the demo has 1000; 400 still gives test and eval splits of about 40 photos
RUNS = ((1, 2), (2, 1))  # (seed, intra-op threads): two datasets, both thread settings
SERVED = re.compile(r"served: (\S+) like ratio ([\d.]+), P\(male\) ([\d.]+), faces (\d+) \(gRPC, version (\d+)\)$")
DEMO = re.compile(r"demo: like-ratio weighted MSE ([\d.]+) vs constant ([\d.]+) \(ratio ([\d.]+)\), "
                  r"gender accuracy ([\d.]+) vs majority ([\d.]+)$")


def _store(cfg: PipelineConfig) -> metadata_store.MetadataStore:
    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = local_runner.metadata_path(cfg)
    conn.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(conn)


def executions(cfg: PipelineConfig) -> dict:
    """node id -> its executions' states, oldest first, from the run's sqlite MLMD."""
    store = _store(cfg)
    out = {}
    for ctx in store.get_contexts_by_type("node"):
        node = ctx.name.split(".", 1)[1]
        out[node] = [e.last_known_state for e in sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)]
    return out


def run_demo(workdir, seed: int, threads: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepattraction", "demo", "--workdir", str(workdir),
                           "--num-users", str(USERS), "--seed", str(seed), "--threads", str(threads),
                           "--weights-dir", WEIGHTS_DIR, *extra], capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory, facenet_weights):
    """seed -> (DemoConfig, what demo-data wrote, the finished `deepattraction demo` process)."""
    out = {}
    for seed, threads in RUNS:
        cfg = demo.DemoConfig(workdir=str(tmp_path_factory.mktemp(f"demo-seed{seed}")), num_users=USERS, seed=seed,
                              weights_dir=WEIGHTS_DIR)
        made = make_demo_data(DemoDataConfig(out_dir=cfg.data_dir, num_users=USERS, seed=seed))
        out[seed] = (cfg, made, run_demo(cfg.workdir, seed, threads))
    return out


@pytest.mark.parametrize("seed", [s for s, _ in RUNS])
def test_the_demo_ends_in_a_blessed_model_served_over_grpc(demo_runs, facenet_weights, seed):
    cfg, _, proc = demo_runs[seed]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report, served, last = proc.stdout.strip().splitlines()[-3:]
    assert report.startswith("report: ") and os.path.getsize(report[len("report: "):]) > 50_000
    m = DEMO.match(last)
    assert m, last
    mse, constant, ratio, accuracy, majority = map(float, m.groups())
    assert ratio <= 0.7 and mse < constant and accuracy > majority + 0.2, last
    s = SERVED.match(served)
    assert s, served
    photo, like_ratio, p_male, faces, version = s.groups()
    push_dir = demo.pipeline_config(cfg, facenet_weights).push_dir
    assert int(version) == model_dir.versions(push_dir)[-1]
    # The served answer is the pushed model's own answer for that photo.
    local = LocalModel(push_dir).predict_files([photo])[0]
    assert float(like_ratio) == pytest.approx(local.like_ratio, abs=5e-4)
    assert float(p_male) == pytest.approx(local.male_probability, abs=5e-4) and int(faces) == local.face_count == 1


def test_a_model_that_learns_nothing_is_not_blessed_and_the_demo_fails_saying_so(demo_runs, facenet_weights):
    """Learning rate 0 leaves the training priors: no better than the constant, so not blessed,
    nothing new pushed, no served line, and a non-zero exit."""
    seed, threads = RUNS[1]
    cfg, _, _ = demo_runs[seed]
    push_dir = demo.pipeline_config(cfg, facenet_weights).push_dir
    before = model_dir.versions(push_dir)
    proc = run_demo(cfg.workdir, seed, threads, "--hparam", "learning_rate=0")
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("demo: model NOT blessed (") and "like-ratio weighted MSE" in lines[-1]
    assert not any(line.startswith("served: ") for line in lines)
    assert model_dir.versions(push_dir) == before


@pytest.fixture(scope="module")
def first_run(demo_runs, facenet_weights):
    """The first seed's demo run, as the pipeline config it ran."""
    cfg, made, _ = demo_runs[RUNS[0][0]]
    return demo.pipeline_config(cfg, facenet_weights), made, cfg.data_dir


def test_every_component_executed_and_recorded_in_mlmd(first_run):
    cfg, _, _ = first_run
    states = {k: v for k, v in executions(cfg).items() if k != RESOLVER}
    assert set(states) == COMPONENTS
    assert all(s == [COMPLETE] for s in states.values()), states


def test_the_trainer_streamed_transform_s_materialised_crops(first_run):
    """Transform wrote one transformed example per photo of the Trainer's splits (uint8 crops at
    the backbone's size), and the Trainer's examples input is that artifact, not the raw photos."""
    cfg, _, _ = first_run
    store = _store(cfg)
    [node] = [c for c in store.get_contexts_by_type("node") if c.name.split(".", 1)[1] == "Trainer"]
    [trainer] = store.get_executions_by_context(node.id)
    inputs = {ev.artifact_id for ev in store.get_events_by_execution_ids([trainer.id])
              if ev.type == metadata_store_pb2.Event.INPUT and ev.path.steps[0].key == "examples"}
    [examples] = store.get_artifacts_by_id(list(inputs))
    transformed = results.latest_output(cfg.pipeline_root, "Transform", "transformed_examples")
    assert examples.uri == transformed
    assert sorted(os.listdir(transformed)) == ["Split-eval", "Split-train"]
    raw = results.latest_output(cfg.pipeline_root, "SwipeExampleGen", "examples")
    spec = {features.USER_ID_XF: tf.io.FixedLenFeature([], tf.string),
            features.IMAGE_XF: tf.io.FixedLenFeature([160, 160, 3], tf.int64)}

    def ids(folder, split, key):
        files = tf.io.gfile.glob(os.path.join(folder, f"Split-{split}", "*"))
        ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
        return sorted(tf.io.parse_single_example(r, {key: spec[features.USER_ID_XF]})[key].numpy() for r in ds)

    for split in ("train", "eval"):
        assert ids(transformed, split, features.USER_ID_XF) == ids(raw, split, features.USER_ID_KEY)
    files = tf.io.gfile.glob(os.path.join(transformed, "Split-eval", "*"))
    crop = tf.io.parse_single_example(next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP"))), spec)
    assert 0 <= int(tf.reduce_min(crop[features.IMAGE_XF])) and int(tf.reduce_max(crop[features.IMAGE_XF])) <= 255


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
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb")) and os.path.isdir(os.path.join(version_dir,
                                                                                                      "variables"))
    assert "demo: like-ratio weighted MSE" in r.demo_line()
    # Per-group figures with intervals; the report, opened in Chromium, shows the headline first
    # and the per-group calibration curves.
    for g in ("female", "male"):
        lo, hi = m["slices"][g]["ratio_weighted_mse_ci"]
        assert lo <= hi and m["slices"][g]["gap"] > 0 and len(m["slices"][g]["ratio_calibration"]) > 1
    assert m["group_gap"]["resamples"] == GateConfig().bootstrap_resamples and m["group_gap"]["passed"] is None
    v = browser.view(r.report_path)
    assert v.console_errors == [] and v.page_errors == [] and v.failed_requests == []
    [curves] = [i for i in v.images if i["alt"] == "per-group calibration curves"]
    assert curves["complete"] and curves["width"] > 0
    assert "whole split" in v.tables["groups"] and v.tops["headline"] < v.tops["groups"] < v.tops["metrics"]

    # The first run has data validation but nothing to measure drift against; its blessing keeps
    # the training split's statistics for the next run.
    with open(os.path.join(results.latest_output(cfg.pipeline_root, "DataGate", "data_validation"), VERDICT_FILE)) as f:
        verdict = json.load(f)
    assert verdict["schema_anomalies"] == {"train": [], "eval": [], "test": []} and verdict["drift"] is None
    assert os.path.exists(os.path.join(results.latest_output(cfg.pipeline_root, "Evaluator", "blessing"),
                                       BASELINE_DIR, "FeatureStats.pb"))


def test_pushed_model_predicts_a_photo_through_the_cli(first_run):
    cfg, _, data = first_run
    photos = sorted(os.path.join(data, "photos", p) for p in os.listdir(os.path.join(data, "photos"))
                    if p.startswith("u"))[:2]
    out = subprocess.run([sys.executable, "-m", "deepattraction", "predict", "--json", "--model", cfg.push_dir,
                          *photos],
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
    proc = subprocess.run([sys.executable, "-m", "deepattraction", "predict", "--model", cfg.push_dir, str(bad),
                           good],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"{bad}: error:") and lines[1].startswith(f"{good}: like_ratio")


def test_unreachable_gate_pushes_nothing_and_reuses_the_cache(first_run, capsys):
    """Through `deepattraction run` (its arguments give the first run's config but the gate), which
    prints where this run's report is."""
    cfg, _, _ = first_run
    before = model_dir.versions(cfg.push_dir)
    strict = dataclasses.replace(cfg, gate=dataclasses.replace(cfg.gate, max_mse_ratio=0.0))
    args = build_parser().parse_args([
        "run", "--users", cfg.users_uri, "--swipes", cfg.swipes_uri, "--pipeline-root", cfg.pipeline_root,
        "--serving-base", cfg.serving_base, "--recipe", cfg.recipe, "--weights-dir", WEIGHTS_DIR,
        "--max-mse-ratio", "0.0"])
    seed = {"seed": cfg.hparams["seed"]}
    assert pipeline_config(args, seed) == strict  # so the cached steps are reused
    r = cmd_run(args, seed)
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


def test_new_swipes_retrain_and_a_regressing_model_is_not_pushed(first_run, tmp_path):
    """Continuous training: new swipes (in a copy of the data, so the shared run stays as it was)
    change the data fingerprint, so everything from ExampleGen on runs again; the Evaluator scores
    the last blessed model on the same photos and, under a gate no candidate can pass (its MSE must
    be at most 0 x the last blessed model's), refuses the candidate for regressing: nothing is pushed."""
    cfg, _, data = first_run
    copy = str(tmp_path / "data")
    shutil.copytree(data, copy)
    users, swipes = data_tables(copy)
    with open(swipes) as f:
        header, *rows = f.read().splitlines()
    # a year later: after every photo update
    later = [r.replace("2026-", "2027-", 1) for r in rows if r.count(",") == 3][:500]
    with open(swipes, "a") as f:
        f.write("\n".join(later) + "\n")
    before = model_dir.versions(cfg.push_dir)
    first_model = results.latest_output(cfg.pipeline_root, "Trainer", "model")
    later_cfg = dataclasses.replace(cfg, users_uri=users, swipes_uri=swipes, gate=GateConfig(max_mse_regression=-1.0))
    local_runner.run(later_cfg)
    states = executions(later_cfg)
    for node in ("SwipeExampleGen", "Transform", "Trainer", "Evaluator"):
        assert states[node][-1] == COMPLETE, (node, states[node])
    m = results.latest(later_cfg).metrics
    assert m["baseline_model"]["uri"] == first_model
    assert m["baseline_model"]["count"] == m["count"]
    assert not m["blessed"] and any("regresses against the last blessed model" in r for r in m["not_blessed_because"])
    # Drift of the new data is measured against the statistics the first run's blessing kept.
    with open(os.path.join(results.latest_output(cfg.pipeline_root, "DataGate", "data_validation"), VERDICT_FILE)) as f:
        verdict = json.load(f)
    assert verdict["baseline"].startswith(os.path.join(cfg.pipeline_root, "Evaluator", "blessing"))
    assert os.path.exists(os.path.join(verdict["baseline"], "BLESSED"))
    assert {d["feature"] for d in verdict["drift"]["measurements"]} == {"gender", "like_ratio"}
    with open(results.latest(later_cfg).report_path) as f:
        assert "Drift of the training split against the last blessed run" in f.read()
    assert model_dir.versions(cfg.push_dir) == before


def test_schema_anomalies_stop_the_run_before_the_trainer(first_run, tmp_path):
    """A curated schema that allows only one gender: every male photo is an anomaly, and under the
    default policy DataGate fails the run, naming the feature, before the Trainer runs again.
    (TFX removes a failed step's outputs, so the error carries every finding.)"""
    cfg, _, _ = first_run
    schema = schema_pb2.Schema()
    with open(cfg.schema_file) as f:
        text_format.Parse(f.read(), schema)
    next(f for f in schema.feature if f.name == "gender").string_domain.ClearField("value")
    next(f for f in schema.feature if f.name == "gender").string_domain.value.append("female")
    narrow = tmp_path / "schema.pbtxt"
    narrow.write_text(text_format.MessageToString(schema))
    trainings = len(executions(cfg)["Trainer"])
    with pytest.raises(DataValidationBlocked, match=r"policy 'schema'.*train: gender: .*male") as blocked:
        local_runner.run(dataclasses.replace(cfg, schema_file=str(narrow)))
    assert "like_ratio" not in str(blocked.value)  # only what is wrong is named
    states = executions(cfg)
    assert len(states["Trainer"]) == trainings and states["DataGate"][-1] == FAILED
