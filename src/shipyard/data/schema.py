""":func:`check_schema`: compare a source's columns with a model signature before any row is scored.

Only the schema is looked at (Parquet footers, a CSV's first block, a table's reflection), so a
job that cannot work fails in milliseconds with one message naming every problem column, instead
of after an hour of scoring. Values are still checked chunk by chunk by
:meth:`shipyard.signature.Signature.validate` (an int column may hold a value out of range, a float
column meant as int may hold 1.5).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pyarrow as pa

from shipyard.data._arrow import is_string_like, type_name
from shipyard.data.base import Source
from shipyard.errors import InvalidInput, SchemaError
from shipyard.signature import Signature

_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOATS = {"float16", "float32", "float64"}


def check_schema(
    source: Source,
    signature: Signature,
    *,
    allow_extra: bool = True,
    columns: Sequence[str] | None = None,
    text_columns: Collection[str] = (),
) -> list[str]:
    """Raise :class:`~shipyard.errors.SchemaError` unless ``source`` can feed a model with ``signature``.

    Returns the columns to read, in the order the model takes them. For a columnar signature these
    are its columns; every missing column and every column whose type cannot become the expected one
    (a ``string`` column where ``float64`` is expected) is named in one message. Ints where floats
    are expected, nullable ints, and floats where ints are expected (checked value by value when
    scoring) are fine. Extra columns are dropped unless ``allow_extra`` is false. ``text_columns`` are
    read as text and converted cell by cell by the caller (CSV): their type is not checked here.

    A tensor signature (a model trained on an array) has no column names: the source must have
    exactly as many numeric columns as the model takes, or ``columns`` names the feature columns.

    >>> import pandas as pd
    >>> from shipyard.data import open_source
    >>> from shipyard.signature import Signature
    >>> sig = Signature.infer(pd.DataFrame({"amount": [1.5], "hour": [3]}))
    >>> check_schema(open_source(pd.DataFrame({"hour": [1, 2], "amount": [7, 8], "id": ["a", "b"]})), sig)
    ['amount', 'hour']
    >>> check_schema(open_source(pd.DataFrame({"amount": ["high"], "day": [1]})), sig)
    Traceback (most recent call last):
    ...
    shipyard.errors.SchemaError: input does not match the model signature: missing column 'hour' \
(<DataFrame> has: amount, day); column 'amount' is string in <DataFrame>, the model expects float64
    """
    schema = source.schema()
    if signature.tensor is not None:
        return _check_tensor(source.uri, schema, signature, allow_extra, columns)
    if columns is not None:
        raise InvalidInput(
            f"the model names its input columns ({', '.join(signature.column_names)}); "
            "columns= is only for models that take arrays"
        )
    types = {field.name: field.type for field in schema}
    problems: list[str] = []
    missing = [c.name for c in signature.inputs if c.name not in types]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        problems.append(
            f"missing column{plural} {', '.join(repr(m) for m in missing)} ({source.uri} has: {', '.join(types)})"
        )
    for spec in signature.inputs:
        if spec.name in types and spec.name not in text_columns and not _convertible(types[spec.name], spec.dtype):
            problems.append(
                f"column {spec.name!r} is {type_name(types[spec.name])} in {source.uri}, "
                f"the model expects {spec.dtype}"
            )
    if not allow_extra:
        expected = set(signature.column_names)
        extra = [name for name in types if name not in expected]
        if extra:
            problems.append(
                f"unexpected column{'s' if len(extra) > 1 else ''} {', '.join(repr(e) for e in extra)} "
                "(to drop extra columns pass allow_extra=True; CLI: --allow-extra)"
            )
    if problems:
        raise SchemaError(problems)
    return signature.column_names


def _convertible(actual: pa.DataType, expected: str) -> bool:
    """Whether a column of Arrow type ``actual`` can be converted to the signature dtype ``expected``."""
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_null(actual):
        return expected not in _INTS and expected != "bool"
    number = pa.types.is_integer(actual) or pa.types.is_floating(actual) or pa.types.is_decimal(actual)
    if expected in _FLOATS or expected in _INTS:
        return bool(number)
    if expected == "bool":
        return bool(pa.types.is_boolean(actual))
    if expected in ("string", "category"):
        return is_string_like(actual)
    if expected.startswith("datetime64"):
        return bool(pa.types.is_timestamp(actual) or pa.types.is_date(actual) or is_string_like(actual))
    return True


def _numeric(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_boolean(dtype)
    )


def _check_tensor(
    uri: str, schema: pa.Schema, signature: Signature, allow_extra: bool, columns: Sequence[str] | None
) -> list[str]:
    tensor = signature.tensor
    assert tensor is not None
    shape = ", ".join("N" if d is None else str(d) for d in tensor.shape)
    if len(tensor.shape) != 2:
        raise SchemaError([
            f"the model takes arrays of shape ({shape}); a table can only feed a model that takes rows of numbers"
        ])
    width = tensor.shape[1]
    numeric_model = np.dtype(tensor.dtype).kind in "biuf"
    types = {field.name: field.type for field in schema}
    problems: list[str] = []
    if columns is None:
        chosen = [name for name, t in types.items() if _numeric(t)] if numeric_model else list(types)
        if width is not None and len(chosen) != width:
            raise SchemaError([
                f"the model takes rows of {width} {tensor.dtype} values but {uri} has {len(chosen)} numeric "
                f"columns ({', '.join(chosen) or 'none'}); pass the {width} feature columns in training order "
                "(columns=[...]; CLI: --columns a,b,c)"
            ])
    else:
        chosen = list(columns)
        missing = [c for c in chosen if c not in types]
        if missing:
            problems.append(
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
                f"({uri} has: {', '.join(types)})"
            )
        if width is not None and len(chosen) != width:
            problems.append(f"the model takes rows of {width} values but {len(chosen)} columns were named")
        if numeric_model:
            problems.extend(
                f"column {name!r} is {type_name(types[name])} in {uri}, the model expects {tensor.dtype}"
                for name in chosen
                if name in types and not _numeric(types[name])
            )
    if not allow_extra:
        extra = [name for name in types if name not in set(chosen)]
        if extra:
            problems.append(
                f"unexpected column{'s' if len(extra) > 1 else ''} {', '.join(repr(e) for e in extra)} "
                "(to drop extra columns pass allow_extra=True; CLI: --allow-extra)"
            )
    if problems:
        raise SchemaError(problems)
    return chosen
