from tfx import v1 as tfx
from tfx.types import channel_utils, standard_artifacts

from deepattraction.components.pusher import executor
from deepattraction.components.pusher.component import Pusher


def test_pusher_keeps_tfx_interface_and_runs_our_executor():
    p = Pusher(model=channel_utils.as_channel([standard_artifacts.Model()]),
               model_blessing=channel_utils.as_channel([standard_artifacts.ModelBlessing()]),
               push_destination=tfx.proto.PushDestination(
                   filesystem=tfx.proto.PushDestination.Filesystem(base_directory="/srv/deepattraction")))
    assert isinstance(p, tfx.components.Pusher)
    assert p.executor_spec.executor_class is executor.Executor
    assert "pushed_model" in p.outputs and "push_destination" in p.exec_properties
