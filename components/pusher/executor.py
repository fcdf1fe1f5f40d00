"""Pushes a blessed model like TFX's Pusher, plus TF Serving's warmup file.

TF Serving takes every numeric folder under the base for a version, so the version is written
under a staging name and published in one step, with its number taken by this push alone and
one push per serving base at a time (serving.push)."""
from __future__ import annotations

import os
import time

from absl import logging
from tfx.components.pusher import executor as tfx_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from deepattraction.serving.push import push_model


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
        base = fs.base_directory
        model_name = os.path.basename(base.rstrip("/"))
        # A rerun on unchanged data blesses the model already served: no duplicate version.
        number, pushed = push_model(model_path, base, model_name, first=int(time.time()),
                                    reuse=lambda newest: same_model(model_path, newest))
        version = str(number)
        serving_path = os.path.join(base, version)
        logging.info("%s %s", "Model with warmup requests written to" if pushed else "Already served as", serving_path)
        io_utils.copy_dir(serving_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
