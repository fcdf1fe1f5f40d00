"""kustomize/: every overlay rendered by the real `kubectl kustomize`, validated offline against
the Kubernetes 1.32 schemas (kubernetes-validate, strict), and its contracts checked: what TF
Serving reads (flags, models.config, batching, monitoring, probes, ports, GPU) and what the
training CronJob runs (the real compile CLI, the KFP platform spec that kfp-kubernetes parses).
A cluster would still have to show that pods schedule, pull and become ready."""
import json
import os
import re
import shlex
import subprocess

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from deepattraction.cli import main as cli_main
from deepattraction.pipeline import submission

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUSTOMIZE = os.path.join(ROOT, "kustomize")
TOOLS = os.path.join(ROOT, "build", "tools-venv", "bin")
OVERLAYS = ("base", "overlays/local", "overlays/gcp-gpu")
K8S_VERSION = "1.32.0"


def render(overlay: str) -> list[dict]:
    done = subprocess.run(["kubectl", "kustomize", os.path.join(KUSTOMIZE, overlay)],
                          capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered():
    return {o: render(o) for o in OVERLAYS}


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def serving_container(docs):
    return one(docs, "Deployment", "tf-serving")["spec"]["template"]["spec"]["containers"][0]


def flags(container) -> dict:
    return dict(a[2:].split("=", 1) for a in container["args"])


def models_config(docs) -> model_server_config_pb2.ModelServerConfig:
    """Parsed with TF Serving's own proto, as --model_config_file is."""
    text = one(docs, "ConfigMap", "tf-serving-models")["data"]["models.config"]
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def pipeline_env(docs) -> dict:
    return one(docs, "ConfigMap", "deepattraction-pipeline")["data"]


def validate(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(TOOLS, "kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, path],
                          capture_output=True, text=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_strict_schema_validation(overlay, rendered, tmp_path):
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(rendered[overlay]))
    done = validate(str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = {d["kind"] for d in rendered[overlay]}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "CronJob"} <= kinds


def _misspell_probe(c):
    c["readinessProbe"]["httpGett"] = c["readinessProbe"].pop("httpGet")


def _port_as_text(c):
    c["ports"][0]["containerPort"] = "grpc"


@pytest.mark.parametrize("breakage,message", [(_misspell_probe, "httpGett"), (_port_as_text, "containerPort")])
def test_validator_rejects_a_broken_deployment(breakage, message, rendered, tmp_path):
    """The validator is strict: a misspelt field or a port given as text fails."""
    docs = json.loads(json.dumps(rendered["overlays/gcp-gpu"]))
    breakage(serving_container(docs))
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    done = validate(str(path))
    assert done.returncode != 0 and message in done.stdout + done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_ports_flags_and_config_files(overlay, rendered):
    docs = rendered[overlay]
    c = serving_container(docs)
    assert c["image"].startswith("tensorflow/serving:2.16.1")
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 8500, "http": 8501}
    f = flags(c)
    assert (f["port"], f["rest_api_port"]) == ("8500", "8501")
    svc = one(docs, "Service", "tf-serving")["spec"]
    assert {p["port"]: p["targetPort"] for p in svc["ports"]} == {8500: "grpc", 8501: "http"}
    # Each config flag names a key of a ConfigMap mounted at that folder.
    pod = one(docs, "Deployment", "tf-serving")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {}
    for m in c["volumeMounts"]:
        cm = volumes[m["name"]].get("configMap")
        if cm:
            for key in one(docs, "ConfigMap", cm["name"])["data"]:
                mounted[f"{m['mountPath']}/{key}"] = one(docs, "ConfigMap", cm["name"])["data"][key]
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert f[flag] in mounted, flag
    assert f["enable_batching"] == "true"
    batching = mounted[f["batching_parameters_file"]]
    sizes = [int(s) for s in re.findall(r"^allowed_batch_sizes: (\d+)$", batching, re.M)]
    max_batch = int(re.search(r"max_batch_size \{ value: (\d+) \}", batching).group(1))
    assert sizes == sorted(sizes) and sizes[-1] == max_batch  # TF Serving refuses anything else
    metrics = re.search(r'path: "([^"]+)"', mounted[f["monitoring_config_file"]]).group(1)
    annotations = one(docs, "Deployment", "tf-serving")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == metrics and annotations["prometheus.io/port"] == "8501"
    assert "enable: true" in mounted[f["monitoring_config_file"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_tf_serving_for_the_model(overlay, rendered):
    c = serving_container(rendered[overlay])
    model = models_config(rendered[overlay]).model_config_list.config[0].name
    assert model == "deepattraction"
    for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] == "http" and get["path"].startswith(f"/v1/models/{model}"), probe
    assert c["readinessProbe"]["httpGet"]["path"].endswith("/metadata")  # 200 only once a version is loaded


def test_local_overlay_serves_models_from_a_volume(rendered):
    docs = rendered["overlays/local"]
    config = models_config(docs).model_config_list.config[0]
    pod = one(docs, "Deployment", "tf-serving")["spec"]["template"]["spec"]
    mount = [m for m in serving_container(docs)["volumeMounts"] if m["name"] == "models"][0]
    assert config.base_path.startswith(mount["mountPath"] + "/")
    claim = [v for v in pod["volumes"] if v["name"] == "models"][0]["persistentVolumeClaim"]["claimName"]
    one(docs, "PersistentVolumeClaim", claim)
    assert config.model_version_policy.latest.num_versions == 2
    assert "nvidia.com/gpu" not in json.dumps(docs)
    assert one(docs, "CronJob", "deepattraction-train")["spec"]["suspend"] is True
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"deepattraction-dev"}


def test_gcp_overlay_serves_gcs_models_on_gpus_with_canary_labels(rendered):
    docs = rendered["overlays/gcp-gpu"]
    c = serving_container(docs)
    assert c["image"] == "tensorflow/serving:2.16.1-gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = one(docs, "Deployment", "tf-serving")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    config = models_config(docs).model_config_list.config[0]
    # TF Serving reads where the pipeline's Pusher writes: <serving base>/<model name>/<version>/.
    assert config.base_path == pipeline_env(docs)["SERVING_BASE"] + "/deepattraction"
    assert config.base_path.startswith("gs://")
    versions = set(config.model_version_policy.specific.versions)
    assert set(config.version_labels) == {"stable", "canary"} and set(config.version_labels.values()) <= versions
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/models/deepattraction/labels/stable/metadata"
    sa = one(docs, "ServiceAccount", "deepattraction-serving")
    assert pod["serviceAccountName"] == "deepattraction-serving"
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_and_disruption_budget_target_the_deployment(overlay, rendered):
    docs = rendered[overlay]
    deploy = one(docs, "Deployment", "tf-serving")
    hpa = one(docs, "HorizontalPodAutoscaler", "tf-serving")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy["metadata"]["name"]}
    assert hpa["minReplicas"] >= 1 and hpa["minReplicas"] < hpa["maxReplicas"]
    pdb = one(docs, "PodDisruptionBudget", "tf-serving")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    if "minAvailable" in pdb:  # never a budget that blocks every drain
        assert pdb["minAvailable"] < hpa["minReplicas"]


