"""Compile tests: the KFP v2 spec equals the golden file (regenerate: `make golden`) and carries
what the cluster reads: image, runtime parameters, per-step resources, the GPU pool, Beam args."""
import dataclasses
import json
import os

import pytest
import yaml
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions, WorkerOptions
from kfp.client.client import _extract_pipeline_yaml

from deepattraction import recipes
from deepattraction.cli import main as cli_main
from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.pipeline import golden
from deepattraction.pipeline import kubeflow_v2_runner as k
from deepattraction.pipeline.cluster import BEAM_STEPS, BeamConfig, ClusterConfig
from deepattraction.trainer.model import ModelConfig
from deepattraction.trainer.train import TrainConfig
from deepattraction.weights import output_file

STEPS = {"SwipeExampleGen", "ImportSchemaGen", "HParamsGen", "Transform", "StatisticsGen",
         "ExampleValidator", "DataGate", "Trainer", "Evaluator", "RunReport", "Pusher"}
# The last blessed model (continuous training) compiles to two metadata queries the KFP backend runs.
RESOLVERS = {"LatestBlessedModel-model-blessing-resolver", "LatestBlessedModel-model-resolver"}


@pytest.fixture(scope="module")
def golden_spec(tmp_path_factory):
    """One compilation of the golden configuration, also written as the KFP upload package."""
    tmp = tmp_path_factory.mktemp("golden")
    compiled = k.compile_pipeline(golden.golden_config(), str(tmp / "spec.json"),
                                  kfp_package=str(tmp / "pipeline.yaml"))
    return {"spec": golden.normalized_spec(compiled), "package": str(tmp / "pipeline.yaml")}


@pytest.fixture(scope="module")
def dataflow_cli(tmp_path_factory):
    """`deepattraction compile` with a distributed Beam runner, a custom image and GPU pool."""
    tmp = tmp_path_factory.mktemp("dataflow")
    cli_main(["compile", "--output", str(tmp / "spec.json"), "--kfp-package", str(tmp / "pipeline.yaml"),
              "--image", "europe-docker.pkg.dev/p/r/deepattraction:gpu", "--pipeline-root", "gs://b/root",
              "--serving-base", "gs://models/serving", "--gpu-node-label", "cloud.google.com/gke-nodepool=gpu-pool",
              "--accelerator-count", "2", "--beam-runner", "DataflowRunner", "--recipe", "inception",
              "--max-mse-ratio", "0.8", "--hparam", "head_epochs=3", "--hparam", "starred_only=1",
              "--hparam", "fine_tune_learning_rate=1e-05",
              "--beam-arg=--project=my-project", "--beam-arg=--region=europe-west4", "--beam-arg=--max_num_workers=8",
              "--photo-bucket", "gs://shared-photos/p", "--photo-bucket", "gs://more"])
    with open(tmp / "spec.json") as f:
        doc = json.load(f)
    return {"spec": doc["pipelineSpec"], "values": doc["runtimeConfig"]["parameterValues"],
            "package": str(tmp / "pipeline.yaml")}


def test_compiled_spec_matches_golden(golden_spec):
    with open(golden.GOLDEN_SPEC) as f:
        expected = json.load(f)
    assert golden_spec["spec"] == expected, "pipeline changed: review it, then run `make golden`"


