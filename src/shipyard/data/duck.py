"""DuckDB database files, read-only: a table or a query, streamed as Arrow record batches.

(The module is ``duck`` so that it does not shadow the ``duckdb`` package.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from shipyard.data._arrow import (
    check_chunk_rows,
    decimal_fields_as_floats,
    first_line,
    rechunk,
    select_columns,
    to_frames,
)
from shipyard.data.base import Source
from shipyard.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import duckdb


def quote(name: str) -> str:
    """A SQL identifier in double quotes, inner quotes doubled.

    >>> quote('amount'), quote('a"b')
    ('"amount"', '"a""b"')
    """
    return '"' + name.replace('"', '""') + '"'


class DuckDBSource(Source):
    """A table (``name`` or ``schema.name``) or a query in a DuckDB file, opened read-only.

    A table is read ordered by its primary key when it has one, else in insertion order (DuckDB
    keeps it for a plain scan). A query is read in the order it gives.

    >>> import duckdb, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tx.duckdb"
    >>> with duckdb.connect(str(path)) as db:
    ...     _ = db.execute("CREATE TABLE tx AS SELECT range AS id, range / 2 AS amount FROM range(5)")
    >>> src = DuckDBSource(path, table="tx")
    >>> src.count_rows(), [len(chunk) for chunk in src.iter_batches(2)]
    (5, [2, 2, 1])
    >>> DuckDBSource(path, query="SELECT sum(amount) AS total FROM tx").read()["total"].tolist()
    [5.0]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str | None = None,
        query: str | None = None,
        uri: str | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.uri = uri or os.fspath(path)
        if table is not None and query is not None:
            raise InvalidInput(f"{self.uri}: pass either a table or a query, not both (CLI: --table or --query)")
        if table is None and query is None:
            raise InvalidInput(
                f"{self.uri} is a DuckDB database; say what to read from it with ?table=NAME in a duckdb:/// URL "
                "or a table or a query (CLI: --table NAME or --query 'SELECT ...')"
            )
        if not self.path.is_file():
            raise NotFound(f"no DuckDB database at {self.path}; check the path")
        if query is not None and not query.strip().rstrip(";").strip():
            raise InvalidInput("the query is empty; pass a SELECT statement")
        self.table_name = table
        self.query = query.strip().rstrip(";").strip() if query is not None else None
        self._order: list[str] = []
        self._qualified: str | None = None
        if table is not None:
            with self._connect() as conn:
                self._qualified, self._order = self._find_table(conn, table)
        self._schema: pa.Schema | None = None

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            import duckdb
        except ImportError:  # pragma: no cover - duckdb is a dependency
            from shipyard.data.sql import MissingDriver

            raise MissingDriver("duckdb", self.uri) from None
        try:
            conn = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise InvalidInput(f"cannot open {self.path} as a DuckDB database: {first_line(exc)}") from None
        try:
            yield conn
        finally:
            conn.close()

    def _find_table(self, conn: duckdb.DuckDBPyConnection, name: str) -> tuple[str, list[str]]:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY table_schema, table_name"
        ).fetchall()
        by_name = {f"{s}.{t}": (s, t) for s, t in tables}
        match = by_name.get(name) or next(((s, t) for s, t in tables if t == name and s == "main"), None)
        match = match or next(((s, t) for s, t in tables if t == name), None)
        if match is None:
            known = sorted(t if s == "main" else f"{s}.{t}" for s, t in tables)
            listing = f"its tables are: {', '.join(known)}" if known else "it has no tables"
            raise NotFound(f"no table {name!r} in DuckDB database {self.path}; {listing}")
        schema, table = match
        row = conn.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY' AND schema_name = ? AND table_name = ?",
            [schema, table],
        ).fetchone()
        return f"{quote(schema)}.{quote(table)}", list(row[0]) if row else []

    def _sql(self, columns: Sequence[str] | None = None) -> str:
        picked = "*" if columns is None else ", ".join(quote(c) for c in columns)
        if self._qualified is not None:
            order = f" ORDER BY {', '.join(quote(c) for c in self._order)}" if self._order else ""
            return f"SELECT {picked} FROM {self._qualified}{order}"
        assert self.query is not None
        return self.query if columns is None else f"SELECT {picked} FROM ({self.query}) AS shipyard_query"

    def _run(self, conn: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
        import duckdb

        try:
            return conn.sql(sql)
        except duckdb.Error as exc:
            what = f"reading table {self.table_name!r}" if self.query is None else "the query"
            raise InvalidInput(f"{what} on {self.path} failed: {first_line(exc)}") from None

    def schema(self) -> pa.Schema:
        """The columns and their Arrow types, from an empty result of the table or query (decimals as float64)."""
        if self._schema is None:
            with self._connect() as conn:
                relation = self._run(conn, self._sql())
                if relation is None:
                    raise InvalidInput(f"the query on {self.path} returns no rows; pass a SELECT statement")
                self._schema = decimal_fields_as_floats(relation.limit(0).to_arrow_table().schema)
        return self._schema

    def iter_batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Stream ``chunk_rows`` rows at a time from DuckDB's Arrow reader."""
        check_chunk_rows(chunk_rows)
        wanted = select_columns(self.schema().names, columns, self.uri)
        return to_frames(rechunk(self._record_batches(chunk_rows, wanted if columns is not None else None),
                                 chunk_rows))

    def _record_batches(self, chunk_rows: int, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        import duckdb

        with self._connect() as conn:
            relation = self._run(conn, self._sql(columns))
            try:
                reader = _arrow_reader(relation, chunk_rows)
                yield from reader
            except duckdb.Error as exc:
                raise InvalidInput(f"reading {self.uri} failed: {first_line(exc)}") from None

    def count_rows(self) -> int:
        """``SELECT count(*)`` over the table or query."""
        with self._connect() as conn:
            return self._count(conn)

    def _count(self, conn: duckdb.DuckDBPyConnection) -> int:
        source = self._qualified if self._qualified is not None else f"({self.query}) AS shipyard_query"
        import duckdb

        try:
            row = conn.execute(f"SELECT count(*) FROM {source}").fetchone()
        except duckdb.Error as exc:
            raise InvalidInput(f"counting the rows of {self.uri} failed: {first_line(exc)}") from None
        return int(row[0]) if row else 0

    def fingerprint(self) -> str:
        """SHA-256 of the file's path, size and mtime, the table or query, and ``count(*)``."""
        stat = self.path.stat()
        digest = hashlib.sha256(
            f"duckdb\0{self.path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.table_name}\0{self.query}".encode()
        )
        with self._connect() as conn:
            digest.update(f"\0{self._count(conn)}".encode())
        return digest.hexdigest()


def _arrow_reader(relation: duckdb.DuckDBPyRelation, batch_rows: int) -> pa.RecordBatchReader:
    """``to_arrow_reader`` (DuckDB 1.4 and later) or ``fetch_record_batch`` (older releases)."""
    if hasattr(relation, "to_arrow_reader"):
        return relation.to_arrow_reader(batch_rows)
    return relation.fetch_record_batch(batch_rows)  # pragma: no cover - DuckDB < 1.4
