"""TFX's Transform executor outside a pipeline, configured as pipeline.create_components
configures it (our preprocessing_fn, the curated schema, materialised, no statistics): transformed
examples without running the whole pipeline, for tests and the benchmarks (which import it from here:
the lab uses the product, never the other way round)."""
from __future__ import annotations

import json
import os

# TensorFlow and TFX load inside the functions: importing this module costs nothing.


def raw_example(uid: str, photo: bytes, ratio: float, swipes: int, gender: str) -> bytes:
    """One serialized tf.Example in SwipeExampleGen's contract (features.raw_feature_spec)."""
    import tensorflow as tf

    from deepattraction.trainer import features

    f = tf.train.Feature
    return tf.train.Example(features=tf.train.Features(feature={
        features.USER_ID_KEY: f(bytes_list=tf.train.BytesList(value=[uid.encode()])),
        features.IMAGE_KEY: f(bytes_list=tf.train.BytesList(value=[photo])),
        features.GENDER_KEY: f(bytes_list=tf.train.BytesList(value=[gender.encode()])),
        features.LIKE_RATIO_KEY: f(float_list=tf.train.FloatList(value=[ratio])),
        features.SWIPE_COUNT_KEY: f(int64_list=tf.train.Int64List(value=[swipes])),
    })).SerializeToString()


def write_examples(uri: str, splits: dict):
    """An Examples artifact at `uri` whose splits hold the given serialized examples (gzipped)."""
    import tensorflow as tf
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    for split, rows in splits.items():
        os.makedirs(os.path.join(uri, f"Split-{split}"), exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(uri, f"Split-{split}", "data.gz"), "GZIP") as w:
            for row in rows:
                w.write(row)
    return examples


def materialise(examples, out_root: str, backbone: str = "inception_v3", image_size: int = 0,
                splits: tuple[str, ...] = ("train",)) -> tuple:
    """Runs the Transform executor on `examples` (an Examples artifact); returns the
    TFTransformOutput and, per split, the glob of its transformed examples."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx.components.transform import executor as transform_executor
    from tfx.proto import transform_pb2
    from tfx.types import standard_artifacts
    from tfx.types import standard_component_specs as specs
    from tfx.utils import proto_utils

    from deepattraction.pipeline.configs import SCHEMA_FILE
    from deepattraction.pipeline.pipeline import PREPROCESSING_FN

    schema = standard_artifacts.Schema()
    schema.uri = os.path.join(out_root, "schema")
    tf.io.gfile.makedirs(schema.uri)
    tf.io.gfile.copy(SCHEMA_FILE, os.path.join(schema.uri, "schema.pbtxt"), overwrite=True)
    graph, transformed = standard_artifacts.TransformGraph(), standard_artifacts.Examples()
    graph.uri, transformed.uri = os.path.join(out_root, "transform_graph"), os.path.join(out_root, "transformed")
    transform_executor.Executor().Do(
        {specs.EXAMPLES_KEY: [examples], specs.SCHEMA_KEY: [schema]},
        {specs.TRANSFORM_GRAPH_KEY: [graph], specs.TRANSFORMED_EXAMPLES_KEY: [transformed]},
        {specs.PREPROCESSING_FN_KEY: PREPROCESSING_FN,
         specs.CUSTOM_CONFIG_KEY: json.dumps({"backbone": backbone, "image_size": image_size}),
         specs.SPLITS_CONFIG_KEY: proto_utils.proto_to_json(
             transform_pb2.SplitsConfig(analyze=[splits[0]], transform=list(splits))),
         specs.DISABLE_STATISTICS_KEY: 1, specs.FORCE_TF_COMPAT_V1_KEY: 0})
    return tft.TFTransformOutput(graph.uri), {s: os.path.join(transformed.uri, f"Split-{s}", "*") for s in splits}
