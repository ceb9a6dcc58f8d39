"""The Open Inference Protocol (KServe V2) over REST: ``/v2`` health, metadata and inference.

Tensors map onto signatures like this:

* a tensor signature is one input, ``input-0``, with the signature's dtype and shape (``-1`` for the batch);
* an all-numeric columnar signature is one 2-D input, ``input-0`` of shape ``[-1, n_columns]`` in the widest
  column type; one 1-D input per column, named after it, is accepted as well;
* any other columnar signature is one input per column, shape ``[-1]``, in the column's type (strings are BYTES).

Outputs are ``predict`` (one label or value per row) and, for classifiers, ``predict_proba`` (``[-1, n_classes]``
FP64). Tensor data may come as JSON (flat or nested, row-major) or in the binary tensor data extension that
``tritonclient`` uses by default (``binary_data_size`` and the ``Inference-Header-Content-Length`` header);
outputs are JSON unless the request asks for binary ones (``binary_data`` / ``binary_data_output``).
"""

from __future__ import annotations

import asyncio
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from shipyard.serving.dataplane import DataPlane, Prediction
from shipyard.serving.jsonio import json_response
from shipyard.serving.repository import ServedModel
from shipyard.signature import Signature

TENSOR_INPUT = "input-0"
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
HEADER_LENGTH = "inference-header-content-length"
_MAX_VERSION = 2**63 - 1

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_V2_OF = {dtype.name: name for name, dtype in DTYPES.items() if name != "BYTES"}
_NUMERIC_COLUMNS = {name for name in _V2_OF}  # bool, int*, uint*, float*
_JSON_TYPES: dict[str, tuple[type, ...]] = {"BOOL": (bool,), "BYTES": (str,)}
_JSON_TYPES.update({n: (int,) for n in DTYPES if n.startswith(("INT", "UINT"))})
_JSON_TYPES.update({n: (int, float) for n in DTYPES if n.startswith("FP")})
_JSON_KIND = {"BOOL": "true or false", "BYTES": "strings"}

INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string", "enum": list(DTYPES)},
                                    "data": {"type": "array", "description": "flat (row-major) or nested"},
                                },
                                "required": ["name", "shape", "datatype", "data"],
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                        },
                    },
                    "required": ["inputs"],
                },
                "example": {
                    "id": "42",
                    "inputs": [
                        {"name": TENSOR_INPUT, "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
                    ],
                },
            }
        },
    }
}


# ---------------------------------------------------------------------- types
def v2_datatype(dtype: Any) -> str:
    """The V2 datatype of a numpy dtype or a signature dtype name; anything not numeric is BYTES.

    >>> v2_datatype("float32"), v2_datatype("int64"), v2_datatype("bool"), v2_datatype("string")
    ('FP32', 'INT64', 'BOOL', 'BYTES')
    """
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    return _V2_OF.get(name, "BYTES")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"string {value if len(value) <= 30 else value[:27] + '...'!r}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    return "an array" if isinstance(value, list) else "an object"


