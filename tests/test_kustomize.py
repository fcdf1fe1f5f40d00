"""kustomize/: every overlay rendered by the real `kubectl kustomize`, validated offline against
the Kubernetes 1.32 schemas (kubernetes-validate, strict), and its contracts checked: what TF
Serving reads (flags, models.config, batching, monitoring, probes, ports, GPU) and what the
training CronJob runs (the real compile CLI, the KFP platform spec that kfp-kubernetes parses).
A cluster would still have to show that pods schedule, pull and become ready."""
import ipaddress
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
from deepattraction.serving import server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUSTOMIZE = os.path.join(ROOT, "kustomize")
TOOLS = os.path.join(ROOT, "build", "tools-venv", "bin")
CHECKOV = os.path.join(ROOT, "build", "checkov-venv", "bin", "checkov")  # `make checkov`
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
    # TF Serving reads requests no larger than the local server does (serving.server), so a request
    # refused in development is refused in production, and memory holds the largest one.
    assert f["grpc_channel_arguments"] == server.TF_SERVING_GRPC_ARGS
    assert pod["terminationGracePeriodSeconds"] >= server.DRAIN_SECONDS


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
    assert c["image"].startswith("tensorflow/serving:2.16.1-gpu@sha256:")
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
    # Dataflow's workers run the image's root `dataflow-worker` target (Dockerfile), pinned too.
    worker = [a.split("=", 1)[1] for a in executors["Transform_executor"]["container"]["args"]
              if a.startswith("--sdk_container_image=")]
    assert len(worker) == 1 and IMAGE_BY_DIGEST.match(worker[0]) and "-dataflow@" in worker[0]
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


# Pod Security Standards, "restricted" profile (Kubernetes 1.32): what Pod Security Admission checks.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                      "secret"}
WORKLOADS = ("Deployment", "CronJob", "Job", "StatefulSet", "DaemonSet", "Pod")


def pod_specs(docs) -> dict[str, dict]:
    """Every pod template the manifests would create, by kind/name."""
    out = {}
    for d in docs:
        if d["kind"] not in WORKLOADS:
            continue
        spec = d["spec"]
        spec = spec.get("jobTemplate", {}).get("spec", spec)  # a CronJob's Job
        out[f"{d['kind']}/{d['metadata']['name']}"] = spec["template"]["spec"] if "template" in spec else spec
    return out


def restricted_violations(pod: dict) -> list[str]:
    """What Pod Security Admission's "restricted" level (plus a read-only root file system) refuses."""
    bad = []
    psc = pod.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            bad.append(host)
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']}: {sorted(kinds - RESTRICTED_VOLUMES)}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    writable = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc, name = c.get("securityContext", {}), c["name"]
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) in (None, 0):
            bad.append(f"{name}: no fixed non-root runAsUser")  # the image's USER must match it
        if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation")
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{name}: readOnlyRootFilesystem")
        if not any(m["mountPath"] == "/tmp" and m["name"] in writable for m in c.get("volumeMounts", [])):
            bad.append(f"{name}: no emptyDir at /tmp")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
    return bad


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_pod_security_restricted(overlay, rendered):
    pods = pod_specs(rendered[overlay])
    assert set(pods) == {"Deployment/tf-serving", "CronJob/deepattraction-train"}
    for name, pod in pods.items():
        assert restricted_violations(pod) == [], name
        assert pod["automountServiceAccountToken"] is False, name  # neither calls the Kubernetes API


def test_the_restricted_check_refuses_each_loosened_field(rendered):
    pod = pod_specs(rendered["overlays/gcp-gpu"])["CronJob/deepattraction-train"]

    def loosened(change) -> list[str]:
        p = json.loads(json.dumps(pod))
        change(p, p["containers"][0]["securityContext"])
        return restricted_violations(p)

    assert loosened(lambda p, c: c.update(allowPrivilegeEscalation=True)) == ["submit: allowPrivilegeEscalation"]
    assert loosened(lambda p, c: c.pop("capabilities")) == ["submit: capabilities"]
    assert loosened(lambda p, c: c["capabilities"].update(add=["SYS_ADMIN"])) == ["submit: capabilities"]
    assert loosened(lambda p, c: p["securityContext"].pop("seccompProfile")) == ["submit: seccompProfile"]
    assert loosened(lambda p, c: p["securityContext"].update(runAsNonRoot=False)) == ["submit: runAsNonRoot"]
    assert loosened(lambda p, c: c.update(readOnlyRootFilesystem=False)) == ["submit: readOnlyRootFilesystem"]
    assert loosened(lambda p, c: p.update(hostNetwork=True)) == ["hostNetwork"]


