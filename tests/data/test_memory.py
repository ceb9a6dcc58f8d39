"""Reading a Parquet file much larger than a chunk keeps memory bounded by a few chunks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
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
    rows, sizes, arrow_peak, total = 0, set(), 0, 0.0
    for chunk in source.iter_batches(int(sys.argv[2])):
        rows += len(chunk)
        sizes.add(len(chunk))
        total += float(chunk["f0"].sum())
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
    print(json.dumps({"rows": rows, "sizes": sorted(sizes), "before_mb": before, "after_mb": rss_mb(),
                      "arrow_peak_mb": arrow_peak / 2**20}))
    """
)


def test_parquet_read_in_chunks_uses_a_few_chunks_of_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([pa.field(f"f{i}", pa.float64()) for i in range(COLUMNS)])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for _ in range(ROWS // GROUP):
            block = rng.random((COLUMNS, GROUP))
            writer.write_table(pa.table(list(block), schema=schema))
    data_mb = ROWS * COLUMNS * 8 / MB
    chunk_mb = CHUNK * COLUMNS * 8 / MB
    assert path.stat().st_size / MB > 250

    out = subprocess.run(
        [sys.executable, "-c", READER, str(path), str(CHUNK)], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(out.stdout)
    assert report["rows"] == ROWS
    assert report["sizes"] == [CHUNK]
    growth = report["after_mb"] - report["before_mb"]
    # A chunk is ~23 MB; the file holds ~275 MB of values. Allow a few chunks plus a row group or two.
    assert growth < 8 * chunk_mb, report
    assert growth < data_mb / 2, report
    assert report["arrow_peak_mb"] < 8 * chunk_mb, report
