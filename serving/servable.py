"""One loaded SavedModel version, answering Predict as TF Serving does: its SignatureDefs as TF
Serving reads them from saved_model.pb, TF Serving's checks and status codes on every input."""
from __future__ import annotations

import dataclasses
import functools
import math
import os

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import predict_pb2

from deepattraction.serving import warmup
from deepattraction.serving.predict import error_words, not_a_photo
from deepattraction.trainer import faces
from deepattraction.trainer.features import IMAGE_BYTES_INPUT, SERVING_DEFAULT

Code = grpc.StatusCode
DTYPE_NAMES = {v: k[3:].lower() for k, v in types_pb2.DataType.items()}


class ServingError(Exception):
    """A request failure with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


MAX_PHOTO_BYTES = 8 << 20  # one encoded photo
MAX_PHOTOS_PER_REQUEST = 64  # the client sends 16 by default; TF Serving's batching would split more anyway
# Decoded pixels of all photos of one request together (header-declared, GIF frames counted): a
# request of many photos, each under the per-photo limit, must not add up to gigabytes of RGB.
MAX_PIXELS_PER_REQUEST = 1 << 27

# TensorProto value fields per dtype, for counting the values a proto carries before it is expanded.
_VALUE_FIELDS = {
    types_pb2.DT_STRING: "string_val", types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_BFLOAT16: "half_val",
}


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one Predict request may carry; each refusal is INVALID_ARGUMENT naming its limit."""

    max_photo_bytes: int = MAX_PHOTO_BYTES
    max_photos: int = MAX_PHOTOS_PER_REQUEST
    max_pixels: int = MAX_PIXELS_PER_REQUEST


def check_element_count(alias: str, proto) -> int:
    """The element count a TensorProto declares, once it is known to equal the values it carries.

    tf.make_ndarray pads a proto that carries fewer values than its shape declares with copies of
    the last one: shape [N] with one photo becomes N photos, a few kB turned into gigabytes. TF
    Serving's own parser refuses such a proto; so do we, before anything is expanded."""
    if proto.tensor_shape.unknown_rank or any(d.size < 0 for d in proto.tensor_shape.dim):
        raise ServingError(Code.INVALID_ARGUMENT, f"input {alias!r}: TensorProto shape must be fully defined")
    declared = math.prod(d.size for d in proto.tensor_shape.dim)
    if proto.tensor_content:
        if proto.dtype == types_pb2.DT_STRING:
            raise ServingError(Code.INVALID_ARGUMENT, f"input {alias!r}: strings cannot be sent as tensor_content")
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        carried, rest = divmod(len(proto.tensor_content), itemsize)
        carried = carried if not rest else -1
    elif proto.dtype in _VALUE_FIELDS:
        carried = len(getattr(proto, _VALUE_FIELDS[proto.dtype]))
    else:
        raise ServingError(Code.INVALID_ARGUMENT, f"input {alias!r}: dtype {DTYPE_NAMES.get(proto.dtype)} "
                                                  "is not accepted")
    if carried != declared:
        raise ServingError(Code.INVALID_ARGUMENT, (
            f"input {alias!r}: TensorProto declares {declared:,} elements (shape "
            f"{[d.size for d in proto.tensor_shape.dim]}) but carries {carried if carried >= 0 else 'a partial'} "
            "value(s); every element must be sent"))
    return declared