def test_the_cronjob_runs_as_the_images_own_user_with_its_home_writable(rendered):
    """runAsUser is the Dockerfile's USER, and HOME (the KFP client writes ~/.config) is an emptyDir."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    uid, gid = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1]
    home = re.search(rf"useradd --uid {uid} --gid {gid} .*--home-dir (\S+)", dockerfile.replace("\\\n", " ")).group(1)
    for overlay in OVERLAYS:
        pod = pod_specs(rendered[overlay])["CronJob/deepattraction-train"]
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
        c = pod["containers"][0]
        assert {"name": "HOME", "value": home} in c["env"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts[home]]


@pytest.mark.parametrize("overlay", ["overlays/local", "overlays/gcp-gpu"])
def test_namespaces_enforce_restricted_and_hold_everything(overlay, rendered):
    docs = rendered[overlay]
    namespace = one(docs, "Namespace", "deepattraction")
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v" + ".".join(K8S_VERSION.split(".")[:2])
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]}


def _selects(selector: dict, labels: dict) -> bool:
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for e in selector.get("matchExpressions", []):
        assert e["operator"] in ("In", "NotIn"), e
        ok = ok and ((labels.get(e["key"]) in e["values"]) == (e["operator"] == "In"))
    return ok


def _peer_matches(peer_rule: dict, peer: dict, policy_namespace: str) -> bool:
    if "ipBlock" in peer_rule:
        if "ip" not in peer:
            return False
        ip = ipaddress.ip_address(peer["ip"])
        block = peer_rule["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if "ip" in peer:
        return False  # outside the cluster: only ipBlock rules match
    if "namespaceSelector" in peer_rule:
        ns_ok = _selects(peer_rule["namespaceSelector"], {"kubernetes.io/metadata.name": peer["namespace"]})
    else:
        ns_ok = peer["namespace"] == policy_namespace
    return ns_ok and _selects(peer_rule.get("podSelector", {}), peer["labels"])


def allowed(docs, pod_labels: dict, direction: str, peer: dict, port: int, protocol: str = "TCP") -> bool:
    """NetworkPolicy semantics for one connection of a pod in the overlay's namespace: allowed when
    no policy selects the pod for that direction, or when a rule of one that does admits the peer
    and port. (Where the other end is in this namespace, its own policies must allow it too.)"""
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [d for d in docs if d["kind"] == "NetworkPolicy" and direction in d["spec"]["policyTypes"]
                 and _selects(d["spec"]["podSelector"], pod_labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            ports = rule.get("ports")
            port_ok = not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)
            peer_ok = not rule.get(peers) or any(_peer_matches(r, peer, policy["metadata"]["namespace"])
                                                 for r in rule[peers])
            if port_ok and peer_ok:
                return True
    return False


@pytest.mark.parametrize("overlay", ["overlays/local", "overlays/gcp-gpu"])
def test_network_policies_let_only_what_must_talk(overlay, rendered):
    docs = rendered[overlay]
    ns = one(docs, "Namespace", "deepattraction")["metadata"]["name"]
    serving = one(docs, "Deployment", "tf-serving")["spec"]["template"]["metadata"]["labels"]
    train = one(docs, "CronJob", "deepattraction-train")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    train = train["labels"]
    client = {"namespace": ns, "labels": {"app": "some-client"}}
    kfp_host = re.match(r"http://([\w-]+)\.([\w-]+)\.svc\.cluster\.local:(\d+)$", pipeline_env(docs)["KFP_HOST"])
    kfp = {"namespace": kfp_host.group(2), "labels": {"app": kfp_host.group(1)}}
    dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    gcs, private, metadata = {"ip": "142.250.1.207"}, {"ip": "10.4.0.9"}, {"ip": "169.254.169.254"}
    gke = overlay == "overlays/gcp-gpu"
    # TF Serving: its two ports, from its own namespace's pods only; out only to what GCS needs.
    assert allowed(docs, serving, "Ingress", client, 8500) and allowed(docs, serving, "Ingress", client, 8501)
    assert not allowed(docs, serving, "Ingress", client, 22)
    assert not allowed(docs, serving, "Ingress", {"namespace": "other", "labels": {"app": "some-client"}}, 8500)
    assert not allowed(docs, client["labels"], "Ingress", client, 8500)  # any other pod here: nothing in
    assert allowed(docs, serving, "Egress", gcs, 443) == gke and allowed(docs, serving, "Egress", metadata, 80) == gke
    assert not allowed(docs, serving, "Egress", private, 443) and not allowed(docs, serving, "Egress", client, 8500)
    # The training CronJob: DNS, the KFP API on KFP_HOST's port, HTTPS outside the cluster; nothing in.
    assert allowed(docs, train, "Egress", kfp, int(kfp_host.group(3)))
    assert allowed(docs, train, "Egress", dns, 53, "UDP") and allowed(docs, train, "Egress", dns, 53, "TCP")
    assert allowed(docs, train, "Egress", gcs, 443) and allowed(docs, train, "Egress", metadata, 80) == gke
    assert not allowed(docs, train, "Egress", gcs, 80) and not allowed(docs, train, "Egress", private, 443)
    assert not allowed(docs, train, "Egress", {**kfp, "namespace": "elsewhere"}, 8888)
    assert not allowed(docs, train, "Egress", {**client, "labels": serving}, 8500)
    assert not allowed(docs, train, "Ingress", client, 8888)


IMAGE_BY_DIGEST = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


def images(docs) -> dict[str, str]:
    return {f"{name}/{c['name']}": c["image"] for name, pod in pod_specs(docs).items()
            for c in pod.get("initContainers", []) + pod["containers"]}


def test_gcp_overlay_pins_every_image_by_digest(rendered):
    """Production pulls exact bytes: an image left at a tag fails here. (The zero digests in the
    overlay are placeholders to fill, as YOUR_PROJECT is: docs/deploy-security.md.)"""
    docs = rendered["overlays/gcp-gpu"]
    pinned = images(docs)
    assert len(pinned) == 2 and all(IMAGE_BY_DIGEST.match(i) for i in pinned.values()), pinned
    assert pipeline_env(docs)["PIPELINE_IMAGE"] == pinned["CronJob/deepattraction-train/submit"]
    tag_only = json.loads(json.dumps(docs))
    serving_container(tag_only)["image"] = serving_container(tag_only)["image"].split("@")[0]
    unpinned = [k for k, i in images(tag_only).items() if not IMAGE_BY_DIGEST.match(i)]
    assert unpinned == ["Deployment/tf-serving/tf-serving"]


def checkov(path: str, config: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([CHECKOV, "--config-file", config, "--framework", "kubernetes", "-f", path],
                          capture_output=True, text=True, cwd=cwd)


CHECKOV_CONFIGS = {"overlays/local": os.path.join(KUSTOMIZE, "overlays", "local", ".checkov.yaml"),
                   "overlays/gcp-gpu": os.path.join(ROOT, ".checkov.yaml")}


@pytest.mark.parametrize("overlay", ["overlays/local", "overlays/gcp-gpu"])
def test_rendered_overlay_passes_checkov(overlay, rendered, tmp_path):
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(rendered[overlay]))
    done = checkov(str(path), CHECKOV_CONFIGS[overlay], tmp_path)
    assert done.returncode == 0 and re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", done.stdout), (
        done.stdout + done.stderr)


def test_checkov_refuses_a_loosened_pod(rendered, tmp_path):
    """The scanner is live: the overlay with root, privilege escalation and a writable root fails."""
    docs = json.loads(json.dumps(rendered["overlays/gcp-gpu"]))
    pod = pod_specs(docs)["Deployment/tf-serving"]
    pod["securityContext"].update(runAsNonRoot=False, runAsUser=0)
    pod["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": True}
    path = tmp_path / "loosened.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    done = checkov(str(path), CHECKOV_CONFIGS["overlays/gcp-gpu"], tmp_path)
    assert done.returncode != 0
    for check in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28"):  # escalation, read-only root, root, NET_RAW
        assert check in done.stdout, check


def test_every_skipped_checkov_check_says_why():
    for config in CHECKOV_CONFIGS.values():
        with open(config) as f:
            text = f.read()
        skipped = yaml.safe_load(text)["skip-check"]
        assert skipped, config
        for check in skipped:
            assert re.search(rf"^  - {check}  # \S.{{20,}}$", text, re.M), (config, check)