def _flatten(data: list[Any]) -> list[Any]:
    """Nested (row-major) lists as one flat list, without recursion."""
    if not any(type(v) is list for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


# ---------------------------------------------------------------------- request
@dataclass
class Tensor:
    """One input tensor of a request: its values flat (row-major) and typed."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray[Any, Any]

    @property
    def shown_shape(self) -> str:
        return str(list(self.shape))


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None
    binary_output: bool


def _json_values(name: str, datatype: str, count: int, data: Any) -> np.ndarray[Any, Any]:
    """Tensor data sent in JSON, checked against the datatype and the element count."""
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: data must be an array of values, got {_describe(data)}")
    flat = _flatten(data)
    if len(flat) != count:
        raise InvalidInput(f"input {name!r}: its shape holds {count} values but data has {len(flat)}")
    allowed = _JSON_TYPES[datatype]
    if not set(map(type, flat)) <= set(allowed):
        for index, value in enumerate(flat):
            if type(value) not in allowed:
                kind = _JSON_KIND.get(datatype, "integers" if allowed == (int,) else "numbers")
                raise InvalidInput(
                    f"input {name!r} ({datatype}): element {index} is {_describe(value)}; "
                    f"{datatype} data must be {kind}"
                )
    dtype = DTYPES[datatype]
    if datatype == "BYTES":
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out
    if dtype.kind in "iu" and flat:
        info = np.iinfo(dtype)
        if min(flat) < info.min or max(flat) > info.max:
            index = next(i for i, v in enumerate(flat) if not info.min <= v <= info.max)
            raise InvalidInput(
                f"input {name!r} ({datatype}): element {index} ({flat[index]}) is out of range [{info.min}, {info.max}]"
            )
    if dtype.kind == "f":
        try:
            wide = np.array(flat, dtype=np.float64)
        except OverflowError:
            wide = np.array([float(v) if abs(v) < 1e308 else math.inf for v in flat])
        too_big = np.abs(wide) > np.finfo(dtype).max
        if too_big.any():
            index = int(np.argmax(too_big))
            raise InvalidInput(f"input {name!r} ({datatype}): element {index} ({flat[index]}) is out of range")
        return wide.astype(dtype)
    return np.array(flat, dtype=dtype)


def _binary_values(name: str, datatype: str, count: int, raw: bytes) -> np.ndarray[Any, Any]:
    """Tensor data sent in the binary tensor extension (little-endian; BYTES are 4-byte length prefixed)."""
    if datatype == "BYTES":
        values: list[str] = []
        position = 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise InvalidInput(f"input {name!r} (BYTES): binary data ends inside a length prefix")
            (size,) = struct.unpack_from("<I", raw, position)
            position += 4
            if position + size > len(raw):
                raise InvalidInput(f"input {name!r} (BYTES): element {len(values)} runs past the end of its data")
            try:
                values.append(raw[position : position + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"input {name!r} (BYTES): element {len(values)} is not UTF-8 text") from None
            position += size
        if len(values) != count:
            raise InvalidInput(f"input {name!r}: its shape holds {count} values but binary data has {len(values)}")
        out = np.empty(count, dtype=object)
        out[:] = values
        return out
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {name!r} ({datatype}): its shape holds {count} values ({count * dtype.itemsize} bytes) "
            f"but binary_data_size is {len(raw)}"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if (octets > 1).any():
            index = int(np.argmax(octets > 1))
            raise InvalidInput(f"input {name!r} (BOOL): element {index} is byte {octets[index]}, not 0 or 1")
        return octets.astype(bool)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: parameters must be an object, got {_describe(value)}")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{where}: parameter {key!r} must be true or false, got {_describe(value)}")
    return value


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request body: JSON, optionally followed by binary tensor data."""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise InvalidInput(
                f"Inference-Header-Content-Length must be a number of bytes, got {header_length!r}"
            ) from None
        if not 0 < length <= len(body):
            raise InvalidInput(f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes")
        head, rest = body[:length], body[length:]
    else:
        head, rest = body, b""
    if not head:
        raise InvalidInput("the request body is empty; send a JSON inference request")
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {_describe(payload)}")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f'"id" must be a string, got {_describe(request_id)}')
    parameters = _parameters(payload.get("parameters"), "the request")
    binary_output = bool(_flag(parameters, "binary_data_output", "the request"))

    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput('"inputs" must be a non-empty array of tensors {name, shape, datatype, data}')
    inputs: list[Tensor] = []
    offset = 0
    for position, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise InvalidInput(f"inputs[{position}] must be an object {{name, shape, datatype, data}}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f'inputs[{position}] needs a "name" string')
        if any(t.name == name for t in inputs):
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = item.get("datatype")
        if datatype not in DTYPES:
            raise InvalidInput(
                f"input {name!r}: unknown or unsupported datatype {datatype!r}; use one of {', '.join(DTYPES)}"
            )
        shape = item.get("shape")
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise InvalidInput(f"input {name!r}: shape must be an array of non-negative integers, got {shape!r}")
        count = math.prod(shape)
        where = f"input {name!r}"
        input_parameters = _parameters(item.get("parameters"), where)
        if "shared_memory_region" in input_parameters:
            raise InvalidInput(f"{where}: shared memory is not supported by this server; send the data in the body")
        size = input_parameters.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer, got {size!r}")
            if "data" in item:
                raise InvalidInput(f'{where}: give either "data" or binary_data_size, not both')
            if header_length is None:
                raise InvalidInput(f"{where}: binary_data_size needs the Inference-Header-Content-Length header")
            if offset + size > len(rest):
                raise InvalidInput(f"{where}: binary_data_size {size} runs past the end of the body")
            values = _binary_values(name, datatype, count, rest[offset : offset + size])
            offset += size
        elif "data" not in item:
            raise InvalidInput(f'{where}: "data" is missing')
        else:
            values = _json_values(name, datatype, count, item["data"])
        inputs.append(Tensor(name, datatype, tuple(shape), values))
    if offset != len(rest):
        raise InvalidInput(f"the body has {len(rest) - offset} bytes of binary data that no input claims")

    outputs: list[RequestedOutput] | None = None
    raw_outputs = payload.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput('"outputs" must be an array of {name} objects')
        outputs = []
        for position, item in enumerate(raw_outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInput(f'outputs[{position}] must be an object with a "name" string')
            where = f"output {item['name']!r}"
            output_parameters = _parameters(item.get("parameters"), where)
            if output_parameters.get("classification"):
                raise InvalidInput(f"{where}: the classification extension is not supported; request predict_proba")
            if "shared_memory_region" in output_parameters:
                raise InvalidInput(f"{where}: shared memory is not supported by this server")
            outputs.append(RequestedOutput(item["name"], _flag(output_parameters, "binary_data", where)))
    return InferRequest(request_id, inputs, outputs, binary_output)


# ---------------------------------------------------------------------- signature <-> tensors
def _numeric_columns(signature: Signature) -> bool:
    return bool(signature.inputs) and all(c.dtype in _NUMERIC_COLUMNS for c in signature.inputs)


def metadata_inputs(signature: Signature | None) -> list[dict[str, Any]]:
    """The input tensors a signature is declared as (see the module docstring)."""
    if signature is None:
        return []
    if signature.tensor is not None:
        shape = [-1 if d is None else d for d in signature.tensor.shape]
        return [{"name": TENSOR_INPUT, "datatype": v2_datatype(signature.tensor.dtype), "shape": shape}]
    if _numeric_columns(signature):
        widest = np.result_type(*(np.dtype(c.dtype) for c in signature.inputs))
        datatype = v2_datatype(widest) if widest.kind in "biuf" else "FP64"
        return [{"name": TENSOR_INPUT, "datatype": datatype, "shape": [-1, len(signature.inputs)]}]
    return [{"name": c.name, "datatype": v2_datatype(c.dtype), "shape": [-1]} for c in signature.inputs]


def output_names(served: ServedModel) -> list[str]:
    return [PREDICT, PREDICT_PROBA] if served.model.has_predict_proba else [PREDICT]


def metadata_outputs(served: ServedModel) -> list[dict[str, Any]]:
    """``predict`` (typed from the classes, else the signature's outputs) and ``predict_proba`` for classifiers."""
    classes = served.model.classes
    signature = served.model.signature
    shape = [-1]
    if classes:
        datatype = _typed(np.asarray(classes))[0]
    elif signature is not None and signature.outputs:
        dtypes = {c.dtype for c in signature.outputs}
        datatype = v2_datatype(dtypes.pop()) if len(dtypes) == 1 else "FP64"
        if len(signature.outputs) > 1:
            shape = [-1, len(signature.outputs)]
    else:
        datatype = "FP64"
    outputs: list[dict[str, Any]] = [{"name": PREDICT, "datatype": datatype, "shape": shape}]
    if served.model.has_predict_proba:
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes) if classes else -1]})
    return outputs


