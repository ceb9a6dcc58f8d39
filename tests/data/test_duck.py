"""DuckDB sources on real database files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from shipyard.data import DuckDBSource, open_source
from shipyard.errors import InvalidInput, NotFound, SchemaError

from .conftest import make_frame


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A DuckDB file with 'tx' (25 rows, primary key 'id', inserted out of order) and 'sales.daily' (no key)."""
    path = tmp_path / "tx.duckdb"
    frame = make_frame(25).rename_axis("id").reset_index()
    with duckdb.connect(str(path)) as db:
        db.register("frame", frame)
        db.execute("CREATE TABLE tx (id BIGINT PRIMARY KEY, amount DOUBLE, hour BIGINT, merchant VARCHAR, "
                   "is_online BOOLEAN)")
        db.execute("INSERT INTO tx SELECT * FROM frame ORDER BY id DESC")
        db.execute("CREATE SCHEMA sales")
        db.execute("CREATE TABLE sales.daily AS SELECT range AS day, range * 1.5 AS total FROM range(7)")
    return path


def test_table_matches_pandas_in_key_order(db_path: Path) -> None:
    source = open_source(f"duckdb:///{db_path}?table=tx")
    assert isinstance(source, DuckDBSource)
    chunks = list(source.iter_batches(10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    want = make_frame(25).rename_axis("id").reset_index()
    pd.testing.assert_frame_equal(pd.concat(chunks), want)
    assert source.count_rows() == 25
    for a, b in zip(chunks, source.iter_batches(10), strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_path_with_table_query_and_columns(db_path: Path) -> None:
    source = open_source(db_path, table="sales.daily")
    assert source.read()["total"].tolist() == [i * 1.5 for i in range(7)]
    query = open_source(db_path, query="SELECT id, merchant FROM tx WHERE id >= 20 ORDER BY id DESC;")
    out = pd.concat(query.iter_batches(2, ["merchant"]))
    assert list(out.columns) == ["merchant"]
    assert out.index.tolist() == [0, 1, 2, 3, 4]
    assert [len(c) for c in query.iter_batches(2)] == [2, 2, 1]
    assert query.read()["id"].tolist() == [24, 23, 22, 21, 20]
    assert query.count_rows() == 5


def test_url_with_query_parameter(db_path: Path) -> None:
    source = open_source(f"duckdb:///{db_path}", query="SELECT count(*) AS n FROM tx")
    assert source.read()["n"].tolist() == [25]


def test_relative_duckdb_url(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db_path.parent)
    assert open_source("duckdb:///tx.duckdb?table=tx").count_rows() == 25


def test_fingerprint(db_path: Path) -> None:
    before = open_source(db_path, table="tx").fingerprint()
    assert open_source(db_path, table="tx").fingerprint() == before
    assert open_source(db_path, table="sales.daily").fingerprint() != before
    with duckdb.connect(str(db_path)) as db:
        db.execute("INSERT INTO tx VALUES (100, 1.0, 1, 'x', true)")
    assert open_source(db_path, table="tx").fingerprint() != before


def test_errors(db_path: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no table 'nope' in DuckDB database .*; its tables are: sales\.daily, tx"):
        open_source(db_path, table="nope")
    with pytest.raises(InvalidInput, match=r"say what to read from it with \?table=NAME"):
        open_source(f"duckdb:///{db_path}")
    with pytest.raises(InvalidInput, match="either a table or a query, not both"):
        open_source(f"duckdb:///{db_path}?table=tx", query="SELECT 1")
    with pytest.raises(NotFound, match=r"no DuckDB database at .*missing\.duckdb"):
        open_source(f"duckdb:///{tmp_path / 'missing.duckdb'}?table=tx")
    with pytest.raises(InvalidInput, match=r"the query on .* failed: .*nope"):
        open_source(db_path, query="SELECT nope FROM tx").schema()
    with pytest.raises(SchemaError, match="has no column 'nope'"):
        list(open_source(db_path, table="tx").iter_batches(5, ["nope"]))
    with pytest.raises(InvalidInput, match="unknown option 'tabel'"):
        open_source(f"duckdb:///{db_path}?tabel=tx")
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(InvalidInput, match=r"cannot open .*bad\.duckdb as a DuckDB database"):
        open_source(bad, table="tx")


def test_the_database_is_opened_read_only(db_path: Path) -> None:
    source = open_source(db_path, query="CREATE TABLE t2 AS SELECT 1 AS x")
    with pytest.raises(InvalidInput, match="read-only"):
        source.read()


def test_decimals_come_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "d.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE p AS SELECT 1.25 AS price, range AS n FROM range(3)")
    frame = open_source(path, table="p").read()
    assert frame["price"].dtype == "float64"
    assert frame["price"].tolist() == [1.25, 1.25, 1.25]
