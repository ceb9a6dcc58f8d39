"""CSV and Parquet sources, and open_source on paths, against real files."""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.data import CsvSource, ParquetSource, open_source
from shipyard.errors import InvalidInput, NotFound, SchemaError

from .conftest import make_frame


def chunk_sizes(source, chunk_rows: int, columns=None) -> list[int]:
    return [len(c) for c in source.iter_batches(chunk_rows, columns)]


def concat(source, chunk_rows: int, columns=None) -> pd.DataFrame:
    return pd.concat(list(source.iter_batches(chunk_rows, columns)))


# ---------------------------------------------------------------- Parquet
def test_parquet_file_matches_pandas_with_exact_chunks(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path, row_group_size=4)
    source = open_source(path)
    assert isinstance(source, ParquetSource)
    assert source.files == [path.resolve()]
    assert chunk_sizes(source, 3) == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(concat(source, 3), pd.read_parquet(path))
    pd.testing.assert_frame_equal(source.read(), pd.read_parquet(path))
    assert source.count_rows() == 10
    assert source.column_names == ["amount", "hour", "merchant", "is_online"]


def test_parquet_folder_with_row_groups_rechunks_deterministically(tmp_path: Path) -> None:
    whole = make_frame(100, seed=1)
    folder = tmp_path / "data"
    folder.mkdir()
    bounds = [0, 17, 50, 51, 100]
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        whole.iloc[lo:hi].to_parquet(folder / f"part-{i:02d}.parquet", row_group_size=7, index=False)
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden.parquet").write_text("not parquet")
    source = open_source(folder)
    assert [p.name for p in source.files] == [f"part-{i:02d}.parquet" for i in range(4)]
    assert chunk_sizes(source, 30) == [30, 30, 30, 10]
    first = [c.copy() for c in source.iter_batches(30)]
    second = list(source.iter_batches(30))
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pd.concat(first), whole)
    # The same rows whatever the chunk size.
    for rows in (1, 7, 99, 100, 1000):
        pd.testing.assert_frame_equal(concat(source, rows), whole)
    assert source.count_rows() == 100


def test_parquet_glob_and_list_of_files(tmp_path: Path) -> None:
    whole = make_frame(20)
    for i in range(4):
        whole.iloc[i * 5 : (i + 1) * 5].to_parquet(tmp_path / f"p{i}.parquet", index=False)
    glob_source = open_source(str(tmp_path / "p*.parquet"))
    pd.testing.assert_frame_equal(glob_source.read(), whole)
    listed = open_source([tmp_path / "p2.parquet", tmp_path / "p3.parquet"])
    assert isinstance(listed, ParquetSource)
    assert [p.name for p in listed.files] == ["p2.parquet", "p3.parquet"]
    pd.testing.assert_frame_equal(listed.read(), whole.iloc[10:].reset_index(drop=True))


