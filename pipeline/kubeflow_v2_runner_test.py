"""Compile test: the KFP v2 spec equals the golden file (regenerate: `make golden`)."""
import json
import os

from deepattraction.pipeline import kubeflow_v2_runner as k


def test_compiled_spec_matches_golden(tmp_path):
    compiled = k.compile_pipeline(k.golden_config(), str(tmp_path / "spec.json"))
    with open(k.GOLDEN_SPEC) as f:
        golden = json.load(f)
    assert k.normalized_spec(compiled) == golden, "pipeline changed: review it, then run `make golden`"


def test_spec_has_runtime_parameters_and_every_component(tmp_path):
    spec = k.normalized_spec(k.compile_pipeline(k.golden_config(), str(tmp_path / "spec.json")))["pipelineSpec"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"users_uri", "swipes_uri", "epochs", "learning_rate", "weights", "task", "head_layers"} <= set(params)
    assert params["learning_rate"]["type"] == "DOUBLE" and params["epochs"]["type"] == "INT"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"SwipeExampleGen", "ImportSchemaGen", "HParamsGen", "Transform", "Trainer", "Evaluator", "Pusher"}
    assert tasks["SwipeExampleGen"]["inputs"]["parameters"]["users_uri"] == {"componentInputParameter": "users_uri"}
    assert tasks["Pusher"]["dependentTasks"] == ["Evaluator", "Trainer"]
    executors = spec["deploymentSpec"]["executors"]
    assert executors["Trainer_executor"]["container"]["image"] == k.DEFAULT_IMAGE
    assert "deepattraction.components.swipe_example_gen.executor.Executor" in executors["SwipeExampleGen_executor"]["container"]["args"]
    push = json.loads(tasks["Pusher"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]["constantValue"]["stringValue"])
    assert push["filesystem"]["base_directory"] == "gs://YOUR_BUCKET/deepattraction/root/serving/deepattraction"


def test_golden_is_free_of_local_paths():
    with open(k.GOLDEN_SPEC) as f:
        text = f.read()
    assert os.path.dirname(os.path.dirname(os.path.abspath(__file__))) not in text
    assert "/opt/deepattraction/pipeline/schema.pbtxt" in text