def test_spec_has_runtime_parameters_and_every_component(golden_spec):
    spec = golden_spec["spec"]["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0"  # the schema KFP 2.x backends read
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"users_uri", "swipes_uri", "epochs", "learning_rate", "weights", "task", "head_layers"} <= set(params)
    # The fine-tuning schedule and the starred subset are set per run, without recompiling.
    assert {"head_epochs", "fine_tune_learning_rate", "trainable_blocks", "early_stopping_patience",
            "starred_only"} <= set(params)
    assert params["learning_rate"]["parameterType"] == "NUMBER_DOUBLE"
    assert params["epochs"]["parameterType"] == "NUMBER_INTEGER"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == STEPS | RESOLVERS
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]["producerTask"] == \
        "LatestBlessedModel-model-resolver"
    assert tasks["SwipeExampleGen"]["inputs"]["parameters"]["users_uri"] == {"componentInputParameter": "users_uri"}
    assert tasks["Pusher"]["dependentTasks"] == ["Evaluator", "Trainer"]
    # Data validation: the Trainer waits for the gate, whose policy is set per run.
    assert "DataGate" in tasks["Trainer"]["dependentTasks"]
    assert tasks["DataGate"]["inputs"]["parameters"]["block_on"] == {"componentInputParameter": "block_on"}
    assert params["block_on"]["parameterType"] == "STRING"
    assert tasks["DataGate"]["inputs"]["artifacts"]["baseline_blessing"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model_blessing", "producerTask": "LatestBlessedModel-model-blessing-resolver"}
    statistics = tasks["Evaluator"]["inputs"]["artifacts"]["statistics"]
    assert statistics["taskOutputArtifact"]["producerTask"] == "StatisticsGen"
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values() if "container" in e} == {k.DEFAULT_IMAGE}
    ours = {"SwipeExampleGen": "swipe_example_gen", "HParamsGen": "hparams_gen", "Evaluator": "evaluator",
            "RunReport": "report", "Pusher": "pusher"}
    for step, package in ours.items():  # each pod runs our executor class
        args = executors[f"{step}_executor"]["container"]["args"]
        assert f"deepattraction.components.{package}.executor.Executor" in args
    push = json.loads(tasks["Pusher"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]["constant"])
    assert push["filesystem"]["base_directory"] == "gs://YOUR_BUCKET/deepattraction/root/serving/deepattraction"
    assert golden_spec["spec"]["runtimeConfig"]["gcsOutputDirectory"] == "gs://YOUR_BUCKET/deepattraction/root"


