"""Arrow helpers shared by the readers: exact re-chunking and conversion to pandas.

Readers produce Arrow record batches of whatever size their format likes (row groups, CSV blocks,
database fetches). :func:`rechunk` cuts that stream into tables of exactly ``chunk_rows`` rows (the
last may be shorter), so chunk boundaries depend only on the data and ``chunk_rows``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa

from shipyard.errors import InvalidInput, SchemaError

_PANDAS_KEY = b"pandas"


class DataSchemaError(SchemaError):
    """A :class:`SchemaError` about the data itself (files that disagree, a value that does not fit).

    Its message does not blame the model signature: ``"<what>: <problems>"``.

    >>> str(DataSchemaError(["b.csv has no column 'x'"], what="the files of data/ differ"))
    "the files of data/ differ: b.csv has no column 'x'"
    """

    def __init__(self, problems: list[str], *, what: str | None = None) -> None:
        self.problems = problems
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        InvalidInput.__init__(self, f"{what}: {shown}{more}" if what else f"{shown}{more}")


def type_name(dtype: pa.DataType) -> str:
    """A short, pandas-like name for an Arrow type, for messages.

    >>> import pyarrow as pa
    >>> type_name(pa.large_string()), type_name(pa.float64()), type_name(pa.dictionary(pa.int8(), pa.string()))
    ('string', 'float64', 'category')
    """
    if is_string_like(dtype):
        return "string"
    if pa.types.is_dictionary(dtype):
        return "category"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_floating(dtype) or pa.types.is_integer(dtype):
        return dtype.to_pandas_dtype().__name__  # type: ignore[no-any-return]
    return str(dtype)


def is_string_like(dtype: pa.DataType) -> bool:
    """``string``, ``large_string`` or ``string_view``.

    >>> import pyarrow as pa
    >>> is_string_like(pa.large_string()), is_string_like(pa.binary())
    (True, False)
    """
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype))


def check_chunk_rows(chunk_rows: int) -> int:
    """Return ``chunk_rows`` if it is a positive integer, else raise :class:`InvalidInput`.

    >>> check_chunk_rows(500)
    500
    >>> check_chunk_rows(0)
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: chunk_rows must be a positive integer, got 0
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return chunk_rows


def select_columns(available: Sequence[str], columns: Sequence[str] | None, uri: str) -> list[str]:
    """The columns to read: all of ``available``, or ``columns`` after checking each exists.

    >>> select_columns(["a", "b"], None, "x.csv"), select_columns(["a", "b"], ["b"], "x.csv")
    (['a', 'b'], ['b'])
    >>> select_columns(["a", "b"], ["c"], "x.csv")
    Traceback (most recent call last):
    ...
    shipyard.data._arrow.DataSchemaError: x.csv has no column 'c' (its columns: a, b)
    """
    if columns is None:
        return list(available)
    if isinstance(columns, str):
        raise InvalidInput(f"columns must be a list of names, got the string {columns!r}; pass [{columns!r}]")
    known = set(available)
    missing = [c for c in columns if c not in known]
    if missing:
        shown = ", ".join(repr(c) for c in missing)
        raise DataSchemaError([f"{uri} has no column {shown} (its columns: {', '.join(available)})"])
    return list(columns)


