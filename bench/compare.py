"""Model-equivalence benchmark: ``shipyard.evaluation.compare`` of a scikit-learn pipeline and its ONNX export.

Over ``--rows`` rows of ``--features`` synthetic float features in a Parquet file, for each chunk size in
``--chunks``, a fresh process runs ``compare`` and reports its time, rows/s and RSS growth while comparing
(memory should follow the chunk size, not the rows). The ``/ceiling`` column is the time of scoring the
same rows already in memory with both models in one call each (no reading, no bookkeeping), measured after
the compare, divided by the compare time. Run by hand, not in CI::

    python bench/compare.py                                     # 1 M rows, chunks of 10,000 / 100,000 / all
    python bench/compare.py --rows 200000 --chunks 50000        # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def setup(folder: Path, rows: int, features: int) -> None:
    """Register ``m:1`` (scikit-learn) and ``m:2`` (its ONNX export) and write ``big.parquet``."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import shipyard

    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(features)]
    X = pd.DataFrame(rng.normal(size=(5000, features)), columns=columns)
    y = (X["f0"] + X["f1"] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    service = shipyard.connect(shipyard.Settings(home=folder / "home"))
    service.register(model, "m", X=X)
    service.register(to_onnx(model, X.to_numpy(np.float32)[:1], options={"zipmap": False}), "m", X=X.to_numpy("f4"))
    service.store.close()
    big = pd.DataFrame(rng.normal(size=(rows, features)), columns=columns)
    big.to_parquet(folder / "big.parquet", row_group_size=100_000)
    big.iloc[:100].to_parquet(folder / "small.parquet")


def one(folder: Path, chunk_rows: int) -> dict[str, Any]:
    """Run one comparison in this (fresh) process and measure it."""
    import psutil

    import shipyard
    from shipyard.evaluation.compare import compare

    service = shipyard.connect(shipyard.Settings(home=folder / "home"))
    compare(service, "m:1", "m:2", folder / "small.parquet")  # imports and first calls out of the measurement
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    result = compare(service, "m:1", "m:2", folder / "big.parquet", atol=1e-5, chunk_rows=chunk_rows)
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    data = pd.read_parquet(folder / "big.parquet")  # after the compare, so its memory is not reused
    a, b = service.load("m:1"), service.load("m:2")
    started = time.perf_counter()
    a.predict_proba(data)
    b.predict_proba(data)
    ceiling = time.perf_counter() - started
    return {
        "chunk_rows": chunk_rows,
        "rows": result.rows,
        "seconds": seconds,
        "ceiling_seconds": ceiling,
        "rss_growth_mib": (peak[0] - base) / 2**20,
        "max_abs_diff": result.max_abs_diff,
        "verdict": result.verdict,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--chunks", default="10000,100000,0", help="chunk sizes; 0 means all rows in one chunk")
    parser.add_argument("--one", nargs=2, metavar=("FOLDER", "CHUNK_ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(Path(args.one[0]), int(args.one[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup(folder, args.rows, args.features)
        header = f"{'chunk rows':>11} {'rows':>10} {'seconds':>8} {'rows/s':>11} {'/ceiling':>9} {'RSS +MiB':>9}"
        print(f"{header}  max diff")
        for text in args.chunks.split(","):
            chunk = int(text) or args.rows
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(folder), str(chunk)], capture_output=True, text=True, check=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{r['chunk_rows']:>11,} {r['rows']:>10,} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>11,.0f} "
                f"{r['ceiling_seconds'] / r['seconds']:>9.2f} {r['rss_growth_mib']:>9.0f}  {r['max_abs_diff']:.3g} "
                f"({r['verdict']})"
            )


if __name__ == "__main__":
    main()