def _expected(signature: Signature) -> str:
    names = [str(i["name"]) for i in metadata_inputs(signature)]
    if signature.tensor is None and _numeric_columns(signature):
        names.append(f"or one per column: {', '.join(signature.column_names)}")
    return ", ".join(names)


def _column(values: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """A column cut from a numeric 2-D tensor; 0/1 become booleans for bool columns."""
    if dtype == "bool" and values.dtype.kind in "iuf" and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    return values


def features(signature: Signature | None, inputs: list[Tensor]) -> pd.DataFrame | np.ndarray[Any, Any]:
    """The request's tensors as what ``Signature.validate`` takes: an array or a frame of columns."""
    if signature is not None and signature.tensor is not None:
        spec = signature.tensor
        unknown = [t.name for t in inputs if t.name != TENSOR_INPUT]
        if unknown or len(inputs) != 1:
            raise InvalidInput(
                f"unknown input {unknown[0]!r}; this model takes one input: {TENSOR_INPUT}"
                if unknown
                else f"this model takes one input: {TENSOR_INPUT}"
            )
        tensor = inputs[0]
        if len(tensor.shape) != len(spec.shape) or any(
            want is not None and got != want for want, got in zip(spec.shape, tensor.shape, strict=True)
        ):
            wanted = [-1 if d is None else d for d in spec.shape]
            raise InvalidInput(f"input {tensor.name!r} must have shape {wanted}, got {tensor.shown_shape}")
        if not tensor.shape or tensor.shape[0] == 0:
            raise InvalidInput(f"input {tensor.name!r} has no rows; send at least one")
        return tensor.values.reshape(tensor.shape)

    if signature is None:  # no signature stored: one 2-D tensor, else one column per input
        if len(inputs) == 1 and len(inputs[0].shape) >= 2:
            tensor = inputs[0]
            if tensor.shape[0] == 0:
                raise InvalidInput(f"input {tensor.name!r} has no rows; send at least one")
            return tensor.values.reshape(tensor.shape)
        return _columns(inputs)

    columns = signature.column_names
    by_name = {t.name: t for t in inputs}
    if _numeric_columns(signature) and TENSOR_INPUT in by_name and TENSOR_INPUT not in columns:
        if len(inputs) != 1:
            raise InvalidInput(f"send either {TENSOR_INPUT} or one input per column ({', '.join(columns)}), not both")
        tensor = inputs[0]
        if len(tensor.shape) != 2 or tensor.shape[1] != len(columns):
            raise InvalidInput(
                f"input {tensor.name!r} must have shape [-1, {len(columns)}] (columns {', '.join(columns)}), "
                f"got {tensor.shown_shape}"
            )
        if tensor.shape[0] == 0:
            raise InvalidInput(f"input {tensor.name!r} has no rows; send at least one")
        matrix = tensor.values.reshape(tensor.shape)
        return pd.DataFrame({c.name: _column(matrix[:, j], c.dtype) for j, c in enumerate(signature.inputs)})

    unknown = [t.name for t in inputs if t.name not in columns]
    if unknown:
        raise InvalidInput(f"unknown input {unknown[0]!r}; this model takes: {_expected(signature)}")
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise InvalidInput(f"missing input {', '.join(map(repr, missing))}; this model takes: {_expected(signature)}")
    return _columns(inputs)


def _columns(inputs: list[Tensor]) -> pd.DataFrame:
    rows = None
    for tensor in inputs:
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(
                f"input {tensor.name!r} is one column: its shape must be [-1] or [-1, 1], got {tensor.shown_shape}"
            )
        if rows is None:
            rows = tensor.shape[0]
        elif tensor.shape[0] != rows:
            raise InvalidInput(
                f"inputs have different numbers of rows: {inputs[0].name!r} has {rows}, "
                f"{tensor.name!r} has {tensor.shape[0]}"
            )
    if not rows:
        raise InvalidInput("the inputs have no rows; send at least one")
    return pd.DataFrame({t.name: t.values for t in inputs})


# ---------------------------------------------------------------------- response
def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _typed(values: Any) -> tuple[str, np.ndarray[Any, Any]]:
    """The V2 datatype of model output and the array in that type (strings and objects become BYTES)."""
    array = np.asarray(values)
    if array.dtype.kind == "O":
        try:
            converted = np.asarray(array.tolist())
        except (ValueError, TypeError):
            converted = array
        if converted.shape == array.shape and converted.dtype.kind in "biufU":
            array = converted
    if array.dtype.name in _V2_OF:
        return _V2_OF[array.dtype.name], array
    if array.dtype.kind == "f":
        return "FP64", array.astype(np.float64)
    texts = np.empty(array.size, dtype=object)
    texts[:] = [_text(v) for v in array.ravel().tolist()]
    return "BYTES", texts.reshape(array.shape)


def _binary(datatype: str, array: np.ndarray[Any, Any]) -> bytes:
    if datatype == "BYTES":
        parts = []
        for value in array.ravel():
            encoded = _text(value).encode("utf-8")
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def infer_response(
    prediction: Prediction, request: InferRequest, request_id: str
) -> tuple[dict[str, Any], list[bytes]]:
    """The response object and, for outputs asked for in binary, their bytes in order."""
    scores = prediction.scores
    produced: dict[str, Any] = {PREDICT: scores.predictions}
    if scores.probabilities is not None:
        produced[PREDICT_PROBA] = np.asarray(scores.probabilities, dtype=np.float64)
    wanted = request.outputs or [RequestedOutput(name, None) for name in produced]
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in wanted:
        if output.name not in produced:
            continue
        datatype, array = _typed(produced[output.name])
        tensor: dict[str, Any] = {"name": output.name, "shape": list(array.shape), "datatype": datatype}
        if output.binary if output.binary is not None else request.binary_output:
            chunk = _binary(datatype, array)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = array.ravel().tolist()
        outputs.append(tensor)
    payload = {
        "model_name": prediction.name,
        "model_version": str(prediction.version),
        "id": request.id if request.id is not None else request_id,
        "outputs": outputs,
    }
    return payload, chunks


# ---------------------------------------------------------------------- routes
def _version_or_alias(name: str, text: str) -> tuple[int | None, str | None]:
    """A ``{version}`` path segment: a version number, or else an alias name."""
    if text.isascii() and text.isdigit():
        if int(text) > _MAX_VERSION:  # beyond what the registry can store
            raise NotFound(f"model {name!r} has no version {text}")
        return int(text), None
    return None, text


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, inflated when sent with ``Content-Encoding: gzip`` or ``deflate`` (up to ``limit``)."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid {encoding} data: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the inflated request body is larger than the limit of {limit} bytes")
    if not inflater.eof:
        raise InvalidInput(f"the {encoding} body is truncated")
    return inflated