def rechunk(batches: Iterable[pa.RecordBatch | pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    """Cut a stream of record batches into tables of exactly ``chunk_rows`` rows; the last may be shorter.

    Memory held is at most one chunk plus the batch being read.

    >>> import pyarrow as pa
    >>> parts = [pa.record_batch({"x": list(range(4))}), pa.record_batch({"x": list(range(4, 10))})]
    >>> [t.num_rows for t in rechunk(parts, 3)]
    [3, 3, 3, 1]
    """
    pending: list[pa.RecordBatch | pa.Table] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < chunk_rows:
            continue
        table = _concat(pending)
        start = 0
        while held - start >= chunk_rows:
            yield table.slice(start, chunk_rows)
            start += chunk_rows
        rest = table.slice(start)
        pending = [rest] if rest.num_rows else []
        held = rest.num_rows
    if held:
        yield _concat(pending)


def _concat(parts: list[pa.RecordBatch | pa.Table]) -> pa.Table:
    tables = [p if isinstance(p, pa.Table) else pa.Table.from_batches([p]) for p in parts]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def decimals_as_floats(table: pa.Table) -> pa.Table:
    """``table`` with its decimal columns cast to ``float64``.

    >>> import decimal, pyarrow as pa
    >>> decimals_as_floats(pa.table({"p": [decimal.Decimal("1.25")]})).column("p").to_pylist()
    [1.25]
    """
    if not any(pa.types.is_decimal(t) for t in table.schema.types):
        return table
    return table.cast(decimal_fields_as_floats(table.schema))


def decimal_fields_as_floats(schema: pa.Schema) -> pa.Schema:
    """``schema`` with decimal fields as ``float64``: the types chunks have after :func:`to_frames`.

    >>> import pyarrow as pa
    >>> decimal_fields_as_floats(pa.schema([("p", pa.decimal128(10, 2))])).types
    [DataType(double)]
    """
    fields = [pa.field(f.name, pa.float64(), f.nullable, f.metadata) if pa.types.is_decimal(f.type) else f
              for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def plain_pandas_metadata(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its pandas metadata kept for dtypes but without index columns.

    Files written by pandas record their index; chunks are always indexed by row position instead,
    and an index stored as a column stays a column.

    >>> import pandas as pd, pyarrow as pa
    >>> table = pa.Table.from_pandas(pd.DataFrame({"x": [1.0]}, index=pd.Index([7], name="id")))
    >>> plain_pandas_metadata(table.schema).pandas_metadata["index_columns"]
    []
    """
    metadata = dict(schema.metadata or {})
    raw = metadata.get(_PANDAS_KEY)
    if raw is None:
        return schema
    try:
        info = json.loads(raw)
    except ValueError:
        metadata.pop(_PANDAS_KEY)
        return schema.with_metadata(metadata)
    info["index_columns"] = []
    info["column_indexes"] = []
    metadata[_PANDAS_KEY] = json.dumps(info).encode()
    return schema.with_metadata(metadata)


def to_frames(tables: Iterable[pa.Table], metadata: dict[bytes, bytes] | None = None) -> Iterator[pd.DataFrame]:
    """Convert tables to DataFrames indexed by row position across the whole stream.

    ``metadata`` (an Arrow schema's metadata, e.g. from :func:`plain_pandas_metadata`) restores
    pandas dtypes recorded by the writer. Decimal columns become ``float64`` (models take floats, not
    :class:`decimal.Decimal` objects), as :func:`pandas.read_sql` does.

    >>> import pyarrow as pa
    >>> [f.index.tolist() for f in to_frames([pa.table({"x": [1, 2]}), pa.table({"x": [3]})])]
    [[0, 1], [2]]
    """
    start = 0
    for table in tables:
        frame = table_to_frame(as_chunk_table(table, metadata), start)
        start += len(frame)
        yield frame


def as_chunk_table(table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> pa.Table:
    """``table`` as :func:`to_frames` converts it: with ``metadata`` (if given) and decimals as ``float64``.

    >>> import decimal, pyarrow as pa
    >>> as_chunk_table(pa.table({"p": [decimal.Decimal("1.5")]})).schema.types
    [DataType(double)]
    """
    if metadata is not None:
        table = table.replace_schema_metadata(metadata)
    return decimals_as_floats(table)


def table_to_frame(table: pa.Table, start: int = 0) -> pd.DataFrame:
    """One chunk as :func:`to_frames` gives it, from a table :func:`as_chunk_table` prepared.

    >>> import pyarrow as pa
    >>> table_to_frame(pa.table({"x": [1, 2]}), start=5).index.tolist()
    [5, 6]
    """
    frame: pd.DataFrame = table.to_pandas()
    frame.index = pd.RangeIndex(start, start + len(frame))
    return frame


def iter_tables(tables: Iterable[pa.Table], metadata: dict[bytes, bytes] | None = None) -> Iterator[pa.Table]:
    """The Arrow side of :func:`to_frames`: each table as :func:`as_chunk_table` prepares it.

    ``table_to_frame(chunk)`` of each is the DataFrame :func:`to_frames` yields for it (but for the index,
    which counts from 0 in each chunk).
    """
    for table in tables:
        yield as_chunk_table(table, metadata)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver errors run on with context and SQL).

    >>> first_line(ValueError("no such table: tx\\n[SQL: SELECT * FROM tx]"))
    'no such table: tx'
    """
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
