"""Where each compiled step runs on Kubernetes: resources, the GPU node pool, the Beam runner.

Used by kubeflow_v2_runner and its KFP package only, so pipeline.py stays orchestrator-neutral and local runs are
unaffected. What lands where:
- requests/limits and the accelerator go into the PipelineSpec (`deploymentSpec.executors.
  <Step>_executor.container.resources`), the only place TFX's v2 compiler writes them;
- node selector and tolerations cannot be written by TFX's compiler; they go into the KFP
  PlatformSpec (`platforms.kubernetes.deploymentSpec.executors`, kfp-kubernetes'
  KubernetesExecutorConfig), the second YAML document of the package KFP uploads;
- Beam arguments go into the arguments of the Beam steps (SwipeExampleGen, StatisticsGen, Transform).
"""
from __future__ import annotations

import dataclasses

from kfp.compiler import compiler_utils as kfp_units
from kfp.pipeline_spec import pipeline_spec_pb2

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

DEFAULT_IMAGE = "ghcr.io/deepattraction/deepattraction:0.1.0"
GPU_IMAGE = "ghcr.io/deepattraction/deepattraction:0.1.0-gpu"
# Steps whose executors run Beam pipelines; the others ignore Beam arguments.
BEAM_STEPS = ("SwipeExampleGen", "StatisticsGen", "Transform")
RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")


@dataclasses.dataclass(frozen=True)
class StepResources:
    """Kubernetes quantities ("500m", "8Gi"); KFP turns them into the pod's requests and limits.

    accelerator_type is the extended resource name KFP on Kubernetes puts into the pod's limits
    (nvidia.com/gpu); Vertex AI would want a type such as NVIDIA_L4 instead."""

    cpu: str = "1"
    memory: str = "2Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    accelerator_type: str = ""
    accelerator_count: int = 0

    def spec(self) -> ResourceSpec:
        """Both the old numeric and the newer string fields, as the KFP SDK writes them, so older
        and newer KFP backends read the same values."""
        r = ResourceSpec(
            cpu_request=kfp_units._cpu_to_float(self.cpu), resource_cpu_request=self.cpu,
            memory_request=kfp_units._memory_to_float(self.memory), resource_memory_request=self.memory)
        if self.cpu_limit:
            r.cpu_limit, r.resource_cpu_limit = kfp_units._cpu_to_float(self.cpu_limit), self.cpu_limit
        if self.memory_limit:
            r.memory_limit, r.resource_memory_limit = kfp_units._memory_to_float(self.memory_limit), self.memory_limit
        if self.accelerator_count:
            if not self.accelerator_type:
                raise ValueError("accelerator_count needs accelerator_type (e.g. nvidia.com/gpu)")
            r.accelerator.type = r.accelerator.resource_type = self.accelerator_type
            r.accelerator.count, r.accelerator.resource_count = self.accelerator_count, str(self.accelerator_count)
        return r


@dataclasses.dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Exists"
    value: str = ""
    effect: str = "NoSchedule"

    def as_dict(self) -> dict:
        d = {"key": self.key, "operator": self.operator, "effect": self.effect}
        if self.value:
            d["value"] = self.value
        return d


@dataclasses.dataclass(frozen=True)
class NodePool:
    """A node selector and the tolerations for the pool's taints (GKE taints GPU nodes)."""

    labels: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    def executor_config(self) -> dict:
        """kfp-kubernetes' KubernetesExecutorConfig in its JSON form."""
        out = {}
        if self.labels:
            out["nodeSelector"] = {"labels": dict(self.labels)}
        if self.tolerations:
            out["tolerations"] = [t.as_dict() for t in self.tolerations]
        return out


GKE_GPU_POOL = NodePool(labels=(("cloud.google.com/gke-accelerator", "nvidia-l4"),),
                        tolerations=(Toleration(key="nvidia.com/gpu"),))


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """The Beam runner of SwipeExampleGen and Transform. DirectRunner runs inside the step's pod;
    a distributed runner takes its options as `args` (e.g. --project, --region for Dataflow;
    --flink_master or --job_endpoint for Flink/Spark/Portable)."""

    runner: str = "DirectRunner"
    args: tuple[str, ...] = ()

    def __post_init__(self):
        if self.runner not in RUNNERS:
            raise ValueError(f"beam runner {self.runner!r}: expected one of {', '.join(RUNNERS)}")
        if self.runner == "DataflowRunner":
            missing = [o for o in ("--project", "--region") if not self._has(o)]
            if missing:
                raise ValueError(f"DataflowRunner needs {' and '.join(missing)} (give them as --beam-arg)")

    def _has(self, option: str) -> bool:
        return any(a == option or a.startswith(option + "=") for a in self.args)

    def step_args(self, image: str, pipeline_root: str) -> tuple[str, ...]:
        """Arguments for the Beam steps; empty for DirectRunner (the pipeline-wide ones apply).
        Dataflow workers run the pipeline image itself (it carries Beam's worker boot), so they
        import the same package; temporary files go under the pipeline root unless given."""
        if self.runner == "DirectRunner":
            return tuple(self.args)
        out = [f"--runner={self.runner}"]
        if self.runner == "DataflowRunner":
            if not self._has("--sdk_container_image"):
                out.append(f"--sdk_container_image={image}")
            if not self._has("--temp_location"):
                out.append(f"--temp_location={pipeline_root}/tmp/beam")
            if not self._has("--experiments"):
                out.append("--experiments=use_runner_v2")
        elif not (self._has("--environment_type") or self._has("--environment_config")):
            out += ["--environment_type=DOCKER", f"--environment_config={image}"]
        return tuple(out) + tuple(self.args)


