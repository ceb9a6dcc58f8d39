"""Batch-scoring benchmark: shipyard's local and Dask engines against the in-process ceiling, and peak memory.

For a logistic regression and a 100-tree random forest over ``--features`` synthetic float features:

* **ceiling**: ``model.predict_proba`` over all ``--rows`` rows already in memory, in this process
  (one call; a forest's ``n_jobs`` is left at its default, one core);
* **local**: ``shipyard.batch.score`` from a Parquet file to a Parquet file on the local engine, and the
  ratio local / ceiling (goal: >= 0.8);
* **read**: only decoding the same Parquet file in chunks, with no scoring: no batch job can beat it, and
  for a fast model it sits well below the ceiling (the ``/read`` column is local / read);
* **free model**: the local job with a ``DummyClassifier`` whose ``predict_proba`` costs next to nothing:
  reading, checking, writing the output and the resume parts alone (the ``floor`` line). No model's
  local rate can beat it, so ``floor rows/s / ceiling`` bounds the ratio a model can reach;
* **dask**: the same job on a ``LocalCluster`` (one single-threaded worker process per core);
* **peak RSS**: of a fresh process scoring ``--rss-rows`` rows (default 1 M and 10 M) with the logistic
  regression; the goal is growth < 10 % from the smallest to the largest.

Rows/s cover reading, scoring and writing (``BatchResult.rows_per_second``), not loading the model or
starting the cluster. Data is generated into a temporary folder (or ``--dir``) in bounded memory.
Run by hand, not in CI::

    python bench/batch.py --rows 1000000                       # a few minutes
    python bench/batch.py                                      # 5 M rows; RSS at 1 M and 10 M
    python bench/batch.py --rows 200000 --rss-rows 100000,500000 --skip-dask   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 131_072
TRAIN_ROWS = 50_000
MODELS = ("logreg", "forest")
FLOOR = "free-model"


def feature_names(features: int) -> list[str]:
    return [f"f{i:02d}" for i in range(features)]


def make_data(path: Path, rows: int, features: int, seed: int = 0) -> None:
    """``rows`` rows of ``features`` float64 columns and an id, written one row group at a time."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return
    rng = np.random.default_rng(seed)
    names = ["tx_id", *feature_names(features)]
    schema = pa.schema([("tx_id", pa.int64()), *((n, pa.float64()) for n in names[1:])])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            block = rng.standard_normal((n, features))
            arrays = [pa.array(np.arange(start, start + n, dtype="int64"))]
            arrays += [pa.array(block[:, i]) for i in range(features)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    os.replace(tmp, path)


def train(features: int) -> dict[str, Any]:
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((TRAIN_ROWS, features)), columns=feature_names(features))
    weights = rng.standard_normal(features)
    y = ((X.to_numpy() @ weights + rng.normal(0, 1, TRAIN_ROWS)) > 0).astype("int64")
    return {
        "logreg": (LogisticRegression(max_iter=500).fit(X, y), X),
        "forest": (RandomForestClassifier(100, max_depth=12, random_state=0).fit(X, y), X),
        FLOOR: (DummyClassifier(strategy="prior").fit(X, y), X),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    ``VmHWM``, not ``getrusage``'s ``ru_maxrss``: Linux carries ``ru_maxrss`` across ``execve``, so a
    child would report its parent's size at the fork.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- one job in a fresh process
def child(args: argparse.Namespace) -> None:
    """Score ``args.input`` with ``args.model`` and print the result and this process's peak RSS as JSON."""
    import shipyard
    from shipyard.batch import score

    service = shipyard.connect(shipyard.Settings(home=args.home))
    result = score(
        args.model,
        args.input,
        args.output,
        id_column="tx_id",
        chunk_rows=args.chunk_rows,
        engine=args.engine,
        workers=args.workers,
        service=service,
    )
    print(json.dumps({**result.to_dict(), "peak_rss_mb": peak_rss_mb()}))


def parquet_read_rate(path: Path, chunk_rows: int) -> float:
    """Rows/s of only decoding ``path`` in chunks, the way the Parquet source reads it: a second reference,
    because a batch job cannot go faster than reading its input."""
    best = 0.0
    for _ in range(3):
        tick = time.perf_counter()
        rows = sum(len(b) for b in pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20).iter_batches(chunk_rows))
        best = max(best, rows / (time.perf_counter() - tick))
    return best


