"""Reading a file much larger than a chunk keeps memory bounded by a few chunks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROWS = 1_200_000
COLUMNS = 30
GROUP = 150_000
CHUNK = 100_000
MB = 1 << 20

# Runs in a fresh interpreter so that the peak RSS (ru_maxrss) belongs to the read alone.
READER = textwrap.dedent(
    """
    import json, resource, sys
    import pyarrow as pa
    from shipyard.data import open_source

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    source = open_source(sys.argv[1])
    before = rss_mb()
    rows, sizes, arrow_peak, total, peaks = 0, set(), 0, 0.0, []
    for chunk in source.iter_batches(int(sys.argv[2])):
        rows += len(chunk)
        sizes.add(len(chunk))
        total += float(chunk["f0"].sum())
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        peaks.append(rss_mb())
    print(json.dumps({"rows": rows, "sizes": sorted(sizes), "before_mb": before, "after_mb": rss_mb(),
                      "quarter_mb": peaks[len(peaks) // 4], "arrow_peak_mb": arrow_peak / 2**20}))
    """
)


def test_parquet_read_in_chunks_uses_a_few_chunks_of_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([pa.field(f"f{i}", pa.float64()) for i in range(COLUMNS)])
    # Plain encoding: trying dictionaries on random floats would make writing ten times slower.
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False, write_statistics=False) as writer:
        for _ in range(ROWS // GROUP):
            block = rng.random((COLUMNS, GROUP))
            writer.write_table(pa.table(list(block), schema=schema))
    data_mb = ROWS * COLUMNS * 8 / MB
    chunk_mb = CHUNK * COLUMNS * 8 / MB
    assert path.stat().st_size / MB > 250

    report = _read_in_subprocess(path, CHUNK)
    assert report["rows"] == ROWS
    assert report["sizes"] == [CHUNK]
    growth = report["after_mb"] - report["before_mb"]
    # A chunk is ~23 MB; the file holds ~275 MB of values. Allow a few chunks plus a row group or two.
    assert growth < 8 * chunk_mb, report
    assert growth < data_mb / 1.5, report
    assert report["arrow_peak_mb"] < 8 * chunk_mb, report
    assert report["after_mb"] - report["quarter_mb"] < 2 * chunk_mb, report


def test_csv_read_in_chunks_uses_a_few_chunks_of_memory(tmp_path: Path) -> None:
    rows = 1_200_000
    path = tmp_path / "big.csv"
    rng = np.random.default_rng(1)
    schema = pa.schema([pa.field(f"f{i}", pa.int64()) for i in range(COLUMNS)])
    # One-digit ints: 2 bytes of text become 8 bytes in memory. One block of rows, written many times.
    block = pa.BufferOutputStream()
    block_rows = pa.table({f"f{i}": rng.integers(0, 10, CHUNK) for i in range(COLUMNS)}, schema=schema)
    pacsv.write_csv(block_rows, block, write_options=pacsv.WriteOptions(include_header=False))
    with path.open("wb") as fh:
        fh.write((",".join(schema.names) + "\n").encode())
        for _ in range(rows // CHUNK):
            fh.write(block.getvalue().to_pybytes())
    data_mb = rows * COLUMNS * 8 / MB
    chunk_mb = CHUNK * COLUMNS * 8 / MB

    report = _read_in_subprocess(path, CHUNK)
    assert report["rows"] == rows
    assert report["sizes"] == [CHUNK]
    # ~275 MB of values in chunks of ~23 MB: the peak is reached within the first quarter of the
    # file and does not grow after it, and stays well below the whole data.
    assert report["after_mb"] - report["quarter_mb"] < 2 * chunk_mb, report
    assert report["after_mb"] - report["before_mb"] < data_mb / 1.5, report


def _read_in_subprocess(path: Path, chunk_rows: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", READER, str(path), str(chunk_rows)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report: dict[str, float] = json.loads(out.stdout)
    return report
