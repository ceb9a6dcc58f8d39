"""Data sources read in bounded-memory chunks: CSV, Parquet, SQL (SQLAlchemy), DuckDB and DataFrames.

:func:`open_source` turns what a user typed (a path, folder, glob, list of files, database URL) or a
DataFrame into a :class:`Source`; :func:`check_schema` compares its columns with a model signature
before any row is scored.

>>> import pandas as pd
>>> from shipyard.data import open_source
>>> src = open_source(pd.DataFrame({"x": range(10)}))
>>> [len(chunk) for chunk in src.iter_batches(3)]
[3, 3, 3, 1]

Every chunk is a DataFrame indexed by row position in the source (the second chunk above starts at
3), built from the same Arrow types, :meth:`Source.schema`. As in pandas, an integer column
holding missing values comes as ``float64`` in the chunks where they occur (a Parquet file read
whole with pandas does the same); cast to ``schema()`` where a fixed dtype matters, e.g. when
writing chunks to one output file.

Submodules are imported on first use, so ``import shipyard.data`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard._lazy import lazy_exports
from shipyard.data.base import DEFAULT_CHUNK_ROWS, Source

if TYPE_CHECKING:
    from shipyard.data.duck import DuckDBSource
    from shipyard.data.files import CsvSource, ParquetSource
    from shipyard.data.frame import FrameSource
    from shipyard.data.schema import check_schema
    from shipyard.data.sql import SqlSource
    from shipyard.data.uri import open_source

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "CsvSource",
    "DuckDBSource",
    "FrameSource",
    "ParquetSource",
    "Source",
    "SqlSource",
    "check_schema",
    "open_source",
]

_LAZY = {
    "CsvSource": "shipyard.data.files",
    "ParquetSource": "shipyard.data.files",
    "FrameSource": "shipyard.data.frame",
    "SqlSource": "shipyard.data.sql",
    "DuckDBSource": "shipyard.data.duck",
    "check_schema": "shipyard.data.schema",
    "open_source": "shipyard.data.uri",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