def default_steps() -> dict[str, StepResources]:
    """Requests for the study's scale at 299 px; the Trainer asks for one GPU."""
    return {
        "SwipeExampleGen": StepResources(cpu="2", memory="8Gi", memory_limit="12Gi"),
        "ImportSchemaGen": StepResources(cpu="250m", memory="1Gi", memory_limit="2Gi"),
        # Photos are an image domain in the schema: their statistics are byte sizes, not a top-k.
        "StatisticsGen": StepResources(cpu="2", memory="4Gi", memory_limit="6Gi"),
        "ExampleValidator": StepResources(cpu="250m", memory="1Gi", memory_limit="2Gi"),
        "DataGate": StepResources(cpu="250m", memory="1Gi", memory_limit="2Gi"),
        "HParamsGen": StepResources(cpu="250m", memory="1Gi", memory_limit="2Gi"),
        # Transform runs MTCNN over every photo and writes the crops: on the in-pod DirectRunner that
        # wants cores; on Dataflow (ClusterConfig.beam) its workers do the work instead.
        "Transform": StepResources(cpu="8", memory="8Gi", memory_limit="12Gi"),
        # The Trainer streams the crops from disk: memory does not grow with the photo count.
        "Trainer": StepResources(cpu="8", memory="16Gi", memory_limit="24Gi",
                                 accelerator_type="nvidia.com/gpu", accelerator_count=1),
        "Evaluator": StepResources(cpu="4", memory="16Gi", memory_limit="24Gi"),
        "RunReport": StepResources(cpu="1", memory="4Gi", memory_limit="6Gi"),
        "Pusher": StepResources(cpu="500m", memory="2Gi", memory_limit="4Gi"),
    }


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """Everything about the cluster that the compiled pipeline carries.

    `gpu_pool` applies to the steps that request an accelerator; a step missing from `steps`
    gets `default`."""

    image: str = DEFAULT_IMAGE
    steps: dict = dataclasses.field(default_factory=default_steps)
    default: StepResources = StepResources()
    gpu_pool: NodePool = GKE_GPU_POOL
    beam: BeamConfig = BeamConfig()

    def resources(self, step: str) -> StepResources:
        return self.steps.get(step, self.default)

    def without_gpu(self) -> "ClusterConfig":
        """The same pipeline with every step on CPU nodes (a cluster without a GPU pool)."""
        steps = {k: dataclasses.replace(v, accelerator_type="", accelerator_count=0) for k, v in self.steps.items()}
        return dataclasses.replace(self, steps=steps)

    def platform_spec(self, step_ids: list[str]) -> pipeline_spec_pb2.PlatformSpec:
        """The KFP PlatformSpec: the GPU pool's node selector and tolerations for the GPU steps."""
        spec = pipeline_spec_pb2.PlatformSpec()
        config = self.gpu_pool.executor_config()
        for step in step_ids:
            if self.resources(step).accelerator_count and config:
                spec.platforms["kubernetes"].deployment_spec.executors[f"{step}_executor"].update(config)
        return spec


def _pairs(items: list[str], what: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what} {item!r}: expected KEY=VALUE")
        out.append(tuple(item.split("=", 1)))
    return tuple(out)


def cluster_from_args(a) -> ClusterConfig:
    """The compile subcommand's cluster options (`deepattraction compile`) as a ClusterConfig."""
    base = ClusterConfig()
    pool = NodePool(labels=_pairs(a.gpu_node_label, "--gpu-node-label") or base.gpu_pool.labels,
                    tolerations=tuple(Toleration(key=k) for k in a.gpu_toleration) or base.gpu_pool.tolerations)
    steps = dict(base.steps)
    steps["Trainer"] = dataclasses.replace(steps["Trainer"], accelerator_type=a.accelerator_type,
                                          accelerator_count=a.accelerator_count)
    try:
        beam = BeamConfig(runner=a.beam_runner, args=tuple(a.beam_arg))
    except ValueError as e:
        raise SystemExit(f"compile: {e}") from e
    return ClusterConfig(image=a.image or DEFAULT_IMAGE, steps=steps, gpu_pool=pool, beam=beam)
