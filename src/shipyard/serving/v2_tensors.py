"""Open Inference Protocol (KServe V2) tensor data: datatypes, and values to and from JSON and binary form.

Pure data conversion, no HTTP. Input data is read with :func:`json_tensor_values` (flat or nested lists,
row-major) or :func:`binary_tensor_values` (the binary tensor data extension ``tritonclient`` uses by
default); model output is written with :func:`encode_output`, as JSON ``data`` or as bytes.

>>> values = json_tensor_values("x", "FP32", [2, 2], [[1, 2], [3, 4.5]])
>>> output, chunk = encode_output("x", values.reshape(2, 2), binary=True)
>>> output["datatype"], output["shape"], binary_tensor_values("x", "FP32", [2, 2], chunk)
('FP32', [2, 2], array([1. , 2. , 3. , 4.5], dtype=float32))
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput

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
"""Every V2 datatype this server takes and gives, with the numpy dtype its values have here."""

MAX_DIMENSIONS = 32
MAX_ELEMENTS = 2**48
"""Tensor shapes this server takes: far beyond any body it reads, within what numpy can index."""

_V2_OF = {dtype.name: name for name, dtype in DTYPES.items() if name != "BYTES"}
_JSON_TYPES: dict[str, tuple[type, ...]] = {"BOOL": (bool,), "BYTES": (str,)}
_JSON_TYPES.update({n: (int,) for n in DTYPES if n.startswith(("INT", "UINT"))})
_JSON_TYPES.update({n: (int, float) for n in DTYPES if n.startswith("FP")})
_JSON_KIND = {"BOOL": "true or false", "BYTES": "strings"}


# ---------------------------------------------------------------------- datatypes
def v2_datatype(dtype: Any) -> str:
    """The V2 datatype of a numpy dtype or a signature dtype name; anything not numeric is BYTES.

    >>> v2_datatype("float32"), v2_datatype("int64"), v2_datatype("bool"), v2_datatype("string")
    ('FP32', 'INT64', 'BOOL', 'BYTES')
    """
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    return _V2_OF.get(name, "BYTES")


def describe_json(value: Any) -> str:
    """A JSON value as an error message names it.

    >>> describe_json(None), describe_json(True), describe_json("abc"), describe_json(2.5), describe_json([1])
    ('null', 'true', "string 'abc'", 'number 2.5', 'an array')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"string {value if len(value) <= 30 else value[:27] + '...'!r}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    return "an array" if isinstance(value, list) else "an object"


def checked_datatype(name: str, datatype: Any) -> str:
    """``datatype`` if it is one of :data:`DTYPES`, else :class:`InvalidInput` naming input ``name``.

    >>> checked_datatype("x", "FP32")
    'FP32'
    >>> checked_datatype("x", "FLOAT")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: input 'x': unknown or unsupported datatype 'FLOAT'; use one of BOOL, INT8, ...
    """
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise InvalidInput(
            f"input {name!r}: unknown or unsupported datatype {datatype!r}; use one of {', '.join(DTYPES)}"
        )
    return str(datatype)


def checked_shape(name: str, shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple if it is a list of non-negative integers, else :class:`InvalidInput`.

    >>> checked_shape("x", [2, 3])
    (2, 3)
    >>> checked_shape("x", [2, -1])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: input 'x': shape must be an array of non-negative integers, got [2, -1]
    >>> checked_shape("x", [0, 2**62, 2**62])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: input 'x': shape [0, 4611686018427387904, 4611686018427387904] is too large; ...
    """
    if not isinstance(shape, (list, tuple)) or any(type(d) is not int or d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be an array of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMENSIONS or math.prod(d for d in shape if d) > MAX_ELEMENTS:
        # an empty tensor may name any other dimension; numpy cannot hold such a shape even without values
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)!r} is too large; a tensor has at most {MAX_DIMENSIONS} "
            f"dimensions and {MAX_ELEMENTS} values"
        )
    return tuple(shape)


# ---------------------------------------------------------------------- tensor data
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


def json_tensor_values(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray[Any, Any]:
    """Tensor data sent as JSON, flat or nested (row-major), checked against the datatype and the shape.

    The values come back flat in the datatype's numpy dtype (BYTES: an object array of ``str``).

    >>> json_tensor_values("x", "INT8", [2, 2], [[1, 2], [3, 4]])
    array([1, 2, 3, 4], dtype=int8)
    >>> json_tensor_values("x", "FP64", [2, 2], [1.5, 2.0, 3.0])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: input 'x': its shape holds 4 values but data has 3
    """
    datatype = checked_datatype(name, datatype)
    count = math.prod(checked_shape(name, shape))
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: data must be an array of values, got {describe_json(data)}")
    flat = _flatten(data)
    if len(flat) != count:
        raise InvalidInput(f"input {name!r}: its shape holds {count} values but data has {len(flat)}")
    allowed = _JSON_TYPES[datatype]
    if not set(map(type, flat)) <= set(allowed):
        for index, value in enumerate(flat):
            if type(value) not in allowed:
                kind = _JSON_KIND.get(datatype, "integers" if allowed == (int,) else "numbers")
                raise InvalidInput(
                    f"input {name!r} ({datatype}): element {index} is {describe_json(value)}; "
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


def binary_tensor_values(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray[Any, Any]:
    """Tensor data sent in the binary tensor extension: little-endian; BYTES elements are 4-byte length prefixed.

    >>> binary_tensor_values("x", "UINT16", [2], b"\\x01\\x00\\x00\\x01")
    array([  1, 256], dtype=uint16)
    >>> binary_tensor_values("s", "BYTES", [1], b"\\x02\\x00\\x00\\x00ok")
    array(['ok'], dtype=object)
    """
    datatype = checked_datatype(name, datatype)
    count = math.prod(checked_shape(name, shape))
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


# ---------------------------------------------------------------------- output
def _text(value: Any) -> str:
    """A BYTES element as text: bytes are decoded as UTF-8, anything else is ``str``-ed."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def typed_output(values: Any) -> tuple[str, np.ndarray[Any, Any]]:
    """The V2 datatype of model output and the array in that type (strings and other objects become BYTES).

    >>> typed_output([1, 0, 1])
    ('INT64', array([1, 0, 1]))
    >>> typed_output(np.array(["yes", b"no"], dtype=object))
    ('BYTES', array(['yes', 'no'], dtype=object))
    """
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
    """An output's values in the binary tensor extension (the inverse of :func:`binary_tensor_values`)."""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel():
            encoded = _text(value).encode("utf-8")
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_output(name: str, values: Any, *, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    """One output tensor: its JSON object, with ``data`` or, when ``binary``, ``binary_data_size`` and the bytes.

    >>> encode_output("predict", np.array([[0.5, 1.0]], dtype=np.float32), binary=False)
    ({'name': 'predict', 'shape': [1, 2], 'datatype': 'FP32', 'data': [0.5, 1.0]}, None)
    >>> encode_output("predict", ["ab"], binary=True)
    ({'name': 'predict', 'shape': [1], 'datatype': 'BYTES', 'parameters': {'binary_data_size': 6}},
     b'\\x02\\x00\\x00\\x00ab')
    """
    datatype, array = typed_output(values)
    tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
    if binary:
        chunk = _binary(datatype, array)
        tensor["parameters"] = {"binary_data_size": len(chunk)}
        return tensor, chunk
    tensor["data"] = array.ravel().tolist()
    return tensor, None
