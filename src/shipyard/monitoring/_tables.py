"""Arrow tables of the prediction log, built from what the server recorded (in the writer thread).

One recorded request is an :data:`Entry` tuple: the references the route already had, nothing copied.
:func:`prediction_table` turns many of them (of one model version) into one table with column-wise
NumPy/Arrow operations; the only Python loops run once per request or once per row, never per value
(except for hashing sensitive columns, which must look at every value).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("shipyard.monitoring")

# model, version, route, request_id, ts (epoch s), data, input names, input dtypes, predictions,
# probabilities, latency (s), rows, the float inputs (rows, inputs) when the data is not kept (or None)
Entry = tuple[str, int, str, str, float, Any, Sequence[str], Sequence[str] | None, Any, Any, float, int, Any]


def input_columns(signature: Mapping[str, Any] | None) -> tuple[list[str], list[str] | None]:
    """The logged input columns of a version's stored signature: names and dtypes.

    Columnar signatures give their columns; a 2-d tensor gives ``f0``..``fN`` of its dtype; anything
    else (no signature, images) logs no input.

    >>> input_columns({"inputs": [{"name": "amount", "dtype": "float64"}]})
    (['amount'], ['float64'])
    >>> input_columns({"tensor": {"dtype": "float32", "shape": [None, 2]}})
    (['f0', 'f1'], ['float32', 'float32'])
    """
    if not signature:
        return [], None
    if signature.get("inputs"):
        columns = signature["inputs"]
        return [str(c["name"]) for c in columns], [str(c["dtype"]) for c in columns]
    tensor = signature.get("tensor")
    if tensor and len(tensor.get("shape", ())) == 2 and isinstance(tensor["shape"][1], int):
        width = tensor["shape"][1]
        return [f"f{i}" for i in range(width)], [str(tensor["dtype"])] * width
    return [], None


def arrow_type(dtype: str) -> pa.DataType | None:
    """The logged Arrow type of a signature dtype, ``None`` when it must be inferred from the values.

    >>> str(arrow_type("float32")), str(arrow_type("int8")), str(arrow_type("string")), arrow_type("period")
    ('double', 'int64', 'string', None)
    """
    import pyarrow as pa

    if dtype.startswith("float"):
        return pa.float64()
    if dtype.startswith(("int", "uint")):
        return pa.int64()
    if dtype in ("bool", "boolean"):
        return pa.bool_()
    if dtype in ("string", "str", "object", "category"):
        return pa.string()
    return None


def sha256_text(value: Any) -> str:
    """The SHA-256 hex digest of ``str(value)``: how a sensitive value is logged.

    >>> sha256_text("x")[:16]
    '2d711642b726b044'
    """
    return hashlib.sha256(str(value).encode()).hexdigest()


def hash_values(column: pa.Array) -> pa.Array:
    """``column`` with every value replaced by :func:`sha256_text` of it (nulls stay null).

    >>> import pyarrow as pa
    >>> [v[:8] if v else v for v in hash_values(pa.array(["x", None])).to_pylist()]
    ['2d711642', None]
    """
    import pyarrow as pa

    return pa.array([None if v is None else sha256_text(v) for v in column.to_pylist()], type=pa.string())


def _rows(data: Any, names: Sequence[str]) -> list[Any]:
    """The rows of caller data as mappings (records stay as they are; rows of values get the names)."""
    if type(data) is list and data and type(data[0]) is dict:  # records, the common case: nothing to do
        return data
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame
        return list(data.to_dict("records"))
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            return [dict(zip(names, data.tolist(), strict=False))]
        return [dict(zip(names, row, strict=False)) for row in data.tolist()]
    if isinstance(data, Mapping):
        columns = {str(k): (v if isinstance(v, (list, tuple, np.ndarray)) else [v]) for k, v in data.items()}
        return [dict(zip(columns, values, strict=False)) for values in zip(*columns.values(), strict=False)]
    rows = list(data)
    if rows and not isinstance(rows[0], Mapping):
        if not isinstance(rows[0], (list, tuple, np.ndarray)):  # one row of values
            return [dict(zip(names, rows, strict=False))]
        return [dict(zip(names, row, strict=False)) for row in rows]
    return rows


def input_array(
    rows: list[Any], names: Sequence[str], dtypes: Sequence[str] | None, sensitive: Mapping[str, str]
) -> pa.StructArray | None:
    """One struct per row with the input columns, sensitive ones hashed or dropped; ``None``: nothing to log."""
    import pyarrow as pa

    kept = [n for n in names if sensitive.get(n) != "drop"]
    if not kept:
        return None
    declared = dict(zip(names, dtypes, strict=False)) if dtypes else {}
    types = [arrow_type(declared[n]) if n in declared else None for n in kept]
    array: pa.StructArray | None = None
    if all(t is not None for t in types):
        try:
            array = pa.array(rows, type=pa.struct([pa.field(n, t) for n, t in zip(kept, types, strict=True)]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            array = None
    if array is None:  # unknown dtypes or values that do not convert: the types the values have
        try:
            inferred = pa.array(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            log.warning("the inputs of these predictions cannot be logged (%s); logging them without input", exc)
            return None
        present = {inferred.type.field(i).name for i in range(inferred.type.num_fields)}
        fields = [n for n in kept if n in present]
        if not fields:
            return None
        array = pa.StructArray.from_arrays([inferred.field(n) for n in fields], names=fields)
    hashed = [n for n in kept if sensitive.get(n) == "hash"]
    if not hashed:
        return array
    children = []
    for i in range(array.type.num_fields):
        child = array.field(i)
        if array.type.field(i).name in hashed:
            child = hash_values(child)
        children.append(child)
    return pa.StructArray.from_arrays(children, names=[array.type.field(i).name for i in range(array.type.num_fields)])


def float_rows(features: Any, names: Sequence[str], dtypes: Sequence[str] | None) -> np.ndarray[Any, Any] | None:
    """The float array (rows, inputs) of a validated frame whose columns are ``names``, all floats; else ``None``.

    >>> import pandas as pd
    >>> float_rows(pd.DataFrame({"a": [1.0], "b": [2.0]}), ["a", "b"], ["float64", "float64"]).tolist()
    [[1.0, 2.0]]
    >>> float_rows(pd.DataFrame({"a": [1.0], "b": ["x"]}), ["a", "b"], ["float64", "string"]) is None
    True
    """
    if not names or not dtypes or not all(dtype.startswith("float") for dtype in dtypes):
        return None
    if isinstance(features, np.ndarray):  # validated as an array already (see ``Model.features``)
        fits = features.ndim == 2 and features.shape[1] == len(names) and features.dtype.kind == "f"
        return features if fits else None
    columns = getattr(features, "columns", None)
    if columns is None or columns.tolist() != list(names):
        return None
    block = features.to_numpy()
    return block if block.dtype.kind == "f" else None


GIL_FREE_VALUES = 500  # NumPy releases the GIL to copy more values than this


def stack_rows(pieces: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """``np.concatenate(pieces)`` for C-contiguous arrays of one dtype and row shape, releasing the GIL at most
    once. NumPy releases it for every piece of more than 500 values, and under load each of those hand-overs
    made the writer wait up to the switch interval to get it back: a flush of 1,000 requests of 100 rows took
    most of a second instead of milliseconds, interrupting the event loop all along. Other pieces go to NumPy.

    >>> stack_rows([np.array([[1, 2]]), np.array([[3, 4], [5, 6]])]).tolist()
    [[1, 2], [3, 4], [5, 6]]
    """
    first = pieces[0]
    if len(pieces) == 1:
        return first
    if not any(p.size > GIL_FREE_VALUES for p in pieces):
        return np.concatenate(pieces)  # NumPy keeps the GIL for pieces this small, and is faster
    joinable = first.dtype.kind in "biuf" and all(
        p.dtype == first.dtype and p.shape[1:] == first.shape[1:] and p.flags.c_contiguous for p in pieces
    )
    if not joinable:
        return np.concatenate(pieces)
    joined = np.frombuffer(b"".join([p.data for p in pieces]), dtype=first.dtype)  # one copy, the GIL released once
    return joined.reshape(-1, *first.shape[1:])


def float_block(entries: Sequence[Entry]) -> np.ndarray[Any, Any] | None:
    """The logged float inputs of all ``entries`` (see :func:`float_rows`) stacked column by column: an array
    of shape (inputs, rows); ``None`` when an entry kept its rows as sent instead.

    The requests' blocks are joined as they lie in memory (each one column-major: its transpose is
    contiguous), then one gather puts every input's values side by side: a fixed number of NumPy calls
    whatever the number of requests (see :func:`stack_rows`).

    >>> block = np.array([[1.0, 3.0], [2.0, 4.0]])
    >>> entry = ("m", 1, "native", "r", 0.0, None, ["a", "b"], ["float64", "float64"], [0, 1], None, 0.0, 2, block)
    >>> float_block([entry, entry[:11] + (1, block[:1])]).tolist()
    [[1.0, 2.0, 1.0], [3.0, 4.0, 3.0]]
    """
    pieces = []
    for entry in entries:
        block = entry[12]
        if block is None or len(block) != entry[11]:
            return None
        pieces.append(block.T)  # a validated block is column-major: its transpose is contiguous
    if len(pieces) == 1:
        return np.ascontiguousarray(pieces[0], dtype=np.float64)
    joinable = any(p.size > GIL_FREE_VALUES for p in pieces) and all(
        p.dtype == np.float64 and p.flags.c_contiguous for p in pieces
    )
    if not joinable:
        return np.concatenate(pieces, axis=1).astype(np.float64, copy=False)
    width = pieces[0].shape[0]
    counts = np.fromiter((p.shape[1] for p in pieces), dtype=np.int64, count=len(pieces))
    flat = stack_rows([p.reshape(-1) for p in pieces])
    # value j of row k of request i lies at start_i + j * rows_i + k in ``flat``
    owner = np.repeat(np.arange(len(pieces)), counts)
    row_start = np.cumsum(counts) - counts
    offset = (row_start * width)[owner] + (np.arange(int(counts.sum())) - row_start[owner])
    stacked: np.ndarray[Any, Any] = flat[offset[None, :] + np.arange(width)[:, None] * counts[owner][None, :]]
    return stacked


def block_array(
    block: np.ndarray[Any, Any], names: Sequence[str], sensitive: Mapping[str, str]
) -> pa.StructArray | None:
    """One struct per row of a :func:`float_block` (one row of ``block`` per input ``names``), sensitive
    columns hashed or dropped; NaN (a missing value) is logged as null, as from records. ``None``: nothing
    to log."""
    import pyarrow as pa

    children, fields = [], []
    for index, name in enumerate(names):
        how = sensitive.get(name)
        if how == "drop":
            continue
        column = pa.array(block[index], type=pa.float64(), from_pandas=True)
        if how == "hash":
            column = hash_values(column)
        children.append(column)
        fields.append(name)
    if not children:
        return None
    return pa.StructArray.from_arrays(children, names=fields)


def request_id_array(ids: Sequence[str] | pa.Array, counts: np.ndarray[Any, Any]) -> pa.Array:
    """The row ids of requests ``ids`` of ``counts`` rows each, built by Arrow kernels: a request's id for its
    one row, ``<id>/<i>`` for row ``i`` of several (the ids feedback labels refer to).

    >>> request_id_array(["a", "b"], np.array([1, 3])).to_pylist()
    ['a', 'b/0', 'b/1', 'b/2']
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    given = ids if isinstance(ids, pa.Array) else pa.array(ids, type=pa.string())
    if bool((counts == 1).all()):
        return given
    owner = np.repeat(np.arange(len(ids)), counts)
    repeated = given.take(pa.array(owner))
    position = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    numbered = pc.binary_join_element_wise(repeated, pc.cast(pa.array(position), pa.string()), "/")
    return pc.if_else(pa.array(np.repeat(counts == 1, counts)), repeated, numbered)


