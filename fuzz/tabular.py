"""Fuzz what parses tabular request bodies: MLflow's CSV and JSON layouts and the native JSON body, into rows.

Input layout: byte 0 chooses the parser (bits 0-1: 0 MLflow CSV, 1 MLflow JSON, 2 native JSON, 3 native JSON
with ``allow_extra``) and the signature the rows are checked against (bits 2-4); the rest is the body. The rows
go on as the server takes them: the row count (the server's row limit), then ``Signature.validate``.

Run: ``python fuzz/tabular.py fuzz/corpus/tabular`` (see fuzz/README.md).
"""

from __future__ import annotations

import atheris
from support import guarded, main

with atheris.instrument_imports(include=["shipyard"]):
    import numpy as np
    import pandas as pd

    from shipyard.serving.dataplane import count_rows
    from shipyard.serving.jsonio import as_object, parse_json
    from shipyard.serving.mlflow import data_from_json, read_csv
    from shipyard.serving.native import rows_from_body
    from shipyard.signature import Signature

SIGNATURES = [
    Signature.infer(pd.DataFrame({"amount": [1.5], "hour": [3], "channel": ["web"], "is_foreign": [False]})),
    Signature.infer(pd.DataFrame({"a": [1.5], "b": [2.5]})),  # all float64: the array fast path
    Signature.infer(
        pd.DataFrame(
            {
                "small": np.array([1], dtype="int8"),
                "u": np.array([1], dtype="uint64"),
                "f": np.array([1.0], dtype="float32"),
            }
        )
    ),
    Signature.infer(pd.DataFrame({"when": pd.to_datetime(["2024-01-01"]), "c": pd.Categorical(["x"])})),
    Signature.infer(np.zeros((2, 3))),  # a tensor signature fed with rows
    Signature.infer(np.zeros((2, 2), dtype="int32")),
]


def _string_columns(signature: Signature) -> list[str]:
    return [c.name for c in signature.inputs if c.dtype in ("string", "category")]


def _json_rows(body: bytes, native: bool) -> object:
    payload = parse_json(body)
    if native:
        return rows_from_body(as_object(payload))
    return data_from_json(payload)[0]


def test_one_input(data: bytes) -> None:
    """Parse one body and validate its rows; only 4xx shipyard errors may come out."""
    if not data:
        return
    mode, body = data[0], data[1:]
    signature = SIGNATURES[(mode >> 2) % len(SIGNATURES)]
    parser = mode & 3
    if parser == 0:
        rows = guarded(read_csv, body, _string_columns(signature))
    else:
        rows = guarded(_json_rows, body, parser >= 2)
    if rows is None:
        return
    count_rows(rows)
    guarded(signature.validate, rows, allow_extra=parser == 3)


if __name__ == "__main__":
    main(test_one_input)
