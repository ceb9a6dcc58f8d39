"""``compare NAME --shadow`` counts rows against the traffic served while the shadow ran, and says which
tolerances its verdict used: a classifier whose labels all agree passes unless a probability atol is given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

COLUMNS, TYPES = ["amount", "channel"], ["float64", "string"]


def _log(root: Path) -> None:
    """100 requests before the shadow existed, then 100 of which every second is shadowed (same labels,
    probabilities 0.01 apart)."""
    rng = np.random.default_rng(0)
    logger = PredictionLogger(LogSettings(path=root), home=root)
    logger.start()
    for i in range(200):
        p = float(rng.choice([rng.uniform(0.6, 0.9), rng.uniform(0.1, 0.4)]))
        data = [{"amount": float(i), "channel": "web"}]
        label = np.array([int(p > 0.5)])
        logger.record("fraud", 3, "native", f"r{i}", data, COLUMNS, label, np.array([[1 - p, p]]), 0.002,
                      input_types=TYPES)  # fmt: skip
        if i >= 100 and i % 2 == 0:
            q = p + 0.01
            logger.record("fraud", 4, "shadow", f"r{i}", data, COLUMNS, label, np.array([[1 - q, q]]), 0.004,
                          input_types=TYPES)  # fmt: skip
    logger.close()


def _compare(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["compare", "fraud", "--shadow", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output


def test_shadow_counts_and_the_tolerances_behind_the_verdict(home: Path) -> None:
    _log(home / "logs")

    code, out = _compare("--since", "1h", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["primary_rows"], report["served_rows"], report["shadow_rows"], report["rows"]) == (200, 100, 50, 50)
    assert report["sampled"] == 0.5 and report["coverage"] == 0.5
    assert report["agreement"] == 1.0 and report["passed"] is True
    assert report["atol"] is None and report["atol_source"] is None  # probabilities not held to a tolerance

    code, out = _compare()
    assert code == 0, out
    assert "50 (50.0% of the rows served meanwhile)" in out and "100 (of 200 rows in the window)" in out
    assert "probability atol: not checked (give --atol to check it)" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS: labels agree on 100.00% of 50 rows (probabilities not")

    code, out = _compare("--atol", "0.001")
    assert code == 1
    assert "probability atol 0.001 (--atol)" in out
    assert out.rstrip().splitlines()[-1].startswith("FAIL: max absolute probability difference 0.01")
