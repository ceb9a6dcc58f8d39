"""The V2 codec without a server: tensor data, request and response bodies, and the signature mapping."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import InvalidInput
from shipyard.scoring.batcher import Scores
from shipyard.serving.v2_codec import check_requested_outputs, infer_response, parse_request
from shipyard.serving.v2_signature import features, metadata_inputs, metadata_outputs
from shipyard.serving.v2_tensors import DTYPES, binary_tensor_values, encode_output, json_tensor_values, typed_output
from shipyard.signature import Signature

# Values at the edges of each datatype's range, all exactly representable in it.
EDGE_VALUES: dict[str, list[Any]] = {
    "BOOL": [True, False, False, True],
    **{
        name: [int(np.iinfo(DTYPES[name]).min), 0, 1, int(np.iinfo(DTYPES[name]).max)]
        for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
    },
    "FP16": [-65504.0, 0.5, -0.0, 65504.0],
    "FP32": [float(np.finfo(np.float32).min), 0.25, 1.5, float(np.finfo(np.float32).max)],
    "FP64": [-1.7976931348623157e308, 1e-300, 2.5, 1.7976931348623157e308],
    "BYTES": ["web", "", "ünïcödé ✓", "a b,c"],
}


def raises(message: str) -> Any:
    """``pytest.raises`` for an :class:`InvalidInput` whose message contains ``message`` as written."""
    return pytest.raises(InvalidInput, match=re.escape(message))


def request_body(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **fields}).encode()


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


# ---------------------------------------------------------------------- datatypes
@pytest.mark.parametrize("datatype", list(DTYPES))
def test_every_datatype_round_trips_through_json_and_binary(datatype: str) -> None:
    values = EDGE_VALUES[datatype]
    decoded = json_tensor_values("x", datatype, [2, 2], [values[:2], values[2:]])
    assert decoded.dtype == DTYPES[datatype] and decoded.tolist() == values

    as_json, no_bytes = encode_output("x", decoded.reshape(2, 2), binary=False)
    assert no_bytes is None
    assert as_json == {"name": "x", "shape": [2, 2], "datatype": datatype, "data": values}

    as_binary, chunk = encode_output("x", decoded.reshape(2, 2), binary=True)
    assert chunk is not None and as_binary["parameters"] == {"binary_data_size": len(chunk)}
    assert (as_binary["datatype"], as_binary["shape"], "data" in as_binary) == (datatype, [2, 2], False)
    assert binary_tensor_values("x", datatype, [2, 2], chunk).tolist() == values


@pytest.mark.parametrize("datatype", list(DTYPES))
def test_json_and_binary_request_data_parse_to_the_same_tensor(datatype: str) -> None:
    values = EDGE_VALUES[datatype]
    from_json = parse_request(request_body(tensor("x", datatype, [4], values)), None).inputs[0]
    _, chunk = encode_output("x", from_json.values, binary=True)
    assert chunk is not None
    head = request_body(
        {"name": "x", "datatype": datatype, "shape": [4], "parameters": {"binary_data_size": len(chunk)}}
    )
    from_binary = parse_request(head + chunk, str(len(head))).inputs[0]
    for parsed in (from_json, from_binary):
        assert (parsed.name, parsed.datatype, parsed.shape) == ("x", datatype, (4,))
        assert parsed.values.dtype == DTYPES[datatype] and parsed.values.tolist() == values


def test_binary_data_is_little_endian() -> None:
    assert binary_tensor_values("x", "INT32", [2], struct.pack("<2i", -2, 70000)).tolist() == [-2, 70000]
    assert binary_tensor_values("x", "FP64", [1], struct.pack("<d", 0.1)).tolist() == [0.1]
    assert encode_output("x", np.array([1], dtype=">u2"), binary=True)[1] == b"\x01\x00"


def test_model_output_gets_the_narrowest_fitting_datatype() -> None:
    assert typed_output(np.array([1, 2], dtype=np.uint8))[0] == "UINT8"
    assert typed_output(np.array([0.5], dtype=np.float16))[0] == "FP16"
    datatype, array = typed_output(np.array([1, 2], dtype=object))
    assert (datatype, array.dtype, array.tolist()) == ("INT64", np.int64, [1, 2])
    datatype, array = typed_output(np.array(["yes", b"n\xc3\xb8", 3], dtype=object))
    assert (datatype, array.tolist()) == ("BYTES", ["yes", "nø", "3"])
    assert typed_output(np.array([np.longdouble(1.5)]))[0] == "FP64"


# ---------------------------------------------------------------------- tensor data
def test_flat_and_nested_data_are_the_same_row_major_values() -> None:
    flat = list(range(12))
    expected = json_tensor_values("x", "INT64", [2, 3, 2], flat).tolist()
    assert expected == flat
    for data in ([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]], [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 11]]]):
        assert json_tensor_values("x", "INT64", [2, 3, 2], data).tolist() == expected
    assert json_tensor_values("x", "FP32", [0, 4], []).tolist() == []


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP64", [2, 3], [[1.0, 2.0, 3.0], [4.0, 5.0]], "input 'x': its shape holds 6 values but data has 5"),
        ("FP64", [2, 2], [1.0, 2.0, 3.0, 4.0, 5.0], "input 'x': its shape holds 4 values but data has 5"),
        ("INT8", [1], 5, "input 'x': data must be an array of values, got number 5"),
        ("INT8", [2, -1], [1], "input 'x': shape must be an array of non-negative integers, got [2, -1]"),
        ("INT8", [1.5], [1], "input 'x': shape must be an array of non-negative integers, got [1.5]"),
        ("FLOAT", [1], [1], "input 'x': unknown or unsupported datatype 'FLOAT'; use one of BOOL, INT8, INT16"),
        ("BOOL", [2], [True, 1], "input 'x' (BOOL): element 1 is number 1; BOOL data must be true or false"),
        ("INT32", [2], [1, 1.5], "input 'x' (INT32): element 1 is number 1.5; INT32 data must be integers"),
        ("UINT8", [1], [True], "input 'x' (UINT8): element 0 is true; UINT8 data must be integers"),
        ("FP64", [2], [1.0, "abc"], "input 'x' (FP64): element 1 is string 'abc'; FP64 data must be numbers"),
        ("FP32", [1], [None], "input 'x' (FP32): element 0 is null; FP32 data must be numbers"),
        ("BYTES", [2], ["a", 1], "input 'x' (BYTES): element 1 is number 1; BYTES data must be strings"),
        ("BYTES", [1], [{"a": 1}], "input 'x' (BYTES): element 0 is an object; BYTES data must be strings"),
        ("INT8", [3], [1, 300, 2], "input 'x' (INT8): element 1 (300) is out of range [-128, 127]"),
        ("UINT64", [1], [-1], "input 'x' (UINT64): element 0 (-1) is out of range [0, 18446744073709551615]"),
        ("FP16", [2], [1.0, 70000.0], "input 'x' (FP16): element 1 (70000.0) is out of range"),
        ("FP64", [1], [10**400], f"input 'x' (FP64): element 0 ({10**400}) is out of range"),
    ],
)
def test_json_data_that_does_not_fit_is_refused_with_the_element_named(
    datatype: str, shape: list[Any], data: Any, message: str
) -> None:
    with raises(message):
        json_tensor_values("x", datatype, shape, data)


def test_bytes_are_text_and_base64_is_not_decoded() -> None:
    texts = ["aGVsbG8=", "plain", "日本"]
    assert json_tensor_values("s", "BYTES", [3], texts).tolist() == texts  # JSON BYTES are strings as sent
    packed = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    assert binary_tensor_values("s", "BYTES", [3], packed).tolist() == texts
    assert binary_tensor_values("s", "BYTES", [2], b"\x00\x00\x00\x00" * 2).tolist() == ["", ""]


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\x00" * 6, "input 'x' (FP32): its shape holds 2 values (8 bytes) but binary_data_size is 6"),
        ("INT64", [0], b"\x00", "input 'x' (INT64): its shape holds 0 values (0 bytes) but binary_data_size is 1"),
        ("BOOL", [3], b"\x01\x02\x00", "input 'x' (BOOL): element 1 is byte 2, not 0 or 1"),
        ("BYTES", [2], b"\x01\x00\x00\x00a", "input 'x': its shape holds 2 values but binary data has 1"),
        ("BYTES", [1], b"\x01\x00", "input 'x' (BYTES): binary data ends inside a length prefix"),
        ("BYTES", [1], b"\x05\x00\x00\x00abc", "input 'x' (BYTES): element 0 runs past the end of its data"),
        ("BYTES", [1], b"\x01\x00\x00\x00\xff", "input 'x' (BYTES): element 0 is not UTF-8 text"),
    ],
)
def test_binary_data_that_does_not_fit_is_refused(datatype: str, shape: list[int], raw: bytes, message: str) -> None:
    with raises(message):
        binary_tensor_values("x", datatype, shape, raw)


# ---------------------------------------------------------------------- request and response bodies
def test_a_request_mixes_json_and_binary_inputs_in_order() -> None:
    head = request_body(
        {"name": "a", "datatype": "INT16", "shape": [2], "parameters": {"binary_data_size": 4}},
        tensor("b", "BYTES", [1], ["json"]),
        {"name": "c", "datatype": "UINT8", "shape": [1, 1], "parameters": {"binary_data_size": 1}},
        id="r-1",
        parameters={"binary_data_output": True},
        outputs=[{"name": "predict_proba", "parameters": {"binary_data": False}}, {"name": "predict"}],
    )
    request = parse_request(head + struct.pack("<2h", -5, 5) + b"\x07", str(len(head)))
    assert (request.id, request.binary_output) == ("r-1", True)
    assert [(t.name, t.shape, t.values.tolist()) for t in request.inputs] == [
        ("a", (2,), [-5, 5]),
        ("b", (1,), ["json"]),
        ("c", (1, 1), [7]),
    ]
    assert request.outputs is not None
    assert [(o.name, o.binary) for o in request.outputs] == [("predict_proba", False), ("predict", None)]


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"", None, "the request body is empty"),
        (b"[1]", None, "the request body must be a JSON object, got an array"),
        (b'{"inputs": [', None, "the request body is not valid JSON"),
        (request_body(id=7), None, '"id" must be a string, got number 7'),
        (request_body(), None, '"inputs" must be a non-empty array'),
        (request_body({"datatype": "FP64"}), None, 'inputs[0] needs a "name" string'),
        (request_body(*[tensor("x", "FP64", [1], [1.0])] * 2), None, "input 'x' is given twice"),
        (request_body({"name": "x", "datatype": "FP64", "shape": [1]}), None, "input 'x': \"data\" is missing"),
        (request_body(tensor("x", "FP64", [1], [1.0])), "x", "must be a number of bytes, got 'x'"),
        (request_body(tensor("x", "FP64", [1], [1.0])), "900", "Inference-Header-Content-Length is 900 but the body"),
        (
            request_body({"name": "x", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}),
            None,
            "input 'x': binary_data_size needs the Inference-Header-Content-Length header",
        ),
        (
            request_body(tensor("x", "FP64", [1], [1.0]), outputs=[{"name": "p", "parameters": {"classification": 2}}]),
            None,
            "output 'p': the classification extension is not supported",
        ),
        (
            request_body(tensor("x", "FP64", [1], [1.0]), parameters={"binary_data_output": "yes"}),
            None,
            "the request: parameter 'binary_data_output' must be true or false, got string 'yes'",
        ),
    ],
)
def test_malformed_requests_are_refused(body: bytes, header_length: str | None, message: str) -> None:
    with raises(message):
        parse_request(body, header_length)


def test_binary_data_must_be_claimed_exactly() -> None:
    head = request_body({"name": "x", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}})
    with raises("the body has 1 bytes of binary data that no input claims"):
        parse_request(head + b"\x01\x02\x03", str(len(head)))
    with raises("input 'x': binary_data_size 2 runs past the end of the body"):
        parse_request(head + b"\x01", str(len(head)))


def test_the_response_holds_the_outputs_asked_for_in_the_form_asked_for() -> None:
    scores = Scores(np.array(["no", "yes"], dtype=object), np.array([[0.75, 0.25], [0.5, 0.5]]))
    every = parse_request(request_body(tensor("x", "FP64", [1], [1.0])), None)
    payload, chunks = infer_response("m", 2, scores, every, "fallback-id")
    assert (payload["model_name"], payload["model_version"], payload["id"], chunks) == ("m", "2", "fallback-id", [])
    assert payload["outputs"] == [
        {"name": "predict", "shape": [2], "datatype": "BYTES", "data": ["no", "yes"]},
        {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.75, 0.25, 0.5, 0.5]},
    ]

    selected = parse_request(
        request_body(
            tensor("x", "FP64", [1], [1.0]),
            id="mine",
            parameters={"binary_data_output": True},
            outputs=[{"name": "predict_proba"}, {"name": "predict", "parameters": {"binary_data": False}}],
        ),
        None,
    )
    payload, chunks = infer_response("m", 2, scores, selected, "fallback-id")
    assert payload["id"] == "mine"
    proba, predict = payload["outputs"]
    assert proba == {
        "name": "predict_proba",
        "shape": [2, 2],
        "datatype": "FP64",
        "parameters": {"binary_data_size": 32},
    }
    assert predict["data"] == ["no", "yes"]
    assert chunks == [np.array([0.75, 0.25, 0.5, 0.5], dtype="<f8").tobytes()]


def test_outputs_a_model_does_not_give_are_refused() -> None:
    request = parse_request(request_body(tensor("x", "FP64", [1], [1.0]), outputs=[{"name": "predict_proba"}]), None)
    check_requested_outputs(request, ["predict", "predict_proba"])
    with raises("unknown output 'predict_proba'; this model gives: predict"):
        check_requested_outputs(request, ["predict"])
    payload, _ = infer_response("m", 1, Scores(np.array([1.5])), request, "id")
    assert payload["outputs"] == []  # a regressor has no predict_proba to give


# ---------------------------------------------------------------------- signatures
def test_metadata_declares_the_inputs_and_outputs_of_each_kind_of_signature() -> None:
    tensor_sig = Signature.infer(np.zeros((2, 3, 4), dtype=np.uint8))
    assert metadata_inputs(tensor_sig) == [{"name": "input-0", "datatype": "UINT8", "shape": [-1, 3, 4]}]
    numeric = Signature.infer(pd.DataFrame({"a": np.array([1], np.int8), "b": np.array([1], np.int16)}))
    assert metadata_inputs(numeric) == [{"name": "input-0", "datatype": "INT16", "shape": [-1, 2]}]
    mixed = Signature.infer(pd.DataFrame({"a": [1.5], "flag": [True], "city": ["Oslo"]}))
    assert [(i["name"], i["datatype"]) for i in metadata_inputs(mixed)] == [
        ("a", "FP64"),
        ("flag", "BOOL"),
        ("city", "BYTES"),
    ]
    assert metadata_inputs(None) == []

    two_targets = Signature.infer(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"y1": [1.0], "y2": [2.0]}))
    assert metadata_outputs(two_targets, None, has_predict_proba=False) == [
        {"name": "predict", "datatype": "FP64", "shape": [-1, 2]}
    ]
    assert metadata_outputs(None, [0, 1, 2], has_predict_proba=True) == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]


def test_features_check_tensor_shapes_against_the_signature() -> None:
    tensor_sig = Signature.infer(np.zeros((2, 3), dtype=np.float32))
    x = parse_request(request_body(tensor("input-0", "FP32", [2, 3], [[1, 2, 3], [4, 5, 6]])), None).inputs
    array = features(tensor_sig, x)
    assert isinstance(array, np.ndarray) and array.tolist() == [[1, 2, 3], [4, 5, 6]]
    with raises("input 'input-0' must have shape [-1, 3], got [6]"):
        features(tensor_sig, parse_request(request_body(tensor("input-0", "FP32", [6], list(range(6)))), None).inputs)
    with raises("input 'input-0' has no rows; send at least one"):
        features(tensor_sig, parse_request(request_body(tensor("input-0", "FP32", [0, 3], [])), None).inputs)
    with raises("unknown input 'pixels'; this model takes one input: input-0"):
        features(tensor_sig, parse_request(request_body(tensor("pixels", "FP32", [1, 3], [1, 2, 3])), None).inputs)

    columns = Signature.infer(pd.DataFrame({"a": [1.5], "city": ["Oslo"]}))
    a, city = tensor("a", "FP64", [2], [1.0, 2.0]), tensor("city", "BYTES", [2, 1], [["x"], ["y"]])
    frame = features(columns, parse_request(request_body(city, a), None).inputs)
    assert isinstance(frame, pd.DataFrame) and frame.to_dict("list") == {"city": ["x", "y"], "a": [1.0, 2.0]}
    with raises("inputs have different numbers of rows: 'a' has 2, 'city' has 1"):
        features(columns, parse_request(request_body(a, dict(city, shape=[1], data=["x"])), None).inputs)
    with raises("input 'a' is one column: its shape must be [-1] or [-1, 1], got [1, 2]"):
        features(columns, parse_request(request_body(dict(a, shape=[1, 2]), city), None).inputs)
    with raises("missing input 'city'; this model takes: a, city"):
        features(columns, parse_request(request_body(a), None).inputs)


def test_the_codec_modules_load_no_web_framework() -> None:
    modules = ["shipyard.serving.v2_codec", "shipyard.serving.v2_tensors", "shipyard.serving.v2_signature"]
    code = (
        f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'httpx', 'uvicorn'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
