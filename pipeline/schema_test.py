import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import dataset_options, tf_example_record

from deepattraction.pipeline import configs
from deepattraction.pipeline.schema import schema_text
from deepattraction.trainer import features


def test_committed_schema_is_generated_from_features():
    with open(configs.SCHEMA_FILE) as f:
        assert f.read() == schema_text(), "run `deepattraction schema > pipeline/schema.pbtxt`"


def test_schema_gives_back_the_feature_spec_and_parses_examples_without_the_optional_features(tmp_path):
    """What Transform and the trainer parse with: examples written before the group and the
    per-source-gender counts existed still parse, to the defaults."""
    with open(configs.SCHEMA_FILE) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    assert spec == features.raw_feature_spec()
    old = tf.train.Example(features=tf.train.Features(feature={
        features.USER_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"u1"])),
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
        features.GENDER_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"male"])),
        features.LIKE_RATIO_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=[0.5])),
        features.SWIPE_COUNT_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[4])),
    }))
    path = str(tmp_path / "old.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(old.SerializeToString())
    parsed = tf.io.parse_example([old.SerializeToString()], spec)
    assert parsed[features.GROUP_KEY].numpy().tolist() == [b""]
    assert all(parsed[k].numpy().tolist() == [0] for k in features.SOURCE_COUNT_KEYS)
    assert parsed[features.SWIPE_COUNT_KEY].numpy().tolist() == [4]
    # Transform reads through TFXIO projected on the features preprocessing_fn uses, then batches.
    projected = tf_example_record.TFExampleRecord(path, schema=schema).Project(
        [features.IMAGE_KEY, features.SWIPE_COUNT_KEY, features.GROUP_KEY])
    batch = next(iter(projected.TensorFlowDataset(dataset_options.TensorFlowDatasetOptions(batch_size=1))))
    assert batch[features.GROUP_KEY].numpy().tolist() == [b""]
    assert batch[features.SWIPE_COUNT_KEY].numpy().tolist() == [4]