def repeated_strings(values: Sequence[str], counts: np.ndarray[Any, Any]) -> pa.Array:
    """``values[i]`` repeated ``counts[i]`` times, as one string array (built from the distinct values).

    >>> repeated_strings(["x", "y", "x"], np.array([2, 1, 1])).to_pylist()
    ['x', 'x', 'y', 'x']
    """
    import pyarrow as pa

    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return pa.repeat(pa.scalar(distinct[0], pa.string()), int(counts.sum()))
    codes = {value: code for code, value in enumerate(distinct)}
    indices = np.repeat(np.fromiter((codes[v] for v in values), dtype=np.int32, count=len(values)), counts)
    return pa.array(distinct, type=pa.string()).take(pa.array(indices))


def plain_kind(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    kind = values.dtype.kind
    if kind == "f":
        return values.astype(np.float64, copy=False)
    if kind in "iu":
        return values.astype(np.int64, copy=False)
    return values


def list_array(matrix: np.ndarray[Any, Any]) -> pa.ListArray:
    """A ``list<...>`` array with one list per row of a 2-d array.

    >>> list_array(np.array([[0.25, 0.75], [1.0, 0.0]])).to_pylist()
    [[0.25, 0.75], [1.0, 0.0]]
    """
    import pyarrow as pa

    rows, width = matrix.shape[0], (matrix.shape[1] if matrix.ndim > 1 else 1)
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(plain_kind(matrix.reshape(-1))))


