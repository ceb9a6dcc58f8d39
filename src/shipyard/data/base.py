"""The data layer's two contracts: a :class:`Source` read in bounded-memory chunks, and the URI table.

Every reader in :mod:`shipyard.data` (CSV, Parquet file or folder, SQL table or query, DuckDB, an
in-memory DataFrame) is a :class:`Source`. Callers never load a whole table unless they ask for it
with :meth:`Source.read`; batch scoring and incremental training iterate :meth:`Source.iter_batches`.

Chunk boundaries are deterministic: the same source read with the same ``chunk_rows`` yields the
same rows in the same chunks, so a resumed job can skip the chunks it already finished, and the
local and Dask engines produce identical output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DEFAULT_CHUNK_ROWS = 100_000


class Source(ABC):
    """A table that can be read in chunks of at most ``chunk_rows`` rows.

    ``uri`` is what the user typed (``tx.parquet``, ``data/``, ``sqlite:///x.db?table=tx``), kept for
    messages. Subclasses implement :meth:`schema`, :meth:`iter_batches` and :meth:`fingerprint`.
    """

    uri: str

    @abstractmethod
    def schema(self) -> pa.Schema:
        """Column names and Arrow types, found without reading the rows (or by reading very few)."""

    @abstractmethod
    def iter_batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Yield the rows as DataFrames of exactly ``chunk_rows`` rows (the last may be shorter).

        Only ``columns`` are read when given (a missing one is an :class:`~shipyard.errors.SchemaError`
        naming it). The order of rows and the chunk boundaries are the same on every call. Memory use
        is bounded by a few chunks whatever the size of the source.
        """

    def iter_tables(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pa.Table] | None:
        """The chunks of :meth:`iter_batches` as Arrow tables, for sources that read Arrow; else ``None``.

        Same rows, boundaries and types: :func:`shipyard.data._arrow.table_to_frame` of each table is the
        DataFrame :meth:`iter_batches` yields (but for its index, which starts at 0 in every chunk). Batch
        scoring uses it to skip pandas where a chunk needs no per-row checks.
        """
        return None

    @abstractmethod
    def fingerprint(self) -> str:
        """A SHA-256 hex digest that changes when the data changes (files: names, sizes, mtimes; SQL: query
        and table statistics). Recorded with trained versions so a run can be traced to its data."""

    def count_rows(self) -> int | None:
        """The number of rows if it is cheap to know (Parquet metadata, ``SELECT count(*)``), else ``None``."""
        return None

    @property
    def column_names(self) -> list[str]:
        """The names of the columns, in order."""
        return list(self.schema().names)

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row at once, for data sets known to fit in memory (a training sample, a holdout)."""
        import pandas as pd

        frames = list(self.iter_batches(DEFAULT_CHUNK_ROWS, columns))
        if not frames:
            empty: pd.DataFrame = self.schema().empty_table().to_pandas()
            return empty
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
