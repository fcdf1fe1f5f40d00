from deepattraction.components.swipe_example_gen import component
from deepattraction.trainer import features


def test_component_outputs_and_split_by_user_id():
    c = component.SwipeExampleGen(users_uri="gs://b/users.csv", swipes_uri="gs://b/swipes.parquet", input_fingerprint="x")
    assert set(c.outputs) == {"examples", "report"}
    assert c.exec_properties["users_uri"] == "gs://b/users.csv"
    cfg = component.split_config()
    assert cfg.split_config.partition_feature_name == features.USER_ID_KEY
    assert [(s.name, s.hash_buckets) for s in cfg.split_config.splits] == [("train", 8), ("eval", 1), ("test", 1)]
    assert component.SwipeReport.TYPE_NAME == "deepattraction.SwipeReport"
