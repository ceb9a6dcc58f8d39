"""Registry overhead: register and load a ~10 MB scikit-learn model against plain skops dump/load.

Run: ``python bench/registry.py [--size-mb 10] [--repeat 11]``. Prints the median times and the ratios
(goal: below 1.5x for both; the two sides run alternately). The registry is a fresh SQLite file and
artifact folder in a temp dir.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _model(size_mb: float) -> Any:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 20))
    y = (X[:, 0] + rng.normal(size=20_000) > 0).astype(int)
    trees = 8
    while True:
        model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1).fit(X, y)
        import skops.io as sio

        size = len(sio.dumps(model)) / 1e6
        if size >= size_mb * 0.9:
            return model, X[:100]
        trees = max(trees + 1, int(trees * size_mb / size) + 1)


def _paired(first: Callable[[], Any], second: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median times of two operations run alternately, so both see the same machine load."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()

    import skops.io as sio

    model, sample = _model(args.size_mb)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHIPYARD_HOME"] = str(Path(tmp) / "home")
        import shipyard

        service = shipyard.connect()
        service.register(model, "warmup", X=sample)  # migrations and imports out of the timing
        service.load("warmup")
        plain_path = Path(tmp) / "plain.skops"

        def plain_dump() -> None:
            sio.dump(model, plain_path)

        def plain_load() -> None:
            sio.load(plain_path, trusted=sio.get_untrusted_types(file=plain_path))

        def register() -> None:
            service.register(model, "bench", X=sample)

        def load() -> None:
            service.load("bench")

        plain_dump()
        size_mb = plain_path.stat().st_size / 1e6
        t_dump, t_register = _paired(plain_dump, register, args.repeat)
        t_load_plain, t_load = _paired(plain_load, load, args.repeat)

    print(f"model: RandomForestClassifier, {size_mb:.1f} MB as skops; median of {args.repeat} runs")
    print(f"{'operation':<10} {'skops (s)':>10} {'shipyard (s)':>13} {'ratio':>7}")
    print(f"{'register':<10} {t_dump:>10.4f} {t_register:>13.4f} {t_register / t_dump:>6.2f}x")
    print(f"{'load':<10} {t_load_plain:>10.4f} {t_load:>13.4f} {t_load / t_load_plain:>6.2f}x")


if __name__ == "__main__":
    main()
