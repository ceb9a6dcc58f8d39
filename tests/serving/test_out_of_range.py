"""Numbers outside a column's range are the caller's error (4xx naming the column and the range), never a 500.

JSON parsers (orjson, the server's) hand integers above the 64-bit range over as floats, CSV parsers as
Python ints: both kinds reach the signature check, in every protocol and body layout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.serving.inprocess import post_json, serving

from shipyard.errors import SchemaError
from shipyard.signature import Signature

INT64_RANGE = "[-9223372036854775808, 9223372036854775807]"
ROW = {"amount": 12.5, "hour": 3, "channel": "web", "is_foreign": False}
TOO_BIG = [2**63, 2**64, 10**30, -(10**30)]  # int64 + 1; above uint64 (a float once parsed); far above; far below


def _v2_infer(hour: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [1], "data": [1.0]},
            {"name": "hour", "datatype": "INT64", "shape": [1], "data": [hour]},
            {"name": "channel", "datatype": "BYTES", "shape": [1], "data": ["web"]},
            {"name": "is_foreign", "datatype": "BOOL", "shape": [1], "data": [False]},
        ]
    }


def _cases(big: int) -> list[tuple[str, Any, int]]:
    row = {**ROW, "hour": big}
    values = list(row.values())
    return [
        ("/v1/models/fraud/predict", {"instances": [row]}, 422),
        ("/v1/models/fraud/predict", {"instances": [ROW, row]}, 422),
        ("/v1/models/fraud/predict", {"inputs": {k: [v] for k, v in row.items()}}, 422),
        ("/v1/models/fraud/predict", {"instances": [values]}, 422),
        ("/v1/models/fraud/versions/2/predict", {"instances": [row]}, 422),
        # MLflow answers input that does not fit the model with 400, as mlflow models serve does
        ("/invocations", {"dataframe_records": [row]}, 400),
        ("/invocations", {"dataframe_split": {"columns": list(row), "data": [values]}}, 400),
        ("/invocations", {"dataframe_split": {"data": [values]}}, 400),
        ("/invocations", {"instances": [row]}, 400),
        ("/invocations", {"inputs": [values]}, 400),
        ("/v1/models/fraud/invocations", {"inputs": {k: [v] for k, v in row.items()}}, 400),
    ]


def test_an_integer_out_of_int64_range_is_a_4xx_naming_the_column_and_range_in_every_protocol(
    fraud_model: tuple[object, pd.DataFrame], home: Path
) -> None:
    async def scenario() -> list[str]:
        failures = []
        async with serving() as client:
            for big in TOO_BIG:
                for path, body, status in _cases(big):
                    answer = await post_json(client, path, body)
                    text = answer.text
                    if answer.status_code != status or "column 'hour'" not in text or INT64_RANGE not in text:
                        failures.append(f"{big} {path} {body}: {answer.status_code} {text[:300]}")
                answer = await post_json(client, "/v2/models/fraud/infer", _v2_infer(big))
                if answer.status_code != 400 or "input 'hour'" not in answer.text:  # V2 names inputs, not columns
                    failures.append(f"{big} v2: {answer.status_code} {answer.text[:300]}")
                csv = f"amount,hour,channel,is_foreign\n12.5,{big},web,False\n"
                answer = await client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
                if answer.status_code != 400 or "column 'hour'" not in answer.text or INT64_RANGE not in answer.text:
                    failures.append(f"{big} csv: {answer.status_code} {answer.text[:300]}")
            fine = await post_json(client, "/v1/models/fraud/predict", {"instances": [{**ROW, "hour": 2**63 - 1}]})
            assert fine.status_code == 200, fine.text  # the edge of the range is a value like any other
        return failures

    assert asyncio.run(scenario()) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"f32": 1e39, "f64": 1.0, "i8": 1}], "column 'f32': expected float32, got float 1e+39 out of range"),
        (pd.DataFrame({"f32": [1e39], "f64": [1.0], "i8": [1]}), "column 'f32': expected float32, got float 1e+39"),
        ([{"f32": 1.0, "f64": 10**400, "i8": 1}], "column 'f64': expected float64, got int of 401 digits out of range"),
        (
            [{"f32": 1.0, "f64": 1.0, "i8": 300.0}],
            "column 'i8': expected int8, got float 300.0 out of range [-128, 127]",
        ),
        (
            {"f32": [1.0], "f64": [1.0], "i8": [2**64]},
            "column 'i8': expected int8, got int 18446744073709551616 out of",
        ),
    ],
)
def test_signature_names_values_out_of_a_columns_range(data: Any, message: str) -> None:
    signature = Signature.infer(
        pd.DataFrame({"f32": np.array([1.0], dtype="float32"), "f64": [1.0], "i8": np.array([1], dtype="int8")})
    )
    with pytest.raises(SchemaError) as raised:
        signature.validate(data)
    assert any(message in problem for problem in raised.value.problems), raised.value.problems


@pytest.mark.parametrize(
    ("dtype", "data", "message"),
    [
        ("int8", [[1], [300]], "expected int8, got int 300 out of range [-128, 127] (row 1)"),  # not wrapped to 44
        ("uint8", [[-1]], "expected uint8, got int -1 out of range [0, 255] (row 0)"),  # not wrapped to 255
        ("int64", np.array([[2**64 - 1]], dtype="uint64"), "expected int64, got int 18446744073709551615 out of"),
        ("float32", [[1e300]], "expected float32, got float 1e+300 out of range"),  # not inf
    ],
)
def test_tensor_values_out_of_range_are_named_not_wrapped(dtype: str, data: Any, message: str) -> None:
    signature = Signature.infer(np.zeros((1, 1), dtype=dtype))
    with pytest.raises(SchemaError) as raised:
        signature.validate(data)
    assert any(message in problem for problem in raised.value.problems), raised.value.problems
