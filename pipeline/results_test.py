"""latest_output reads the latest published output: a run killed mid-step leaves a folder with a
higher id that no step published, and the next (cached) run must not read it."""
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from deepattraction.pipeline import results


def _store(root: str) -> metadata_store.MetadataStore:
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = os.path.join(root, results.MLMD_FILE)
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(cfg)


def test_a_folder_no_step_published_is_never_the_latest_output(tmp_path):
    root = str(tmp_path)
    for i in (3, 9, 12):  # 3 published, 9 pending (killed while writing), 12 never registered
        os.makedirs(os.path.join(root, "Transform", "transformed_examples", str(i)))
    assert results.latest_output(root, "Transform", "transformed_examples").endswith("/12")  # no store: by folder

    store = _store(root)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    states = {3: metadata_store_pb2.Artifact.LIVE, 9: metadata_store_pb2.Artifact.PENDING}
    store.put_artifacts([metadata_store_pb2.Artifact(
        type_id=type_id, uri=os.path.join(root, "Transform", "transformed_examples", str(i)), state=state)
        for i, state in states.items()])
    del store
    assert results.latest_output(root, "Transform", "transformed_examples") == \
        os.path.join(root, "Transform", "transformed_examples", "3")
    assert results.published(root, os.path.join(root, "Transform", "transformed_examples")) == {3}
