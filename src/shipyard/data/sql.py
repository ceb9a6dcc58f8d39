"""SQL tables and queries through SQLAlchemy 2 Core: SQLite, PostgreSQL (psycopg 3), and any other dialect.

Rows are streamed with a server-side cursor (``stream_results=True, yield_per=chunk_rows``), converted
column by column to Arrow with the types taken from the table's reflection (or, for a query, from its
first rows), so a column has the same dtype in every chunk. The URL's password never appears in a
message or a fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from shipyard.data._arrow import DataSchemaError, check_chunk_rows, first_line, rechunk, select_columns, to_frames
from shipyard.data.base import Source
from shipyard.errors import InvalidInput, MissingDependency, NotFound, ShipyardError, StorageError

_SAMPLE_ROWS = 1000
_PASSWORD_IN_URL = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_DRIVERS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "mysqldb": "mysql"}


class MissingDriver(MissingDependency):
    """The database driver a URL names is not installed."""

    def __init__(self, package: str, url: str) -> None:
        extra = _DRIVERS.get(package)
        how = f"pip install 'shipyard[{extra}]'" if extra else f"pip install {package}"
        ShipyardError.__init__(self, f"reading {url} needs the {package!r} database driver; install it with {how}")
        self.package = package
        self.extra = extra or package


class SqlSource(Source):
    """A table or a query in a database that SQLAlchemy can reach.

    A table is read ordered by its primary key when it has one; a table without one is read in the
    database's natural order, which is stable for an unchanged table in SQLite and, in practice, in
    PostgreSQL (a ``VACUUM FULL`` or concurrent writes may change it: give the table a primary key, or
    read it with a query that has an ``ORDER BY``). A query is read in the order it gives; all its
    columns are transferred and the requested ones kept.

    >>> import sqlite3, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tx.db"
    >>> with sqlite3.connect(path) as db:
    ...     _ = db.execute("CREATE TABLE tx (id INTEGER PRIMARY KEY, amount REAL, merchant TEXT)")
    ...     _ = db.executemany("INSERT INTO tx VALUES (?, ?, ?)", [(3, 9.5, "c"), (1, 1.5, "a"), (2, 2.0, "b")])
    >>> src = SqlSource(f"sqlite:///{path}?table=tx")
    >>> src.count_rows(), [str(f.type) for f in src.schema()]
    (3, ['int64', 'double', 'string'])
    >>> [chunk["id"].tolist() for chunk in src.iter_batches(2)]
    [[1, 2], [3]]
    >>> SqlSource(f"sqlite:///{path}", query="SELECT merchant FROM tx WHERE amount > 2").read()["merchant"].tolist()
    ['c']
    """

    def __init__(
        self, url: str | URL, *, table: str | None = None, query: str | None = None, uri: str | None = None
    ) -> None:
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError):
            shown = _PASSWORD_IN_URL.sub(r"\1***@", str(url))
            raise InvalidInput(
                f"{shown} is not a database URL; use e.g. sqlite:///path/to/file.db or "
                "postgresql+psycopg://user@host/dbname"
            ) from None
        options = dict(parsed.query)
        from_url = {key: options.pop(key) for key in ("table", "query") if key in options}
        for key, value in from_url.items():
            if not isinstance(value, str):
                raise InvalidInput(f"{key}= appears more than once in the URL; give it once")
        self.url = parsed.set(query=options)
        self.safe_url = self.url.render_as_string(hide_password=True)
        self.uri = uri or parsed.render_as_string(hide_password=True)
        self._password = parsed.password if isinstance(parsed.password, str) else None
        table = table if table is not None else from_url.get("table")  # type: ignore[assignment]
        query = query if query is not None else from_url.get("query")  # type: ignore[assignment]
        if table is not None and query is not None:
            raise InvalidInput(f"{self.uri}: pass either a table or a query, not both (CLI: --table or --query)")
        if table is None and query is None:
            raise InvalidInput(
                f"{self.uri} names a database but not what to read from it; add ?table=NAME to the URL "
                "or pass a table or a query (CLI: --table NAME or --query 'SELECT ...')"
            )
        if query is not None and not query.strip().rstrip(";").strip():
            raise InvalidInput("the query is empty; pass a SELECT statement")
        self.table_name = table
        self.query = query.strip().rstrip(";").strip() if query is not None else None
        self._check_sqlite_file()
        self._table: sa.Table | None = None
        self._schema: pa.Schema | None = None
        if table is not None:
            with self._connect() as conn:
                self._table = self._reflect(conn, table)
                self._schema = pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in self._table.columns])
                if any(pa.types.is_null(f.type) for f in self._schema):
                    self._schema = self._infer_untyped(conn, self._schema)

    # ------------------------------------------------------------------ connection
    def _check_sqlite_file(self) -> None:
        database = self.url.database
        if self.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return
        if database.startswith("file:") or "uri" in self.url.query:
            return
        if not Path(database).expanduser().is_file():
            raise NotFound(f"no SQLite database at {database}; check the path in {self.uri}")

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection on a fresh engine that is disposed on exit (no pooled connection outlives a read)."""
        engine = self._engine()
        try:
            try:
                conn = engine.connect()
            except sa_exc.DBAPIError as exc:
                raise StorageError(
                    f"cannot connect to {self.safe_url}: {self._scrub(first_line(exc.orig or exc))}"
                ) from None
            with conn:
                yield conn
        finally:
            engine.dispose()

    def _engine(self) -> Engine:
        try:
            return sa.create_engine(self.url, poolclass=NullPool)
        except sa_exc.NoSuchModuleError:
            raise InvalidInput(
                f"SQLAlchemy does not know the database kind {self.url.drivername!r} in {self.safe_url}; "
                "use e.g. sqlite:///file.db or postgresql+psycopg://user@host/dbname"
            ) from None
        except ModuleNotFoundError as exc:
            raise MissingDriver(exc.name or self.url.get_driver_name(), self.safe_url) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _fail(self, exc: sa_exc.DBAPIError | sa_exc.SQLAlchemyError, doing: str) -> InvalidInput:
        detail = first_line(exc.orig) if isinstance(exc, sa_exc.DBAPIError) and exc.orig else first_line(exc)
        return InvalidInput(f"{doing} on {self.safe_url} failed: {self._scrub(detail)}")

    def _reflect(self, conn: Connection, name: str) -> sa.Table:
        inspector = sa.inspect(conn)
        schema, table = None, name
        if not inspector.has_table(name) and "." in name:
            schema, table = name.rsplit(".", 1)
        try:
            if inspector.has_table(table, schema=schema):
                return sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
        except sa_exc.SQLAlchemyError as exc:
            raise self._fail(exc, f"reading the columns of table {name!r}") from None
        try:
            known = sorted(inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema))
        except sa_exc.SQLAlchemyError:
            known = []
        where = f"schema {schema!r} of {self.safe_url}" if schema else self.safe_url
        listing = f"its tables are: {', '.join(known)}" if known else "it has no tables"
        raise NotFound(f"no table {name!r} in {where}; {listing}")

    # ------------------------------------------------------------------ schema
    def schema(self) -> pa.Schema:
        """Arrow types from the table's reflection, or from the first rows of the query."""
        if self._schema is None:
            with self._connect() as conn:
                self._schema = self._infer_query_schema(conn)
        return self._schema

    def _infer_query_schema(self, conn: Connection) -> pa.Schema:
        assert self.query is not None
        try:
            result = conn.execute(sa.text(self.query))
            names = list(result.keys())
            rows = result.fetchmany(_SAMPLE_ROWS)
            result.close()
        except sa_exc.SQLAlchemyError as exc:
            raise self._fail(exc, "the query") from None
        _check_unique(names, self.uri)
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return pa.schema([pa.field(n, _infer_type(values)) for n, values in zip(names, columns, strict=True)])

    def _infer_untyped(self, conn: Connection, schema: pa.Schema) -> pa.Schema:
        """Columns without a declared type (SQLite allows them) take the type of their first values."""
        assert self._table is not None
        untyped = [f.name for f in schema if pa.types.is_null(f.type)]
        stmt = sa.select(*[self._table.c[n] for n in untyped]).limit(_SAMPLE_ROWS)
        try:
            rows = conn.execute(stmt).fetchall()
        except sa_exc.SQLAlchemyError as exc:
            raise self._fail(exc, f"reading table {self.table_name!r}") from None
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in untyped]
        found = {n: _infer_type(values) for n, values in zip(untyped, columns, strict=True)}
        return pa.schema([pa.field(f.name, found.get(f.name, f.type)) for f in schema])

    # ------------------------------------------------------------------ reading
    def _statement(self, columns: list[str] | None = None) -> sa.Executable:
        if self._table is not None:
            table = self._table
            picked = [table.c[n] for n in columns] if columns is not None else list(table.columns)
            return sa.select(*picked).order_by(*table.primary_key.columns)
        assert self.query is not None
        return sa.text(self.query)

    def iter_batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Stream the rows with a server-side cursor, ``chunk_rows`` at a time."""
        check_chunk_rows(chunk_rows)
        schema = self.schema()
        wanted = select_columns(schema.names, columns, self.uri)
        target = pa.schema([schema.field(n) for n in wanted])
        return to_frames(rechunk(self._record_batches(chunk_rows, wanted, target), chunk_rows))

    def _record_batches(self, chunk_rows: int, wanted: list[str], target: pa.Schema) -> Iterator[pa.RecordBatch]:
        with self._connect() as conn:
            streaming = conn.execution_options(stream_results=True, yield_per=chunk_rows)
            try:
                result = streaming.execute(self._statement(wanted if self._table is not None else None))
                keys = list(result.keys())
                positions = [keys.index(n) for n in wanted]
                for rows in result.partitions():
                    yield _to_batch(rows, positions, target, self.uri)
            except sa_exc.SQLAlchemyError as exc:
                raise self._fail(exc, "reading " + (repr(self.table_name) if self._table is not None else "the query")
                                 ) from None

    # ------------------------------------------------------------------ metadata
    def count_rows(self) -> int:
        """``SELECT count(*)`` over the table or the query."""
        with self._connect() as conn:
            return self._count(conn)

    def _count(self, conn: Connection) -> int:
        if self._table is not None:
            stmt = sa.select(sa.func.count()).select_from(self._table)
        else:
            stmt = sa.select(sa.func.count()).select_from(self._statement_subquery())
        try:
            return int(conn.execute(stmt).scalar_one())
        except sa_exc.SQLAlchemyError as exc:
            raise self._fail(exc, "counting the rows") from None

    def _statement_subquery(self) -> sa.Subquery:
        assert self.query is not None
        return sa.text(self.query).columns().subquery("shipyard_query")

    def fingerprint(self) -> str:
        """SHA-256 of the URL (without password), the table or query, ``count(*)`` and the largest key."""
        digest = hashlib.sha256(f"sql\0{self.safe_url}\0{self.table_name}\0{self.query}".encode())
        with self._connect() as conn:
            digest.update(f"\0{self._count(conn)}".encode())
            if self._table is not None and len(self._table.primary_key.columns):
                stmt = sa.select(*[sa.func.max(c) for c in self._table.primary_key.columns])
                try:
                    digest.update(f"\0{tuple(conn.execute(stmt).one())}".encode())
                except sa_exc.SQLAlchemyError as exc:
                    raise self._fail(exc, "reading the largest key") from None
        return digest.hexdigest()


# ---------------------------------------------------------------------- types
def _arrow_type(sqltype: sa.types.TypeEngine[Any]) -> pa.DataType:
    """The Arrow type a column of this SQL type is read as (``null`` when unknown: found from the data)."""
    if isinstance(sqltype, sa.Boolean):
        return pa.bool_()
    if isinstance(sqltype, sa.Integer):
        return pa.int64()
    if isinstance(sqltype, (sa.Float, sa.Numeric)):  # decimals become floats, as in pandas.read_sql
        return pa.float64()
    if isinstance(sqltype, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if sqltype.timezone else None)
    if isinstance(sqltype, sa.Date):
        return pa.date32()
    if isinstance(sqltype, sa.Time):
        return pa.time64("us")
    if isinstance(sqltype, sa.Interval):
        return pa.duration("us")
    if isinstance(sqltype, (sa.String, sa.Enum, sa.Uuid)):
        return pa.string()
    if isinstance(sqltype, (sa.LargeBinary, sa.types._Binary)):
        return pa.binary()
    if isinstance(sqltype, sa.types.NullType):
        return pa.null()
    return pa.string()  # JSON, arrays, dialect-specific types: read as their text form


def _infer_type(values: Sequence[Any]) -> pa.DataType:
    """The Arrow type of a sample of Python values; decimals read as float64, unknown objects as strings."""
    present = [v for v in values if v is not None]
    if not present:
        return pa.null()
    try:
        inferred = pa.array(present).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()
    if pa.types.is_decimal(inferred):
        return pa.float64()
    if pa.types.is_struct(inferred) or pa.types.is_list(inferred) or isinstance(inferred, pa.ExtensionType):
        return pa.string()
    if pa.types.is_timestamp(inferred) and inferred.tz is not None:
        return pa.timestamp("us", tz="UTC")
    return inferred


def _to_batch(rows: Sequence[Any], positions: list[int], target: pa.Schema, uri: str) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = [_to_array(columns[i], field, uri) for i, field in zip(positions, target, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def _to_array(values: Sequence[Any], field: pa.Field, uri: str) -> pa.Array:
    target = field.type
    if pa.types.is_null(target):
        return pa.nulls(len(values))
    if pa.types.is_string(target):
        try:
            return pa.array(values, type=target)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([_text(v) for v in values], type=target)
    if not pa.types.is_integer(target):
        try:  # the fast path: values already of the column's type (floats, bools, datetimes)
            return pa.array(values, type=target)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    try:
        # Inferred, then cast safely: a float in an int column is an error, not truncated
        # (pa.array(values, type=int64) would truncate it), and decimals become floats.
        array = pa.array(values)
        return array if array.type == target else array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        sample = next((v for v in values if v is not None and not _fits(v, target)), None)
        shown = f" such as {sample!r}" if sample is not None else ""
        raise DataSchemaError([
            f"column {field.name!r} of {uri} holds values{shown} that do not fit its type {target} "
            f"({first_line(exc)}); cast the column in a query, e.g. query='SELECT CAST({field.name} AS ...) ...'"
        ]) from None


def _text(value: Any) -> str | None:
    """A value as text: JSON for what a JSON column gives (dicts, lists), ``str`` for the rest."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _fits(value: Any, target: pa.DataType) -> bool:
    try:
        pa.array([value]).cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return True


def _check_unique(names: list[str], uri: str) -> None:
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise DataSchemaError([
            f"the query gives several columns named {name!r}; rename them with AS" for name in duplicated
        ], what=uri)