def _prediction_array(entries: Sequence[Entry]) -> pa.Array:
    import pyarrow as pa

    values = [np.asarray(e[8]) for e in entries]
    if all(v.ndim == 1 for v in values):
        merged = stack_rows(values)
        if merged.dtype.kind == "O":
            return pa.array(merged.tolist())
        return pa.array(plain_kind(merged))
    if all(v.ndim == 2 for v in values):  # several outputs per row
        return list_array(stack_rows(values))
    return pa.array([str(row) for v in values for row in v.tolist()], type=pa.string())


def _probability_array(entries: Sequence[Entry], total: int) -> pa.Array:
    import pyarrow as pa

    kind = pa.list_(pa.float64())
    given = [e[9] for e in entries]
    if all(p is None for p in given):
        return pa.nulls(total, type=kind)
    if all(p is not None for p in given):
        matrices = [np.asarray(p, dtype=np.float64) for p in given]
        if len({m.shape[1:] for m in matrices}) == 1 and matrices[0].ndim == 2:
            return list_array(stack_rows(matrices)).cast(kind)
    lists: list[Any] = []
    for entry, p in zip(entries, given, strict=True):
        lists.extend([None] * entry[11] if p is None else np.asarray(p, dtype=np.float64).tolist())
    return pa.array(lists, type=kind)


