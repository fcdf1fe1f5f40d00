"""The split SwipeExampleGen writes by default, and its report's type name as KFP v2 needs it."""
import pytest
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from deepattraction.components.swipe_example_gen import aggregate, component
from deepattraction.trainer import features


def test_default_split_is_by_user_id_eight_one_one():
    """By user, so one user's photo never lands in two splits (executor_test runs it)."""
    c = component.SwipeExampleGen(users_uri="gs://b/users.csv", swipes_uri="gs://b/swipes.parquet")
    cfg = proto_utils.json_to_proto(c.exec_properties["output_config"], example_gen_pb2.Output())
    assert cfg.split_config.partition_feature_name == features.USER_ID_KEY
    assert [(s.name, s.hash_buckets) for s in cfg.split_config.splits] == [("train", 8), ("eval", 1), ("test", 1)]
    assert component.SwipeReport.TYPE_NAME == "deepattraction.SwipeReport"


def test_photo_buckets_reach_the_executor_and_are_checked_when_the_pipeline_is_built():
    c = component.SwipeExampleGen(users_uri="gs://b/users.csv", swipes_uri="gs://b/swipes.csv",
                                  photo_buckets=("gs://photos/p", "gs://more"))
    assert aggregate.PhotoSources.parse(c.exec_properties["photo_buckets"]).buckets == ("gs://photos/p", "gs://more")
    assert component.SwipeExampleGen(users_uri="gs://b/u.csv", swipes_uri="gs://b/s.csv").exec_properties.get(
        "photo_buckets") is None  # by default only the table's own folder
    with pytest.raises(ValueError, match="photo bucket '/local/photos'"):
        component.SwipeExampleGen(users_uri="gs://b/u.csv", swipes_uri="gs://b/s.csv", photo_buckets=("/local/photos",))
