"""Fuzz ``Signature.validate`` with Python data of every shape a caller can pass (the Python API takes any object).

The bytes drive a small builder: a signature (columnar with mixed dtypes, or a tensor), a data layout (records,
a dict of columns, rows of values, a DataFrame, an array) and values from a pool that holds the awkward
ones (huge ints, NaN, inf, numpy scalars, nested lists, dicts, bytes). Options ``allow_extra``, ``as_array`` and
``first_row`` come from the bytes too.

Run: ``python fuzz/signature_validate.py fuzz/corpus/signature_validate`` (see fuzz/README.md).
"""

from __future__ import annotations

import math
from typing import Any

import atheris
from support import guarded, main

with atheris.instrument_imports(include=["shipyard"]):
    import numpy as np
    import pandas as pd

    from shipyard.signature import ColumnSpec, Signature, TensorSpec

COLUMN_DTYPES = [
    "float64",
    "float32",
    "float16",
    "int64",
    "int32",
    "int8",
    "uint8",
    "uint64",
    "bool",
    "string",
    "category",
    "datetime64[ns]",
]
TENSOR_DTYPES = ["float64", "float32", "int64", "int8", "uint8", "bool"]
NAMES = ["a", "b", "c", "amount", "0", ""]


def _value(fdp: atheris.FuzzedDataProvider) -> Any:
    kind = fdp.ConsumeIntInRange(0, 19)
    if kind == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 80))  # up to 2**640: far past every numeric range
    if kind == 1:
        return fdp.ConsumeRegularFloat()
    if kind == 2:
        return fdp.ConsumeFloat()  # NaN and inf too
    if kind == 3:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 4:
        return fdp.ConsumeBool()
    if kind == 5:
        return None
    if kind == 6:
        return [_scalar(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if kind == 7:
        return {"k": _scalar(fdp)}
    if kind == 8:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6))
    if kind == 9:
        return np.int64(fdp.ConsumeIntInRange(-(2**63), 2**63 - 1))
    if kind == 10:
        return np.uint64(fdp.ConsumeIntInRange(0, 2**64 - 1))
    if kind == 11:
        return np.float32(fdp.ConsumeFloatInRange(-3e38, 3e38))
    if kind == 12:
        return np.bool_(fdp.ConsumeBool())
    if kind == 13:
        return math.nan
    if kind == 14:
        return fdp.PickValueInList([2**63, 2**64, -(2**63) - 1, 10**400, 1e308, 1.8446744073709552e19, -0.0])
    if kind == 15:
        return complex(fdp.ConsumeRegularFloat(), 1.0)
    if kind == 16:
        return pd.Timestamp("2024-01-01") if fdp.ConsumeBool() else "2024-02-30"
    if kind == 17:
        return fdp.PickValueInList(["inf", "nan", "1e400", "  3 ", "0x10", "True"])
    if kind == 18:
        return float(fdp.ConsumeIntInRange(-(2**70), 2**70))
    return fdp.ConsumeIntInRange(-3, 300)


def _scalar(fdp: atheris.FuzzedDataProvider) -> Any:
    value = _value(fdp)
    return value if not isinstance(value, (list, dict)) else 0


def _signature(fdp: atheris.FuzzedDataProvider) -> Signature:
    if fdp.ConsumeIntInRange(0, 3) == 0:
        dims = [fdp.ConsumeIntInRange(1, 3) for _ in range(fdp.ConsumeIntInRange(0, 2))]
        return Signature(tensor=TensorSpec(fdp.PickValueInList(TENSOR_DTYPES), (None, *dims)))
    count = fdp.ConsumeIntInRange(1, 4)
    names = list(dict.fromkeys(fdp.PickValueInList(NAMES) for _ in range(count)))
    return Signature(inputs=tuple(ColumnSpec(name, fdp.PickValueInList(COLUMN_DTYPES)) for name in names))


def _data(fdp: atheris.FuzzedDataProvider, signature: Signature) -> Any:
    names = signature.column_names or ["a", "b"]
    if fdp.ConsumeBool():  # usually the right columns, sometimes other ones
        names = [fdp.PickValueInList(NAMES) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    rows = fdp.ConsumeIntInRange(0, 4)
    layout = fdp.ConsumeIntInRange(0, 7)
    if layout == 0:  # records
        return [{name: _value(fdp) for name in names} for _ in range(rows)]
    if layout == 1:  # a dict of columns (sometimes of different lengths, or scalars)
        return {name: [_value(fdp) for _ in range(rows)] if fdp.ConsumeBool() else _value(fdp) for name in names}
    if layout == 2:  # rows of values (sometimes ragged)
        return [[_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))] for _ in range(rows)]
    if layout == 3:  # a DataFrame built from records
        try:
            return pd.DataFrame.from_records([{name: _value(fdp) for name in names} for _ in range(rows)])
        except Exception:
            return None
    if layout == 4:  # a numeric array
        width = fdp.ConsumeIntInRange(0, 4)
        dtype = fdp.PickValueInList(["float64", "float32", "int64", "int8", "uint64", "bool", "object"])
        try:
            array = np.array([[_scalar(fdp) if dtype == "object" else 0 for _ in range(width)] for _ in range(rows)])
        except Exception:
            return None
        return array.astype(dtype) if dtype != "object" else array
    if layout == 5:  # one row as a flat list
        return [_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if layout == 6:  # not a table at all
        return _value(fdp)
    return [_value(fdp) for _ in range(rows)]  # a list of anything


def test_one_input(data: bytes) -> None:
    """Validate one built data set against one built signature; only 4xx shipyard errors may come out."""
    fdp = atheris.FuzzedDataProvider(data)
    signature = _signature(fdp)
    rows = _data(fdp, signature)
    if rows is None:
        return
    allow_extra, as_array = fdp.ConsumeBool(), fdp.ConsumeBool()
    guarded(signature.validate, rows, allow_extra=allow_extra, as_array=as_array, first_row=fdp.ConsumeIntInRange(0, 9))


if __name__ == "__main__":
    main(test_one_input)
