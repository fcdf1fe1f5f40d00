"""SwipeExampleGen: users, swipes and photos in; split tf.Examples and a data report out."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.types.system_artifacts import Dataset

from deepattraction.components.swipe_example_gen import aggregate, executor
from deepattraction.trainer import features

SPLITS = (("train", 8), ("eval", 1), ("test", 1))  # hash buckets of user_id


class SwipeReport(artifact.Artifact):
    """rejects.csv (every rejected row and why), gender_table.csv and summary.json (counts)."""

    TYPE_NAME = "deepattraction.SwipeReport"  # KFP v2 wants <namespace>.<Name>
    TYPE_ANNOTATION = Dataset


class SwipeExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        executor.USERS_URI: ExecutionParameter(type=str),
        executor.SWIPES_URI: ExecutionParameter(type=str),
        # Buckets besides the users table's own folder that photo_uri may name; none when absent.
        executor.PHOTO_BUCKETS: ExecutionParameter(type=str, optional=True),
        # Changes when the input tables change, so a cached run is reused only on the same data.
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
        "code_version": ExecutionParameter(type=str, optional=True),  # configs.step_code_versions', a cache key
        "input_config": ExecutionParameter(type=example_gen_pb2.Input),
        "output_config": ExecutionParameter(type=example_gen_pb2.Output),
        "output_data_format": ExecutionParameter(type=int),
        "output_file_format": ExecutionParameter(type=int),
    }
    INPUTS = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "report": ChannelParameter(type=SwipeReport),
    }


def split_config(splits=SPLITS) -> example_gen_pb2.Output:
    """Splits by a hash of user_id, so one user's photo never lands in two splits."""
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in splits],
        partition_feature_name=features.USER_ID_KEY))


class SwipeExampleGen(base_beam_component.BaseBeamComponent):
    """Aggregates post-update swipes per photo into like_ratio and swipe_count examples."""

    SPEC_CLASS = SwipeExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, users_uri: Union[str, data_types.RuntimeParameter],
                 swipes_uri: Union[str, data_types.RuntimeParameter],
                 input_fingerprint: Optional[str] = None, code_version: Optional[str] = None,
                 output_config: Optional[example_gen_pb2.Output] = None,
                 photo_buckets: Sequence[str] = ()):
        aggregate.PhotoSources(tuple(photo_buckets))  # a malformed bucket fails when the pipeline is built
        super().__init__(SwipeExampleGenSpec(
            users_uri=users_uri, swipes_uri=swipes_uri, input_fingerprint=input_fingerprint,
            photo_buckets=",".join(photo_buckets) or None,
            code_version=code_version,
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="*")]),
            output_config=output_config or split_config(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples),
            report=types.Channel(type=SwipeReport)))
