"""A pandas DataFrame already in memory, read through the same :class:`Source` interface."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator, Sequence

import pandas as pd
import pyarrow as pa

from shipyard.data._arrow import check_chunk_rows, select_columns
from shipyard.data.base import Source
from shipyard.errors import SchemaError


class FrameSource(Source):
    """Wraps a DataFrame; chunks are slices of it, indexed by row position like every other source.

    >>> import pandas as pd
    >>> src = FrameSource(pd.DataFrame({"amount": [1.0, 2.0, 3.0], "merchant": ["a", "b", "c"]}))
    >>> [chunk.index.tolist() for chunk in src.iter_batches(2, columns=["amount"])]
    [[0, 1], [2]]
    >>> src.count_rows(), len(src.fingerprint())
    (3, 64)
    """

    def __init__(self, frame: pd.DataFrame, *, uri: str = "<DataFrame>") -> None:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"FrameSource wraps a pandas DataFrame, got {type(frame).__name__}")
        duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        if duplicated:
            raise SchemaError([f"the DataFrame has several columns named {name!r}" for name in duplicated])
        self.frame = frame.rename(columns=str) if not all(isinstance(c, str) for c in frame.columns) else frame
        self.uri = uri
        self._schema: pa.Schema | None = None

    def schema(self) -> pa.Schema:
        """Arrow types of the columns, as :func:`pyarrow.Schema.from_pandas` maps them."""
        if self._schema is None:
            self._schema = _frame_schema(self.frame)
        return self._schema

    @property
    def column_names(self) -> list[str]:
        """The DataFrame's column names."""
        return [str(c) for c in self.frame.columns]

    def count_rows(self) -> int:
        """``len(frame)``."""
        return len(self.frame)

    def iter_batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Slices of ``chunk_rows`` rows (the last may be shorter) of ``columns``."""
        check_chunk_rows(chunk_rows)
        wanted = select_columns(self.column_names, columns, self.uri)
        frame = self.frame if columns is None else self.frame[wanted]
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start : start + chunk_rows]
            yield chunk.set_axis(pd.RangeIndex(start, start + len(chunk)), axis=0)

    def fingerprint(self) -> str:
        """SHA-256 of the column names, dtypes and :func:`pandas.util.hash_pandas_object` of the rows."""
        digest = hashlib.sha256()
        digest.update(repr([(str(c), str(t)) for c, t in self.frame.dtypes.items()]).encode())
        try:
            digest.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists, dicts): fall back to the pickled frame
            digest.update(pickle.dumps(self.frame, protocol=pickle.HIGHEST_PROTOCOL))
        return digest.hexdigest()


def _frame_schema(frame: pd.DataFrame) -> pa.Schema:
    try:
        return pa.Schema.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fields, problems = [], []
    for name in frame.columns:
        try:
            fields.append(pa.field(str(name), pa.Array.from_pandas(frame[name]).type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            problems.append(f"column {name!r} mixes values of different types ({str(exc).splitlines()[0]})")
    raise SchemaError(problems or ["the DataFrame cannot be described as a table"])
