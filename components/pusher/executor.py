"""Pushes a blessed model like TFX's Pusher, plus TF Serving's warmup file.

The warmup file must be in place before saved_model.pb, because TF Serving treats saved_model.pb
as the sign that a version is complete and may start loading it at once."""
from __future__ import annotations

import os
import time

from absl import logging
from tfx.components.pusher import executor as tfx_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from deepattraction.serving import model_dir
from deepattraction.serving.warmup import push_version


def same_model(a: str, b: str) -> bool:
    """Whether two SavedModels hold the same graph and weights (variables.index carries a
    checksum of every tensor, so equal index files mean equal weights)."""
    for rel in ("saved_model.pb", os.path.join("variables", "variables.index")):
        pa, pb = os.path.join(a, rel), os.path.join(b, rel)
        if fileio.exists(pa) != fileio.exists(pb):
            return False
        if fileio.exists(pa):
            with fileio.open(pa, "rb") as fa, fileio.open(pb, "rb") as fb:
                if fa.read() != fb.read():
                    return False
    return True


class Executor(tfx_executor.Executor):
    """TFX's blessing check, versioning (unix timestamp) and push artifact; the filesystem copy adds warmup."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        dest = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], dest)
        if dest.WhichOneof("destination") != "filesystem":
            raise NotImplementedError(f"push destination {dest.WhichOneof('destination')}: only filesystem")
        fs = dest.filesystem
        if fs.versioning not in (pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP):
            raise NotImplementedError(f"versioning {fs.versioning}")
        versions = model_dir.versions(fs.base_directory)
        if versions and same_model(model_path, os.path.join(fs.base_directory, str(versions[-1]))):
            # A rerun on unchanged data blesses the model already served: no duplicate version.
            version = str(versions[-1])
        else:
            version = str(int(time.time()))
        serving_path = os.path.join(fs.base_directory, version)
        if fileio.exists(serving_path):
            logging.info("%s already exists, skipping the copy", serving_path)
        else:
            model_name = os.path.basename(fs.base_directory.rstrip("/"))
            push_version(model_path, serving_path, model_name)
            logging.info("Model with warmup requests written to %s", serving_path)
        io_utils.copy_dir(serving_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
