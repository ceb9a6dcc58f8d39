"""SQL sources on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard.data import SqlSource, open_source
from shipyard.errors import InvalidInput, MissingDependency, NotFound, SchemaError, StorageError

from .conftest import make_frame


def _database_with_rows(url: str, frame: pd.DataFrame) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    tx = sa.Table(
        "tx",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("amount", sa.Float),
        sa.Column("hour", sa.BigInteger),
        sa.Column("merchant", sa.String(20)),
        sa.Column("is_online", sa.Boolean),
    )
    meta.create_all(engine)
    records = frame.rename_axis("id").reset_index().astype(object).where(frame.notna().reindex(
        columns=["id", *frame.columns], fill_value=True), None).to_dict("records")
    with engine.begin() as conn:
        conn.execute(tx.insert(), records[::-1])  # stored out of key order
        frame.iloc[:5].to_sql("nokey", conn, index=False)
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database (SQLite file, or a fresh PostgreSQL database) with tables 'tx' (key 'id') and 'nokey'.

    Shared by the module's tests: a test that changes rows puts them back.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sql') / 'tx.db'}"
    else:
        url = request.getfixturevalue("module_postgres_url")
    _database_with_rows(url, make_frame(25))
    return str(url)


def expected(url: str, sql: str) -> pd.DataFrame:
    """What pandas reads: a table by name (typed by reflection, like SqlSource), else a query."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if " " not in sql:
                return pd.read_sql_table(sql, conn)
            return pd.read_sql_query(sa.text(sql), conn)
    finally:
        engine.dispose()


def test_table_matches_pandas_ordered_by_key(database_url: str) -> None:
    source = open_source(database_url, table="tx")
    assert isinstance(source, SqlSource)
    chunks = list(source.iter_batches(10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    want = expected(database_url, "tx").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(pd.concat(chunks), want)
    assert source.count_rows() == 25
    assert [str(f.type) for f in source.schema()] == ["int64", "double", "int64", "string", "bool"]
    second = list(source.iter_batches(10))
    for a, b in zip(chunks, second, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_table_in_url(database_url: str) -> None:
    source = open_source(f"{database_url}?table=tx")
    assert source.count_rows() == 25
    assert source.uri.endswith("?table=tx")


def test_query_and_column_selection(database_url: str) -> None:
    sql = "SELECT id, amount, merchant FROM tx WHERE id < 20 ORDER BY amount DESC"
    source = open_source(database_url, query=sql)
    pd.testing.assert_frame_equal(source.read(), expected(database_url, sql))
    assert [len(c) for c in source.iter_batches(7)] == [7, 7, 6]
    out = pd.concat(source.iter_batches(7, ["merchant", "id"]))
    pd.testing.assert_frame_equal(out, expected(database_url, sql)[["merchant", "id"]])
    assert source.count_rows() == 20
    table_cols = pd.concat(open_source(database_url, table="tx").iter_batches(4, ["amount"]))
    assert list(table_cols.columns) == ["amount"]


def test_table_without_primary_key_reads_in_natural_order(database_url: str) -> None:
    source = open_source(database_url, table="nokey")
    pd.testing.assert_frame_equal(source.read(), expected(database_url, "nokey"))


def test_fingerprint_changes_with_the_rows(database_url: str) -> None:
    source = open_source(database_url, table="tx")
    before = source.fingerprint()
    assert open_source(database_url, table="tx").fingerprint() == before
    assert open_source(database_url, query="SELECT * FROM tx").fingerprint() != before
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tx (id, amount, hour, merchant, is_online) VALUES (100, 1, 1, 'x', true)"))
    try:
        assert source.fingerprint() != before
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM tx WHERE id = 100"))
        engine.dispose()
    assert source.fingerprint() == before


def test_unknown_table_lists_tables(database_url: str) -> None:
    with pytest.raises(NotFound, match=r"no table 'transactions' in .*; its tables are: nokey, tx"):
        open_source(database_url, table="transactions")


def test_bad_query_says_what_failed(database_url: str) -> None:
    source = open_source(database_url, query="SELECT nope FROM tx")
    with pytest.raises(InvalidInput, match=r"the query on .* failed: .*nope"):
        source.schema()


def test_missing_column_in_selection(database_url: str) -> None:
    with pytest.raises(SchemaError, match="has no column 'nope'"):
        list(open_source(database_url, table="tx").iter_batches(5, ["nope"]))


@pytest.mark.postgres
def test_postgres_schema_qualified_table_and_types(module_postgres_url: str) -> None:
    engine = sa.create_engine(module_postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA scoring"))
        conn.execute(sa.text(
            "CREATE TABLE scoring.events (id bigint PRIMARY KEY, price numeric(10, 2), at timestamptz, "
            "day date, tag uuid, extra jsonb)"
        ))
        conn.execute(sa.text(
            "INSERT INTO scoring.events SELECT g, g / 4.0, timestamptz '2024-01-01 00:00+00' + g * interval '1 hour', "
            "date '2024-01-01' + g, gen_random_uuid(), jsonb_build_object('g', g) FROM generate_series(1, 50) g"
        ))
    engine.dispose()
    source = open_source(module_postgres_url, table="scoring.events")
    frame = source.read()
    assert frame["price"].dtype == "float64"
    assert frame["price"].iloc[1] == 0.5
    assert str(frame["at"].dtype) == "datetime64[us, UTC]"
    assert frame["tag"].str.len().eq(36).all()
    assert [len(c) for c in source.iter_batches(20)] == [20, 20, 10]
    assert frame["extra"].iloc[0] == '{"g": 1}'  # JSON columns come as JSON text
    query = open_source(module_postgres_url, query="SELECT price, extra FROM scoring.events ORDER BY id")
    out = query.read()
    assert out["price"].iloc[-1] == 12.5
    assert out["extra"].iloc[-1] == '{"g": 50}'


@pytest.mark.postgres
def test_postgres_password_is_never_shown(module_postgres_url: str) -> None:
    url = sa.engine.make_url(module_postgres_url).set(password="s3cret-pw", port=1)
    with pytest.raises(StorageError) as info:
        open_source(url.render_as_string(hide_password=False), table="tx")
    assert "s3cret-pw" not in str(info.value)
    assert "cannot connect to postgresql+psycopg://" in str(info.value)


# ---------------------------------------------------------------- SQLite specifics and errors
def test_sqlite_streams_a_big_table_in_exact_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x REAL, y INTEGER, z)")  # z has no declared type
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i / 2, i, f"z{i}") for i in range(10_001)))
    source = open_source(f"sqlite:///{path}", table="t")
    assert [str(f.type) for f in source.schema()] == ["double", "int64", "string"]
    sizes = [len(c) for c in source.iter_batches(2500)]
    assert sizes == [2500] * 4 + [1]