def test_runtime_parameters_are_the_training_configs_fields_less_the_compile_time_ones(golden_spec):
    """No list kept by hand: a field added to TrainConfig or ModelConfig is a runtime parameter of
    the compiled spec unless COMPILE_TIME_HPARAMS names it. The data URIs, the data validation
    policy and the gate's values (a field added to GateConfig included) are the other runtime parameters."""
    fields = {f.name for cls in (TrainConfig, ModelConfig) for f in dataclasses.fields(cls)} - {"model"}
    assert k.COMPILE_TIME_HPARAMS < fields  # each compile-time name is a real field
    gate = {f.name for f in dataclasses.fields(GateConfig)} - {"eval_split", "baseline_split"}
    assert set(k.RUNTIME_GATE) == gate
    params = golden_spec["spec"]["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == (fields - k.COMPILE_TIME_HPARAMS) | {"users_uri", "swipes_uri", "block_on"} | gate
    evaluator = golden_spec["spec"]["pipelineSpec"]["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["parameters"]
    for name in gate:
        assert evaluator[name] == {"componentInputParameter": name}, name


def test_compiling_with_no_flags_fine_tunes_facenet_from_the_images_weights_with_the_published_schedule(golden_spec):
    """The golden configuration is `deepattraction compile` with no flags: the default recipe."""
    doc = golden_spec["spec"]
    values = doc["runtimeConfig"]["parameterValues"]
    recipe = recipes.get(recipes.DEFAULT_RECIPE)
    assert recipe.name == "facenet" and recipe.backbone == "facenet" and recipe.pretrained
    assert values["weights"] == os.path.join(recipes.IMAGE_WEIGHTS_DIR, output_file("facenet"))
    for name, value in recipe.hparams.items():
        assert values[name] == value, name
    assert values["trainable_blocks"] == 2 and values["head_epochs"] == 4 and values["epochs"] == 6
    for name, value in dataclasses.asdict(recipe.gate).items():
        if name in k.RUNTIME_GATE:
            assert values[name] == value, name
    tasks = doc["pipelineSpec"]["root"]["dag"]["tasks"]
    transform = json.loads(tasks["Transform"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"])
    assert transform["backbone"] == "facenet"
    report = tasks["RunReport"]["inputs"]["parameters"]
    assert report["recipe"]["runtimeValue"]["constant"] == "facenet"


def test_every_step_requests_resources_and_trainer_gets_a_gpu(golden_spec):
    executors = golden_spec["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]
    for step in STEPS:
        res = executors[f"{step}_executor"]["container"]["resources"]
        assert res["resourceCpuRequest"] and res["resourceMemoryRequest"] and res["resourceMemoryLimit"], step
        assert res["cpuRequest"] > 0 and res["memoryRequest"] > 0, step  # the fields older KFP backends read
        assert ("accelerator" in res) == (step == "Trainer"), step
    gpu = executors["Trainer_executor"]["container"]["resources"]["accelerator"]
    assert gpu == {"type": "nvidia.com/gpu", "count": "1", "resourceType": "nvidia.com/gpu", "resourceCount": "1"}


def test_kfp_package_is_what_the_kfp_client_uploads(golden_spec):
    """The KFP SDK's own reader parses the package: spec first, then the Kubernetes platform spec."""
    doc = _extract_pipeline_yaml(golden_spec["package"])
    assert doc.pipeline_spec.default_pipeline_root == "gs://YOUR_BUCKET/deepattraction/root"
    assert set(doc.pipeline_spec.root.dag.tasks) == STEPS | RESOLVERS
    executors = doc.platform_spec.platforms["kubernetes"].deployment_spec.executors
    assert set(executors) == {"Trainer_executor"}  # only the GPU step is pinned to the GPU pool
    trainer = dict(executors["Trainer_executor"])
    assert dict(trainer["nodeSelector"]["labels"]) == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert [dict(t)
            for t in trainer["tolerations"]] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                  "effect": "NoSchedule"}]


def test_runtime_parameters_keep_their_defaults(golden_spec):
    """A run that sets no parameter uses the compiled defaults, in the job spec and the package."""
    values = golden_spec["spec"]["runtimeConfig"]["parameterValues"]
    assert values["users_uri"] == "gs://YOUR_BUCKET/deepattraction/root/data/users.csv"
    assert values["epochs"] == recipes.get(recipes.DEFAULT_RECIPE).hparams["epochs"] and values["task"] == "both"
    params = _extract_pipeline_yaml(golden_spec["package"]).pipeline_spec.root.input_definitions.parameters
    assert {name: params[name].default_value.WhichOneof("kind") for name in values} == {
        name: "string_value" if isinstance(v, str) else "number_value" for name, v in values.items()}
    assert params["swipes_uri"].default_value.string_value == values["swipes_uri"]


def test_cli_compile_sets_image_gpu_pool_serving_base_and_dataflow(dataflow_cli):
    spec = dataflow_cli["spec"]
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()
            if "container" in e} == {"europe-docker.pkg.dev/p/r/deepattraction:gpu"}
    assert executors["Trainer_executor"]["container"]["resources"]["accelerator"]["count"] == "2"
    pusher = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]
    push = json.loads(pusher["push_destination"]["runtimeValue"]["constant"])
    assert push["filesystem"]["base_directory"] == "gs://models/serving/deepattraction"
    with open(dataflow_cli["package"]) as f:
        platform = list(yaml.safe_load_all(f))[1]
    trainer = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["Trainer_executor"]
    assert trainer["nodeSelector"]["labels"] == {"cloud.google.com/gke-nodepool": "gpu-pool"}


def test_photo_buckets_reach_swipe_example_gen_and_default_to_none(dataflow_cli, golden_spec):
    """`--photo-bucket` is the only way a photo outside the users table's folder is read."""
    def params(spec):
        return spec["root"]["dag"]["tasks"]["SwipeExampleGen"]["inputs"]["parameters"]

    assert params(dataflow_cli["spec"])["photo_buckets"]["runtimeValue"]["constant"] == "gs://shared-photos/p,gs://more"
    assert "photo_buckets" not in params(golden_spec["spec"]["pipelineSpec"])


def test_beam_steps_get_a_dataflow_runner_that_beam_parses(dataflow_cli):
    """Beam's own option parser reads the Beam steps' arguments as a Dataflow job on our image."""
    executors = dataflow_cli["spec"]["deploymentSpec"]["executors"]
    for step in STEPS:
        args = executors[f"{step}_executor"]["container"]["args"]
        beam = [a for a in args if a.startswith("--")
                and a not in ("--executor_class_path", "--json_serialized_invocation_args",
                              "--json_serialized_inputs_spec_args")]
        opts = PipelineOptions(beam)
        if step in BEAM_STEPS:
            assert opts.view_as(StandardOptions).runner == "DataflowRunner", step
            assert opts.view_as(GoogleCloudOptions).project == "my-project"
            assert opts.view_as(GoogleCloudOptions).region == "europe-west4"
            assert opts.view_as(GoogleCloudOptions).temp_location == "gs://b/root/tmp/beam"
            assert opts.view_as(WorkerOptions).sdk_container_image == "europe-docker.pkg.dev/p/r/deepattraction:gpu"
            assert opts.view_as(WorkerOptions).max_num_workers == 8
        else:
            assert opts.view_as(StandardOptions).runner is None, step  # the in-pod DirectRunner


def test_beam_config_checks_runner_and_dataflow_options():
    with pytest.raises(ValueError, match="expected one of"):
        BeamConfig(runner="Dataflow")
    with pytest.raises(ValueError, match="--region"):
        BeamConfig(runner="DataflowRunner", args=("--project=p",))
    flink = BeamConfig(runner="FlinkRunner", args=("--flink_master=flink-jobmanager:8081",)).step_args("img:1",
                                                                                                       "gs://b/r")
    assert flink == ("--runner=FlinkRunner", "--environment_type=DOCKER", "--environment_config=img:1",
                     "--flink_master=flink-jobmanager:8081")
    assert BeamConfig().step_args("img:1", "gs://b/r") == ()


def test_cpu_only_cluster_has_no_accelerator_and_no_gpu_pool():
    cluster = ClusterConfig().without_gpu()
    assert all("accelerator" not in str(cluster.resources(s).spec()) for s in STEPS)
    assert not cluster.platform_spec(sorted(STEPS)).platforms


def test_golden_is_free_of_local_paths():
    with open(golden.GOLDEN_SPEC) as f:
        text = f.read()
    assert os.path.dirname(os.path.dirname(os.path.abspath(__file__))) not in text
    assert "/opt/deepattraction/pipeline/schema.pbtxt" in text


def test_cli_compile_hyperparameters_become_the_runs_defaults(dataflow_cli):
    """--hparam and the gate flags set runtime parameters' defaults over the recipe's; --recipe's
    backbone shapes the Transform graph itself."""
    values = dataflow_cli["values"]
    assert values["head_epochs"] == 3 and values["starred_only"] == 1 and values["fine_tune_learning_rate"] == 1e-05
    inception = recipes.get("inception")
    assert values["max_mse_ratio"] == 0.8 and values["min_accuracy_gain"] == inception.gate.min_accuracy_gain
    assert values["epochs"] == recipes.get("inception").hparams["epochs"]
    assert values["weights"] == os.path.join(recipes.IMAGE_WEIGHTS_DIR, output_file("inception"))
    transform = dataflow_cli["spec"]["root"]["dag"]["tasks"]["Transform"]["inputs"]["parameters"]
    assert json.loads(transform["custom_config"]["runtimeValue"]["constant"])["backbone"] == "inception_v3"


def test_a_backbone_hparam_that_contradicts_the_recipe_is_refused():
    with pytest.raises(ValueError, match="backbone is the recipe's"):
        k.kfp_config("gs://b/r", "facenet", {"backbone": "inception_v3"})
