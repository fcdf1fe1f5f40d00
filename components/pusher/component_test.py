"""What the Pusher compiles to: TFX's Pusher node (its inputs, outputs and parameters, so the
pipeline spec and the blessing wiring stay TFX's) bound to our executor."""
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2
from tfx.types import standard_artifacts

from deepattraction.components.pusher import executor
from deepattraction.components.pusher.component import Pusher


def compiled_pusher(cls, root: str):
    """(the Pusher's node, its executor's class path) in the IR of a pipeline that imports a model
    and a blessing and pushes them with `cls`."""
    model = tfx.dsl.Importer(source_uri="/m", artifact_type=standard_artifacts.Model).with_id("model")
    blessing = tfx.dsl.Importer(source_uri="/b", artifact_type=standard_artifacts.ModelBlessing).with_id("blessing")
    pusher = cls(model=model.outputs["result"], model_blessing=blessing.outputs["result"],
                 push_destination=tfx.proto.PushDestination(
                     filesystem=tfx.proto.PushDestination.Filesystem(base_directory="/srv/deepattraction")))
    ir = compiler.Compiler().compile(tfx.dsl.Pipeline(pipeline_name="p", pipeline_root=root,
                                                      components=[model, blessing, pusher]))
    node = next(n.pipeline_node for n in ir.nodes if n.pipeline_node.node_info.id == "Pusher")
    deployment, spec = pipeline_pb2.IntermediateDeploymentConfig(), executable_spec_pb2.PythonClassExecutableSpec()
    ir.deployment_config.Unpack(deployment)
    deployment.executor_specs["Pusher"].Unpack(spec)
    return node, spec.class_path


def test_compiles_to_tfxs_pusher_node_with_our_executor(tmp_path):
    ours, our_executor = compiled_pusher(Pusher, str(tmp_path))
    theirs, their_executor = compiled_pusher(tfx.components.Pusher, str(tmp_path))
    assert (ours.inputs, ours.outputs, ours.parameters) == (theirs.inputs, theirs.outputs, theirs.parameters)
    assert list(ours.outputs.outputs) == ["pushed_model"]
    assert our_executor == f"{executor.__name__}.Executor" != their_executor