def cronjob_commands(docs) -> tuple[list[str], list[str], dict]:
    """The training CronJob's two commands, with the ConfigMap's values put in as the shell would."""
    job = one(docs, "CronJob", "deepattraction-train")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = job["containers"][0]
    env = pipeline_env(docs)
    assert c["envFrom"] == [{"configMapRef": {"name": one(docs, "ConfigMap",
                                                          "deepattraction-pipeline")["metadata"]["name"]}}]
    assert c["command"] == ["/bin/bash", "-ec"]
    script = re.sub(r'"\$(\w+)"', lambda m: shlex.quote(env[m.group(1)]), c["args"][0])
    script = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], script)
    compile_cmd, submit_cmd = (shlex.split(part) for part in script.split("&&"))
    return compile_cmd, submit_cmd, {"image": c["image"], **env}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cronjob_compiles_with_its_own_image_and_submits(overlay, rendered):
    compile_cmd, submit_cmd, env = cronjob_commands(rendered[overlay])
    assert env["image"] == env["PIPELINE_IMAGE"]  # the steps run the image that compiled them
    assert compile_cmd[:2] == ["deepattraction", "compile"]
    assert submit_cmd[:3] == ["python", "-m", "deepattraction.pipeline.kubeflow_v2_runner"]
    a = submission.parser().parse_args(submit_cmd[3:])
    assert a.command == "submit" and a.preflight and a.package == compile_cmd[compile_cmd.index("--kfp-package") + 1]
    assert a.host.startswith("http://ml-pipeline.kubeflow")
    assert sorted(a.param) == sorted([f"swipes_uri={env['SWIPES_URI']}", f"users_uri={env['USERS_URI']}"])


def test_gcp_cronjob_compile_runs_and_its_platform_spec_parses_as_kfp_kubernetes(rendered, tmp_path):
    """Runs the production CronJob's exact compile command, then checks the package it writes
    with kfp-kubernetes' KubernetesExecutorConfig proto (what KFP's driver decodes)."""
    compile_cmd, _, env = cronjob_commands(rendered["overlays/gcp-gpu"])
    args = compile_cmd[2:]
    for flag, name in (("--output", "spec.json"), ("--kfp-package", "pipeline.yaml")):
        args[args.index(flag) + 1] = str(tmp_path / name)
    assert cli_main(["compile", *args]) == 0
    with open(tmp_path / "spec.json") as f:
        executors = json.load(f)["pipelineSpec"]["deploymentSpec"]["executors"]
    assert executors["Trainer_executor"]["container"]["image"] == env["image"]
    assert executors["Trainer_executor"]["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "--runner=DataflowRunner" in executors["Transform_executor"]["container"]["args"]
    with open(tmp_path / "pipeline.yaml") as f:
        platform = list(yaml.safe_load_all(f))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    check = ("import json, sys; from google.protobuf import json_format; "
             "from kfp.kubernetes import kubernetes_executor_config_pb2 as k; "
             "print(json.dumps({n: json_format.MessageToDict(json_format.ParseDict(e, k.KubernetesExecutorConfig())) "
             "for n, e in json.load(open(sys.argv[1])).items()}))")
    (tmp_path / "platform.json").write_text(json.dumps(platform))
    done = subprocess.run([os.path.join(TOOLS, "python"), "-c", check, str(tmp_path / "platform.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["Trainer_executor"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert parsed["Trainer_executor"]["tolerations"][0]["key"] == "nvidia.com/gpu"