def run_child(home: Path, model: str, data: Path, out: Path, args: argparse.Namespace, engine: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--home", str(home), "--model", model, "--input", str(data),
               "--output", str(out), "--chunk-rows", str(args.chunk_rows), "--engine", engine]  # fmt: skip
    if args.workers:
        command += ["--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    out.unlink(missing_ok=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------- the benchmark
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows for the throughput runs (default 5 M)")
    parser.add_argument("--rss-rows", default="1000000,10000000", help="comma-separated row counts for peak RSS")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="threads / Dask workers (default: one per core)")
    parser.add_argument("--models", default=",".join(MODELS), help="logreg,forest")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="keep data here (default: a temporary folder)")
    # internal: one job in a fresh process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--home", "--model", "--input", "--output", "--engine"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    folder = args.dir or Path(tempfile.mkdtemp(prefix="shipyard-bench-batch-"))
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rss_rows = [int(r) for r in args.rss_rows.split(",") if r.strip()]
    print(f"shipyard batch benchmark: {args.rows:,} rows x {args.features} features, chunks of {args.chunk_rows:,}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; data in {folder}")  # fmt: skip

    import pandas as pd

    import shipyard

    service = shipyard.connect(shipyard.Settings(home=home))
    fitted = train(args.features)
    registered = {m.name for m in service.list_models()}
    for name in [*models, FLOOR]:
        model, X = fitted[name]
        if f"bench-{name}" not in registered:
            service.register(model, f"bench-{name}", X=X.iloc[:100])

    started = time.perf_counter()
    data = folder / f"rows-{args.rows}.parquet"
    make_data(data, args.rows, args.features)
    print(f"data: {data.stat().st_size / 1e9:.2f} GB of Parquet in {time.perf_counter() - started:.1f} s")

    read_only = parquet_read_rate(data, args.chunk_rows)
    print(f"reading the Parquet file alone (iter_batches, no scoring): {read_only:,.0f} rows/s")
    print(f"\n{'model':8} {'ceiling rows/s':>15} {'local rows/s':>13} {'ratio':>6} {'/read':>6} {'dask rows/s':>12}")
    features = pq.read_table(data, columns=feature_names(args.features)).to_pandas()
    for name in models:
        model = fitted[name][0]
        tick = time.perf_counter()
        model.predict_proba(features)
        ceiling = len(features) / (time.perf_counter() - tick)
        local = run_child(home, f"bench-{name}", data, folder / "out-local.parquet", args, "local")
        dask = (
            None
            if args.skip_dask
            else run_child(home, f"bench-{name}", data, folder / "out-dask.parquet", args, "dask")
        )
        shown = "-" if dask is None else f"{dask['rows_per_second']:,.0f}"
        ratio = local["rows_per_second"] / ceiling
        of_read = local["rows_per_second"] / read_only
        print(
            f"{name:8} {ceiling:>15,.0f} {local['rows_per_second']:>13,.0f} {ratio:>6.2f} {of_read:>6.2f} {shown:>12}",
            flush=True,
        )
        if name == "logreg":
            floor = run_child(home, f"bench-{FLOOR}", data, folder / "out-floor.parquet", args, "local")
            print(f"  floor: the same job with a free model (DummyClassifier) {floor['rows_per_second']:,.0f} rows/s, "
                  f"{floor['rows_per_second'] / ceiling:.2f} x the logreg ceiling: no logreg job can beat it",
                  flush=True)  # fmt: skip
    del features

    if rss_rows:
        print(f"\npeak RSS of a fresh process scoring with bench-{models[0]} (local engine):")
        peaks = []
        for rows in rss_rows:
            path = folder / f"rows-{rows}.parquet"
            make_data(path, rows, args.features)
            result = run_child(home, f"bench-{models[0]}", path, folder / "out-rss.parquet", args, "local")
            peaks.append(result["peak_rss_mb"])
            print(f"  {rows:>12,} rows: {result['peak_rss_mb']:8,.0f} MB  ({result['rows_per_second']:,.0f} rows/s)",
                  flush=True)  # fmt: skip
        growth = peaks[-1] / peaks[0] - 1
        print(f"  growth {rss_rows[0]:,} -> {rss_rows[-1]:,} rows: {growth:+.1%} (goal < +10%)")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other processes on the machine skew every figure)")
    del pd


if __name__ == "__main__":
    main()
