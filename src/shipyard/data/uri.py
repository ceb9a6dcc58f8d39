""":func:`open_source`: one entry point from what a user typed (or passed from Python) to a :class:`Source`.

=================================================  ==================
``df`` (a pandas DataFrame)                        :class:`FrameSource`
``tx.csv``, ``tx.csv.gz``, ``exports/*.csv``       :class:`CsvSource`
``tx.parquet``, ``tx.pq``, ``data/``, ``data/*.parquet``  :class:`ParquetSource`
``["a.parquet", "b.parquet"]``                     the file source over exactly those files
``sqlite:///tx.db?table=tx``, ``postgresql+psycopg://host/db`` with ``query=``  :class:`SqlSource`
``duckdb:///tx.duckdb?table=tx``, ``tx.duckdb``     :class:`DuckDBSource`
=================================================  ==================
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.data.base import Source

FORMATS = ("csv", "parquet", "duckdb", "sql")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def open_source(
    source: str | os.PathLike[str] | pd.DataFrame | Sequence[str | os.PathLike[str]],
    *,
    query: str | None = None,
    table: str | None = None,
    format: str | None = None,
) -> Source:
    """Open ``source`` (a path, folder, glob, list of files, database URL or DataFrame) for chunked reading.

    ``table``/``query`` pick what to read from a database (or put ``?table=NAME`` in its URL);
    ``format`` (``csv``, ``parquet``, ``duckdb``, ``sql``) overrides the guess from the file name.
    Errors are :mod:`shipyard.errors` exceptions whose message says what to fix.

    >>> import tempfile, pathlib, pandas as pd
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"amount": [1.0, 2.0, 3.0]}).to_csv(folder / "tx.csv", index=False)
    >>> src = open_source(folder / "tx.csv")
    >>> type(src).__name__, [len(c) for c in src.iter_batches(2)]
    ('CsvSource', [2, 1])
    >>> _ = (folder / "tx.xlsx").write_bytes(b"PK")
    >>> open_source(folder / "tx.xlsx")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: cannot tell the format of .../tx.xlsx: supported file endings are .csv, ...
    """
    if table is not None and query is not None:
        raise InvalidInput("pass either a table or a query, not both (CLI: --table or --query)")
    if format is not None and format not in FORMATS:
        raise InvalidInput(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    import pandas

    if isinstance(source, pandas.DataFrame):
        _no_database_options("a DataFrame", table, query)
        from shipyard.data.frame import FrameSource

        return FrameSource(source)
    if isinstance(source, str) and _URL.match(source) and not source.lower().startswith("file://"):
        scheme = source.split("://", 1)[0].lower()
        if scheme == "duckdb" or format == "duckdb":
            return _duckdb_url(source, table=table, query=query)
        from shipyard.data.sql import SqlSource

        return SqlSource(source, table=table, query=query)
    if isinstance(source, str) and source.lower().startswith("file://"):
        source = unquote(urlsplit(source).path)
    if isinstance(source, (str, os.PathLike)):
        return _open_paths(source, os.fspath(source), table=table, query=query, format=format)
    if isinstance(source, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in source):
        if not source:
            raise InvalidInput("the list of files is empty; pass at least one CSV or Parquet file")
        shown = ", ".join(os.fspath(p) for p in source[:3]) + (", ..." if len(source) > 3 else "")
        return _open_paths(list(source), shown, table=table, query=query, format=format)
    raise InvalidInput(
        f"cannot read data from a {type(source).__name__}; pass a file path, a folder, a glob, a list of files, "
        "a database URL or a pandas DataFrame"
    )


def _open_paths(
    spec: str | os.PathLike[str] | list[str | os.PathLike[str]],
    uri: str,
    *,
    table: str | None,
    query: str | None,
    format: str | None,
) -> Source:
    from shipyard.data.files import SUPPORTED_SUFFIXES, CsvSource, ParquetSource, expand_paths, suffix_kind

    files = expand_paths(spec)
    kinds = {format} if format else {suffix_kind(p) for p in files}
    if None in kinds:
        unknown = next(p for p in files if suffix_kind(p) is None)
        raise InvalidInput(
            f"cannot tell the format of {unknown}: supported file endings are {', '.join(SUPPORTED_SUFFIXES)} "
            "(or pass format='csv', 'parquet' or 'duckdb'; CLI: --format)"
        )
    if len(kinds) > 1:
        raise InvalidInput(
            f"{uri} mixes {' and '.join(sorted(k for k in kinds if k))} files; read each format separately"
        )
    kind = kinds.pop()
    if kind == "duckdb":
        if len(files) != 1:
            raise InvalidInput(f"{uri} names several DuckDB files; open one database at a time")
        from shipyard.data.duck import DuckDBSource

        return DuckDBSource(files[0], table=table, query=query, uri=uri)
    if kind == "sql":
        raise InvalidInput(f"format='sql' needs a database URL such as sqlite:///{uri}?table=NAME")
    _no_database_options(uri, table, query)
    if kind == "csv":
        return CsvSource(files, uri=uri)
    return ParquetSource(files, uri=uri)


def _duckdb_url(url: str, *, table: str | None, query: str | None) -> Source:
    from shipyard.data.duck import DuckDBSource

    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    unknown = sorted(set(options) - {"table", "query"})
    if unknown:
        raise InvalidInput(f"unknown option {unknown[0]!r} in {url}; a DuckDB URL takes only ?table=NAME or ?query=SQL")
    table, query = _merge_url_options(url, options, table, query)
    # As in SQLAlchemy URLs: duckdb:///relative/path, duckdb:////absolute/path.
    path = unquote(url.split("://", 1)[1].split("?", 1)[0])
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise InvalidInput(f"{url} names no database file; use duckdb:///path/to/file.duckdb?table=NAME")
    return DuckDBSource(Path(path), table=table, query=query, uri=url)


def _merge_url_options(
    url: str, options: dict[str, str], table: str | None, query: str | None
) -> tuple[str | None, str | None]:
    """Combine ``?table=``/``?query=`` from a URL with the arguments; both at once is an error."""
    table = table if table is not None else options.get("table")
    query = query if query is not None else options.get("query")
    if table is not None and query is not None:
        raise InvalidInput(f"{url}: pass either a table or a query, not both")
    return table, query


def _no_database_options(what: str, table: str | None, query: str | None) -> None:
    if table is not None or query is not None:
        option = "table" if table is not None else "query"
        raise InvalidInput(f"{option}= only applies to databases, but {what} is not one; leave it out")
