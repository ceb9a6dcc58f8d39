"""FrameSource, and open_source's routing and argument errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import shipyard.data
from shipyard.data import DEFAULT_CHUNK_ROWS, CsvSource, FrameSource, ParquetSource, Source, open_source
from shipyard.errors import InvalidInput, NotFound, SchemaError

from .conftest import make_frame


def test_frame_source_slices_in_exact_chunks(frame: pd.DataFrame) -> None:
    source = open_source(frame.set_axis(range(100, 110)))
    assert isinstance(source, FrameSource)
    chunks = list(source.iter_batches(3))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert [c.index[0] for c in chunks] == [0, 3, 6, 9]
    pd.testing.assert_frame_equal(pd.concat(chunks), frame)
    pd.testing.assert_frame_equal(source.read(), frame)
    assert list(pd.concat(source.iter_batches(4, ["hour"])).columns) == ["hour"]
    assert source.count_rows() == 10
    assert [str(t) for t in source.schema().types] == ["double", "int64", "large_string", "bool"]


def test_frame_fingerprint_follows_the_values(frame: pd.DataFrame) -> None:
    before = FrameSource(frame).fingerprint()
    assert FrameSource(frame.copy()).fingerprint() == before
    changed = frame.copy()
    changed.loc[4, "amount"] += 1
    assert FrameSource(changed).fingerprint() != before
    assert FrameSource(frame.rename(columns={"hour": "h"})).fingerprint() != before
    assert FrameSource(frame.astype({"hour": "float64"})).fingerprint() != before
    lists = pd.DataFrame({"x": [[1, 2], [3]]})  # unhashable cells still fingerprint
    assert len(FrameSource(lists).fingerprint()) == 64


def test_frame_column_names_become_strings_and_duplicates_are_refused() -> None:
    assert FrameSource(pd.DataFrame({0: [1.0], 1: [2.0]})).column_names == ["0", "1"]
    with pytest.raises(SchemaError, match="several columns named 'a'"):
        FrameSource(pd.DataFrame([[1, 2]], columns=["a", "a"]))


def test_frame_with_mixed_object_column_names_it() -> None:
    source = FrameSource(pd.DataFrame({"ok": [1, 2], "mixed": pd.Series([1, "a"], dtype=object)}))
    with pytest.raises(SchemaError, match="column 'mixed' mixes values of different types"):
        source.schema()
    assert len(source.read()) == 2  # reading does not need the Arrow schema


def test_open_source_routes_each_kind(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False)
    listed = open_source([str(tmp_path / "b.csv"), tmp_path / "a.csv"])
    assert isinstance(listed, CsvSource)
    assert [p.name for p in listed.files] == ["b.csv", "a.csv"]  # a list keeps its order
    assert len(listed.read()) == 20
    frame.to_parquet(tmp_path / "c.pq")
    assert isinstance(open_source(f"file://{tmp_path / 'c.pq'}"), ParquetSource)
    assert repr(open_source(tmp_path / "c.pq")) == f"ParquetSource({str(tmp_path / 'c.pq')!r})"


def test_open_source_argument_errors(tmp_path: Path, frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="cannot read data from a int; pass a file path"):
        open_source(42)
    with pytest.raises(InvalidInput, match="the list of files is empty"):
        open_source([])
    with pytest.raises(InvalidInput, match="query= only applies to databases, but a DataFrame is not one"):
        open_source(frame, query="SELECT 1")
    with pytest.raises(InvalidInput, match="either a table or a query, not both"):
        open_source(frame, table="t", query="SELECT 1")
    frame.to_csv(tmp_path / "a.csv")
    frame.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidInput, match="mixes csv and parquet files"):
        open_source([tmp_path / "a.csv", tmp_path / "b.parquet"])
    with pytest.raises(NotFound, match=r"no such file or folder: .*gone\.csv"):
        open_source([tmp_path / "a.csv", tmp_path / "gone.csv"])
    with pytest.raises(InvalidInput, match=r"format='sql' needs a database URL such as sqlite:///"):
        open_source(tmp_path / "a.csv", format="sql")
    with pytest.raises(InvalidInput, match=r"postgresql\+psycopg://me:\*\*\*@host:port/db is not a database URL"):
        open_source("postgresql+psycopg://me:pw1234@host:port/db")


def test_header_only_csv_reads_as_empty_frame(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n")
    source = open_source(path)
    assert list(source.iter_batches(10)) == []
    assert list(source.read().columns) == ["a", "b"]


def test_package_exports() -> None:
    assert DEFAULT_CHUNK_ROWS == 100_000
    assert issubclass(FrameSource, Source)
    assert set(shipyard.data.__all__) <= set(dir(shipyard.data))
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = shipyard.data.Nope  # type: ignore[attr-defined]


def test_sources_read_the_same_rows(tmp_path: Path) -> None:
    """One frame written as CSV, Parquet, SQLite and DuckDB reads back identically from each."""
    import duckdb
    import sqlalchemy as sa

    frame = make_frame(40).drop(columns="merchant")
    frame.to_csv(tmp_path / "f.csv", index=False)
    frame.to_parquet(tmp_path / "f.parquet", row_group_size=9)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'f.db'}")
    frame.to_sql("f", engine, index=False)
    engine.dispose()
    with duckdb.connect(str(tmp_path / "f.duckdb")) as db:
        db.register("frame", frame)
        db.execute("CREATE TABLE f AS SELECT * FROM frame")
    sources = [
        open_source(frame),
        open_source(tmp_path / "f.csv"),
        open_source(tmp_path / "f.parquet"),
        open_source(f"sqlite:///{tmp_path / 'f.db'}?table=f"),
        open_source(tmp_path / "f.duckdb", table="f"),
    ]
    for source in sources:
        chunks = list(source.iter_batches(7))
        assert [len(c) for c in chunks] == [7] * 5 + [5], source
        pd.testing.assert_frame_equal(pd.concat(chunks), frame, obj=repr(source))
