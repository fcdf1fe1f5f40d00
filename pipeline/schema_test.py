from deepattraction.pipeline import configs
from deepattraction.pipeline.schema import schema_text


def test_committed_schema_is_generated_from_features():
    with open(configs.SCHEMA_FILE) as f:
        assert f.read() == schema_text(), "run `deepattraction schema > pipeline/schema.pbtxt`"