def prediction_table(entries: Sequence[Entry], sensitive: Mapping[str, str] | None = None) -> pa.Table:
    """The log rows of the recorded requests ``entries`` (all of one model version), one row per input row."""
    import pyarrow as pa

    counts = np.fromiter((e[11] for e in entries), dtype=np.int64, count=len(entries))
    total = int(counts.sum())
    names, dtypes = entries[0][6], entries[0][7]
    block = float_block(entries) if names else None
    rows: list[Any] = []
    if names and block is None:
        for entry in entries:
            got = _rows(entry[5] if entry[12] is None else entry[12], names)  # some kept their rows as sent
            rows.extend(got if len(got) == entry[11] else [None] * entry[11])
    stamps = np.repeat(np.fromiter((e[4] for e in entries), dtype=np.float64, count=len(entries)), counts)
    latency = np.repeat(np.fromiter((e[10] for e in entries), dtype=np.float64, count=len(entries)) * 1000.0, counts)
    columns: dict[str, pa.Array] = {
        "request_id": request_id_array([e[3] for e in entries], counts),
        "ts": pa.array((stamps * 1e6).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
        "model": pa.repeat(pa.scalar(entries[0][0], pa.string()), total),
        "version": pa.repeat(pa.scalar(entries[0][1], pa.int32()), total),
        "route": repeated_strings([e[2] for e in entries], counts),
        "latency_ms": pa.array(latency, type=pa.float64()),
    }
    if block is not None:
        inputs = block_array(block, names, {} if sensitive is None else sensitive)
    else:
        inputs = input_array(rows, names, dtypes, {} if sensitive is None else sensitive) if names else None
    if inputs is not None:
        columns["input"] = inputs
    columns["prediction"] = _prediction_array(entries)
    columns["probabilities"] = _probability_array(entries, total)
    return pa.table(columns)


def label_table(model: str, pairs: Sequence[tuple[str, Any]], now: float) -> pa.Table:
    """The log rows of feedback labels ``(request id, label)`` received at ``now``.

    >>> label_table("fraud", [("r1", 1), ("r2", 0)], 0.0).column("label").to_pylist()
    [1, 0]
    """
    import pyarrow as pa

    labels = [label for _, label in pairs]
    try:
        label = pa.array(labels)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds: keep them all as text
        label = pa.array([None if v is None else str(v) for v in labels], type=pa.string())
    if pa.types.is_null(label.type):
        label = label.cast(pa.string())
    return pa.table(
        {
            "request_id": pa.array([rid for rid, _ in pairs], type=pa.string()),
            "ts": pa.array(np.full(len(pairs), int(now * 1e6), dtype=np.int64), type=pa.timestamp("us", tz="UTC")),
            "model": pa.repeat(pa.scalar(model, pa.string()), len(pairs)),
            "label": label,
        }
    )