@functools.cache
def _declared_pixels():
    return tf.function(lambda photo: tf.reduce_prod(faces.declared_size(photo)),
                       input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


class Servable:
    """One loaded version: its SignatureDefs (from saved_model.pb, as TF Serving reads them) and
    concrete functions."""

    def __init__(self, name: str, version: int, path: str, limits: RequestLimits = RequestLimits()):
        self.name, self.version, self.path, self.limits = name, version, path, limits
        sm = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        self.meta_graph: meta_graph_pb2.MetaGraphDef = sm.meta_graphs[0]
        self.signature_defs = {k: v for k, v in self.meta_graph.signature_def.items() if not k.startswith("__")}
        self._loaded = tf.saved_model.load(path)
        self._fns = {k: self._loaded.signatures[k] for k in self.signature_defs}
        self.batcher = None  # a serving.batching.Batcher when the server batches requests (--enable_batching)

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; a failing record fails the load, as in TF Serving."""
        logs = warmup.read(self.path)
        for log in logs:
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{self.path}: warmup supports predict_log records only")
            self.predict(log.predict_log.request)
        return len(logs)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        sig_name = request.model_spec.signature_name or SERVING_DEFAULT
        if sig_name not in self.signature_defs:
            raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{sig_name}" not found.')
        sig = self.signature_defs[sig_name]
        sent, expected = set(request.inputs), set(sig.inputs)
        if sent != expected:
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
                f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
        for alias in request.output_filter:
            if alias not in sig.outputs:
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(sig.outputs))}}}."))
        args = {alias: self._input(alias, sig.inputs[alias], request.inputs[alias]) for alias in sorted(sent)}
        try:
            fn = self._fns[sig_name]
            out = fn(**args) if self.batcher is None else self.batcher.run(fn, {k: v.numpy() for k, v in args.items()})
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(Code.INVALID_ARGUMENT, self._refusal(self._fns[sig_name], args, e)) from None
        keep = set(request.output_filter) or set(out)
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = self.name, sig_name
        resp.model_spec.version.value = self.version
        for k in sorted(keep):
            resp.outputs[k].CopyFrom(tf.make_tensor_proto(out[k].numpy()))
        return resp

    @staticmethod
    def _refusal(fn, args: dict[str, tf.Tensor], err: tf.errors.InvalidArgumentError) -> str:
        """The graph's own words for a refused request, naming the row: a graph error names no row
        (one cut JPEG fails a request of many photos), so the rows of a one-input request are rerun
        alone, on this error path only, until one fails."""
        def words(e: tf.errors.InvalidArgumentError) -> str:
            return faces.refusal(e.message) or error_words(e)

        if len(args) != 1 or next(iter(args.values())).shape.rank != 1:
            return words(err)
        (alias, value), = args.items()
        if value.shape[0] == 1:
            return f"{alias}[0]: {words(err)}"
        for i in range(value.shape[0]):
            try:
                fn(**{alias: value[i:i + 1]})
            except tf.errors.InvalidArgumentError as e:
                return f"{alias}[{i}]: {words(e)}"
        return words(err)

    def _input(self, alias: str, info, proto) -> tf.Tensor:
        if proto.dtype != info.dtype:
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"Expects arg[0] to be {DTYPE_NAMES.get(info.dtype, info.dtype)} but "
                f"{DTYPE_NAMES.get(proto.dtype, proto.dtype)} is provided (input {alias!r})"))
        count = check_element_count(alias, proto)
        if alias == IMAGE_BYTES_INPUT and count > self.limits.max_photos:
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"{alias}: {count:,} photos is over the {self.limits.max_photos}-photo-per-request limit "
                "(max_photos); send them in several requests"))
        try:
            value = tf.make_ndarray(proto)
        except Exception as e:  # malformed TensorProto: sizes that do not match the content
            raise ServingError(Code.INVALID_ARGUMENT, f"input {alias!r}: malformed TensorProto: {e}") from None
        want = [d.size for d in info.tensor_shape.dim]
        if not info.tensor_shape.unknown_rank and (value.ndim != len(want) or any(
                w >= 0 and w != g for w, g in zip(want, value.shape))):
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"input {alias!r}: shape {list(value.shape)} does not match the signature's {want} (-1: any)"))
        if alias == IMAGE_BYTES_INPUT:
            pixels = 0
            for i, photo in enumerate(value.reshape(-1)):
                if len(photo) > self.limits.max_photo_bytes:
                    raise ServingError(Code.INVALID_ARGUMENT, (
                        f"{alias}[{i}]: {len(photo)} bytes is over the {self.limits.max_photo_bytes}-byte photo limit"))
                problem = not_a_photo(photo)
                if problem:
                    raise ServingError(Code.INVALID_ARGUMENT, f"{alias}[{i}]: {problem}")
                pixels += int(_declared_pixels()(tf.constant(photo)))
                if pixels > self.limits.max_pixels:
                    raise ServingError(Code.INVALID_ARGUMENT, (
                        f"{alias}: photos 0-{i} declare {pixels:,} pixels, over the {self.limits.max_pixels:,}-"
                        "pixel-per-request limit (max_pixels); send fewer or smaller photos per request"))
        return tf.constant(value)
