"""The Open Inference Protocol (KServe V2) codec: inference request bodies in, response bodies out.

Pure data conversion, no HTTP: :func:`parse_request` reads a request body (JSON, optionally followed by
binary tensor data) into typed :class:`Tensor` values, and :func:`infer_response` encodes a model's scores
as the response's output tensors, JSON unless the request asks for binary ones (``binary_data`` /
``binary_data_output``). Tensor values are converted by :mod:`shipyard.serving.v2_tensors`; how tensors map
onto a model's signature is :mod:`shipyard.serving.v2_signature`; the routes are :mod:`shipyard.serving.v2`.

>>> request = parse_request(b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [7, 9]}]}', None)
>>> request.inputs[0]
Tensor(name='x', datatype='INT32', shape=(2,), values=array([7, 9], dtype=int32))
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.scoring.batcher import Scores
from shipyard.serving.v2_tensors import (
    binary_tensor_values,
    checked_datatype,
    checked_shape,
    describe_json,
    encode_output,
    json_tensor_values,
)

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


@dataclass
class Tensor:
    """One input tensor of a request: its values flat (row-major) and typed."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray[Any, Any]

    @property
    def shown_shape(self) -> str:
        """The shape as the request wrote it, for messages: ``[2, 3]``."""
        return str(list(self.shape))


@dataclass
class RequestedOutput:
    """An entry of the request's ``outputs``: its name and whether it is wanted in binary (None: the default)."""

    name: str
    binary: bool | None


@dataclass
class InferRequest:
    """A parsed inference request: its id, input tensors, the outputs asked for (None: all) and the binary default."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None
    binary_output: bool


# ---------------------------------------------------------------------- request
def parse_request(body: bytes, header_length: str | None, max_inputs: int = sys.maxsize) -> InferRequest:
    """An inference request body: JSON, followed by binary tensor data when ``header_length`` is given.

    ``header_length`` is the ``Inference-Header-Content-Length`` header: how many bytes of ``body`` are JSON.
    More than ``max_inputs`` input tensors are refused (413) before any is read.

    >>> head = (b'{"id": "7", "inputs": [{"name": "b", "datatype": "BOOL", "shape": [2], '
    ...         b'"parameters": {"binary_data_size": 2}}]}')
    >>> request = parse_request(head + b"\\x01\\x00", str(len(head)))
    >>> request.id, request.inputs[0].values, request.outputs
    ('7', array([ True, False]), None)
    """
    head, rest = _split_body(body, header_length)
    if not head:
        raise InvalidInput("the request body is empty; send a JSON inference request")
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {describe_json(payload)}")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f'"id" must be a string, got {describe_json(request_id)}')
    parameters = _parameters(payload.get("parameters"), "the request")
    binary_output = bool(_flag(parameters, "binary_data_output", "the request"))
    inputs = _inputs(payload.get("inputs"), rest, header_length is not None, max_inputs)
    return InferRequest(request_id, inputs, _outputs(payload.get("outputs")), binary_output)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON head and the binary rest of a body."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput(
            f"Inference-Header-Content-Length must be a number of bytes, got {header_length!r}"
        ) from None
    if not 0 < length <= len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes")
    return body[:length], body[length:]


def _parameters(value: Any, where: str) -> dict[str, Any]:
    """The ``parameters`` object of the request, an input or an output (``where``); none is ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: parameters must be an object, got {describe_json(value)}")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    """A true/false parameter, or None when it is not given."""
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{where}: parameter {key!r} must be true or false, got {describe_json(value)}")
    return value


def _inputs(raw_inputs: Any, binary: bytes, header_given: bool, max_inputs: int) -> list[Tensor]:
    """The request's ``inputs``; ``binary`` is the data after the JSON, claimed in order by ``binary_data_size``."""
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput('"inputs" must be a non-empty array of tensors {name, shape, datatype, data}')
    if len(raw_inputs) > max_inputs:
        raise PayloadTooLarge(
            f'"inputs" has {len(raw_inputs)} tensors, more than the limit of {max_inputs} (max_columns in the serve '
            "config, or the model's input count if larger); send only the model's inputs"
        )
    inputs: list[Tensor] = []
    names: set[str] = set()  # a set: a list scan per input made many inputs cost quadratic time on the event loop
    offset = 0
    for position, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise InvalidInput(f"inputs[{position}] must be an object {{name, shape, datatype, data}}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f'inputs[{position}] needs a "name" string')
        if name in names:
            raise InvalidInput(f"input {name!r} is given twice")
        names.add(name)
        datatype = checked_datatype(name, item.get("datatype"))
        shape = checked_shape(name, item.get("shape"))
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
            if not header_given:
                raise InvalidInput(f"{where}: binary_data_size needs the Inference-Header-Content-Length header")
            if offset + size > len(binary):
                raise InvalidInput(f"{where}: binary_data_size {size} runs past the end of the body")
            values = binary_tensor_values(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" not in item:
            raise InvalidInput(f'{where}: "data" is missing')
        else:
            values = json_tensor_values(name, datatype, shape, item["data"])
        inputs.append(Tensor(name, datatype, shape, values))
    if offset != len(binary):
        raise InvalidInput(f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    return inputs


def _outputs(raw_outputs: Any) -> list[RequestedOutput] | None:
    """The request's ``outputs``, or None when it leaves them out (every output is wanted)."""
    if raw_outputs is None:
        return None
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
    return outputs


def check_requested_outputs(request: InferRequest, available: Sequence[str]) -> None:
    """Refuse a request that asks for an output the model does not give.

    >>> request = parse_request(b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}], '
    ...                         b'"outputs": [{"name": "scores"}]}', None)
    >>> check_requested_outputs(request, ["predict", "predict_proba"])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: unknown output 'scores'; this model gives: predict, predict_proba
    """
    for output in request.outputs or []:
        if output.name not in available:
            raise InvalidInput(f"unknown output {output.name!r}; this model gives: {', '.join(available)}")


def infer_response(
    model_name: str, model_version: int, scores: Scores, request: InferRequest, request_id: str
) -> tuple[dict[str, Any], list[bytes]]:
    """The response object and, for outputs asked for in binary, their bytes in order.

    Outputs are ``predict`` and, when the scores have probabilities, ``predict_proba`` (FP64); the request's
    ``outputs`` select among them. The response's id is the request's, else ``request_id``.

    >>> request = parse_request(b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}], '
    ...                         b'"outputs": [{"name": "predict"}]}', None)
    >>> infer_response("iris", 3, Scores(np.array([2]), np.array([[0.1, 0.9]])), request, "req-1")
    ({'model_name': 'iris', 'model_version': '3', 'id': 'req-1',
      'outputs': [{'name': 'predict', 'shape': [1], 'datatype': 'INT64', 'data': [2]}]}, [])
    """
    produced: dict[str, Any] = {PREDICT: scores.predictions}
    if scores.probabilities is not None:
        produced[PREDICT_PROBA] = np.asarray(scores.probabilities, dtype=np.float64)
    wanted = request.outputs or [RequestedOutput(name, None) for name in produced]
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in wanted:
        if output.name not in produced:
            continue
        binary = output.binary if output.binary is not None else request.binary_output
        tensor, chunk = encode_output(output.name, produced[output.name], binary=binary)
        outputs.append(tensor)
        if chunk is not None:
            chunks.append(chunk)
    payload = {
        "model_name": model_name,
        "model_version": str(model_version),
        "id": request.id if request.id is not None else request_id,
        "outputs": outputs,
    }
    return payload, chunks