def test_sqlite_value_that_does_not_fit_its_column(tmp_path: Path) -> None:
    path = tmp_path / "dirty.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(1, 1), (2, 2.5)])
    with pytest.raises(SchemaError, match=r"column 'n' of .* holds values such as 2\.5 that do not fit its type int64"):
        open_source(f"sqlite:///{path}", table="t").read()


def test_sql_url_without_table_or_query(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "x.db").close()
    with pytest.raises(InvalidInput, match=r"names a database but not what to read .*\?table=NAME"):
        open_source(f"sqlite:///{tmp_path / 'x.db'}")


def test_table_and_query_together(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "x.db").close()
    with pytest.raises(InvalidInput, match="either a table or a query, not both"):
        open_source(f"sqlite:///{tmp_path / 'x.db'}", table="t", query="SELECT 1")
    with pytest.raises(InvalidInput, match="either a table or a query, not both"):
        open_source(f"sqlite:///{tmp_path / 'x.db'}?table=t", query="SELECT 1")


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no SQLite database at .*nope\.db"):
        open_source(f"sqlite:///{tmp_path / 'nope.db'}?table=t")
    assert not (tmp_path / "nope.db").exists()


def test_empty_database_says_it_has_no_tables(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "x.db").close()
    with pytest.raises(NotFound, match=r"no table 'tx' in .*; it has no tables"):
        open_source(f"sqlite:///{tmp_path / 'x.db'}", table="tx")


def test_unknown_dialect_and_missing_driver() -> None:
    with pytest.raises(InvalidInput, match="does not know the database kind 'nosuchdb'"):
        open_source("nosuchdb://host/db?table=t")
    with pytest.raises(MissingDependency, match=r"needs the 'pymysql' database driver; install it with pip install"):
        open_source("mysql+pymysql://user:pw@127.0.0.1/db?table=t")


def test_empty_query_result_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (a REAL)")
    source = open_source(f"sqlite:///{path}", query="SELECT a FROM t;")
    assert list(source.iter_batches(10)) == []
    assert source.count_rows() == 0
    assert source.read().columns.tolist() == ["a"]