def router(dataplane: DataPlane) -> APIRouter:
    """The Open Inference Protocol V2 routes over ``dataplane``."""
    api = APIRouter(tags=["v2"])
    repository = dataplane.repository

    @api.get("/v2", summary="Server metadata")
    async def server_metadata() -> Response:
        from shipyard import __version__

        return json_response({"name": "shipyard", "version": __version__, "extensions": []})

    @api.get("/v2/health/live", summary="200 (empty body) while the server runs")
    async def live() -> Response:
        return Response(status_code=200)

    @api.get("/v2/health/ready", summary="200 (empty body) once every model is loaded, else 503")
    async def ready() -> Response:
        return Response(status_code=200 if repository.ready else 503)

    async def _metadata(name: str, version_text: str | None) -> Response:
        if version_text is None:
            served = repository.current(name)
        else:
            version, alias = _version_or_alias(name, version_text)
            served = await repository.get(name, version=version, alias=alias)
        registered = await asyncio.to_thread(repository.service.list_versions, name)
        return json_response(
            {
                "name": name,
                "versions": [str(v.version) for v in sorted(registered, key=lambda v: v.version)],
                "platform": served.model.flavor,
                "inputs": metadata_inputs(served.model.signature),
                "outputs": metadata_outputs(served),
            }
        )

    @api.get("/v2/models/{name}", summary="Model metadata: versions, platform, input and output tensors")
    async def model_metadata(name: str) -> Response:
        return await _metadata(name, None)

    @api.get("/v2/models/{name}/versions/{version}", summary="Metadata of one version (a number or an alias)")
    async def version_metadata(name: str, version: str) -> Response:
        return await _metadata(name, version)

    @api.get("/v2/models/{name}/ready", summary="200 (empty body) when the model is ready")
    async def model_ready(name: str) -> Response:
        repository.current(name)  # 404 when not served, 503 while loading
        return Response(status_code=200)

    @api.get("/v2/models/{name}/versions/{version}/ready", summary="200 (empty body) when the version is ready")
    async def version_ready(name: str, version: str) -> Response:
        number, alias = _version_or_alias(name, version)
        await repository.get(name, version=number, alias=alias)  # loads it on demand, as inference would
        return Response(status_code=200)

    async def _infer(request: Request, name: str, version_text: str | None) -> Response:
        version, alias = _version_or_alias(name, version_text) if version_text is not None else (None, None)
        served = await repository.get(name, version=version, alias=alias)
        request.state.model = served.name
        body = await _read_body(request, dataplane.settings.max_body_bytes)
        infer = parse_request(body, request.headers.get(HEADER_LENGTH))
        if infer.outputs is not None:
            known = output_names(served)
            for output in infer.outputs:
                if output.name not in known:
                    raise InvalidInput(f"unknown output {output.name!r}; this model gives: {', '.join(known)}")
        data = features(served.model.signature, infer.inputs)
        prediction = await dataplane.predict(name, data, version=version, alias=alias)
        request.state.version = prediction.version
        payload, chunks = infer_response(prediction, infer, request.state.request_id)
        if not chunks:
            return json_response(payload)
        head = orjson.dumps(payload)
        return Response(
            head + b"".join(chunks),
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )

    @api.post("/v2/models/{name}/infer", openapi_extra=INFER_BODY, summary="Inference with the served version")
    async def infer(request: Request, name: str) -> Response:
        return await _infer(request, name, None)

    @api.post(
        "/v2/models/{name}/versions/{version}/infer",
        openapi_extra=INFER_BODY,
        summary="Inference with one version (a number or an alias)",
    )
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await _infer(request, name, version)

    return api