def test_parquet_reads_only_requested_columns(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    source = open_source(path)
    chunks = list(source.iter_batches(4, ["merchant", "amount"]))
    assert [list(c.columns) for c in chunks] == [["merchant", "amount"]] * 3
    pd.testing.assert_frame_equal(pd.concat(chunks), frame[["merchant", "amount"]])
    with pytest.raises(SchemaError, match=r"has no column 'nope'.*its columns: amount, hour"):
        list(source.iter_batches(4, ["amount", "nope"]))


def test_parquet_index_written_by_pandas_stays_a_column(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "indexed.parquet"
    frame.set_index("amount").to_parquet(path)
    source = open_source(path)
    assert "amount" in source.column_names
    out = source.read()
    assert list(out.index) == list(range(10))
    assert out["amount"].tolist() == frame["amount"].tolist()
    path2 = tmp_path / "shifted.parquet"
    frame.set_axis(range(100, 110)).to_parquet(path2)  # a non-default index is stored as a column
    assert open_source(path2).column_names == list(frame.columns)


def test_parquet_nullable_ints_keep_their_pandas_dtype(tmp_path: Path) -> None:
    frame = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    frame.to_parquet(tmp_path / "n.parquet")
    pd.testing.assert_frame_equal(open_source(tmp_path / "n.parquet").read(), frame)


def test_parquet_folder_schema_mismatch_names_file_and_column(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(tmp_path / "a.parquet")
    frame.assign(hour=frame["hour"].astype(str)).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(SchemaError, match=r"column 'hour' is string in .*b\.parquet but int64 in a\.parquet"):
        open_source(tmp_path)
    (tmp_path / "b.parquet").unlink()
    frame.drop(columns="merchant").to_parquet(tmp_path / "c.parquet")
    with pytest.raises(SchemaError, match=r"c\.parquet has no column 'merchant'"):
        open_source(tmp_path)


def test_corrupt_parquet_says_so(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(InvalidInput, match=r"cannot read .*bad\.parquet as Parquet .*is it a Parquet file"):
        open_source(path)


# ---------------------------------------------------------------- CSV
def test_csv_matches_pandas_with_exact_chunks(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    source = open_source(path)
    assert isinstance(source, CsvSource)
    assert chunk_sizes(source, 3) == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(concat(source, 3), pd.read_csv(path))
    assert source.count_rows() is None


def test_csv_gz_and_small_blocks_keep_types_consistent(tmp_path: Path) -> None:
    whole = make_frame(2000, seed=3)
    path = tmp_path / "tx.csv.gz"
    with gzip.open(path, "wt") as fh:
        whole.to_csv(fh, index=False)
    source = CsvSource(path, block_size=4096)  # many blocks
    chunks = list(source.iter_batches(300))
    assert [len(c) for c in chunks] == [300] * 6 + [200]
    assert {str(c["hour"].dtype) for c in chunks} == {"int64"}
    pd.testing.assert_frame_equal(pd.concat(chunks), pd.read_csv(path))


def test_csv_column_selection(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    out = concat(open_source(path), 4, ["is_online", "amount"])
    pd.testing.assert_frame_equal(out, pd.read_csv(path, usecols=["amount", "is_online"])[["is_online", "amount"]])


def test_csv_dates_stay_strings_and_empty_columns_are_float(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("day,empty,n\n2024-01-01,,1\n2024-01-02,,2\n")
    pd.testing.assert_frame_equal(open_source(path).read(), pd.read_csv(path))


def test_csv_type_change_in_a_later_block_names_column(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    path.write_text("id,amount\n" + "".join(f"{i},{i}\n" for i in range(5000)) + "5000,12.5\n")
    source = CsvSource(path, block_size=4096)
    with pytest.raises(SchemaError, match=r"column 'amount' of .*drift\.csv was read as int64 .* has '12\.5'"):
        list(source.iter_batches(1000))
    fixed = CsvSource(path, block_size=4096, column_types={"amount": "float64"})
    assert fixed.read()["amount"].iloc[-1] == 12.5


def test_csv_folder_of_files(tmp_path: Path) -> None:
    whole = make_frame(30)
    for i in range(3):
        whole.iloc[i * 10 : (i + 1) * 10].to_csv(tmp_path / f"day-{i}.csv", index=False)
    source = open_source(tmp_path)
    assert isinstance(source, CsvSource)
    assert chunk_sizes(source, 8) == [8, 8, 8, 6]
    pd.testing.assert_frame_equal(source.read(), whole)


def test_csv_folder_header_mismatch(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.rename(columns={"hour": "hr"}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(SchemaError, match=r"b\.csv has no column 'hour'.*b\.csv has a column 'hr'"):
        open_source(tmp_path).read()


# ---------------------------------------------------------------- fingerprints
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_fingerprint_stable_until_the_file_changes(tmp_path: Path, frame: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"tx{suffix}"
    write = frame.to_csv if suffix == ".csv" else frame.to_parquet
    write(path)
    before = open_source(path).fingerprint()
    assert open_source(path).fingerprint() == before
    assert len(before) == 64
    write(path)  # same bytes, new mtime
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert open_source(path).fingerprint() != before


def test_fingerprint_of_folder_changes_with_a_new_file(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(tmp_path / "a.parquet")
    before = open_source(tmp_path).fingerprint()
    frame.to_parquet(tmp_path / "b.parquet")
    assert open_source(tmp_path).fingerprint() != before


# ---------------------------------------------------------------- errors
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no such file or folder: .*nope\.csv; check the path"):
        open_source(tmp_path / "nope.csv")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "tx.xlsx"
    path.write_text("x")
    with pytest.raises(InvalidInput, match=r"cannot tell the format of .*tx\.xlsx: supported .*\.csv, .*\.parquet"):
        open_source(path)


def test_format_overrides_the_extension(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "tx.txt"
    frame.to_csv(path, index=False)
    pd.testing.assert_frame_equal(open_source(path, format="csv").read(), frame)
    with pytest.raises(InvalidInput, match="unknown format 'xls'"):
        open_source(path, format="xls")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"folder .* has no data files"):
        open_source(tmp_path)


def test_glob_without_matches(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no file matches .*\*\.parquet"):
        open_source(str(tmp_path / "*.parquet"))


def test_mixed_folder(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "a.csv")
    frame.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidInput, match="mixes csv and parquet files"):
        open_source(tmp_path)


def test_table_option_on_a_file(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "a.csv")
    with pytest.raises(InvalidInput, match="table= only applies to databases"):
        open_source(tmp_path / "a.csv", table="tx")


def test_corrupt_csv(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(InvalidInput, match=r"cannot read .*bad\.csv\.gz as CSV"):
        open_source(path)


def test_bad_chunk_rows(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InvalidInput, match="chunk_rows must be a positive integer"):
        list(open_source(tmp_path / "a.parquet").iter_batches(0))


def test_empty_parquet_file_reads_as_empty_frame(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), tmp_path / "e.parquet")
    source = open_source(tmp_path / "e.parquet")
    assert list(source.iter_batches(5)) == []
    assert source.read().columns.tolist() == ["x"]


def test_parquet_folder_with_string_and_large_string_and_null_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"s": pa.array(["a", "b"], pa.string()), "x": [1.0, 2.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"s": pa.array(["c"], pa.large_string()), "x": [3.0]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"s": pa.array([None], pa.null()), "x": [4.0]}), tmp_path / "c.parquet")
    out = open_source(tmp_path).read()
    assert out["s"].tolist()[:3] == ["a", "b", "c"]
    assert pd.isna(out["s"].iloc[3])
    assert out["x"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_csv_ragged_row_says_where(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidInput, match=r"cannot read .*ragged\.csv as CSV: CSV parse error: "
                                           r"Expected 2 columns, got 3: 3,4,5; fix that line"):
        open_source(path)
    late = tmp_path / "late.csv"
    late.write_text("a,b\n" + "1,2\n" * 3000 + "3,4,5\n")
    with pytest.raises(InvalidInput, match=r"cannot read .*late\.csv as CSV after row \d+: CSV parse error"):
        CsvSource(late, block_size=4096).read()


def test_parquet_decimals_come_as_floats(tmp_path: Path) -> None:
    import decimal

    pd.DataFrame({"p": [decimal.Decimal("1.25"), None]}).to_parquet(tmp_path / "d.parquet")
    source = open_source(tmp_path / "d.parquet")
    assert source.schema().types == [pa.float64()]
    assert source.read()["p"].dtype == "float64"
