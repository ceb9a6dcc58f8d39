"""``shipyard monitor`` as a real subprocess: one-line errors, exit codes, the table and the JSON report.

The log is written by the real prediction logger (the server's writer), so no server is needed here; the
serving path is covered by ``tests/monitoring/test_monitor.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.cli.test_cli import run, run_many
from tests.monitoring.conftest import MODEL, frame, pipeline, records, truth

import shipyard
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings


def log_predictions(home: Path, model: object, X: pd.DataFrame, *, version: int = 1, name: str = MODEL) -> None:
    """Write ``X`` and the model's answers to the prediction log, as the server would (20 rows a request)."""
    logger = PredictionLogger(LogSettings(), home=home)
    logger.start()
    for i, start in enumerate(range(0, len(X), 20)):
        part = X.iloc[start : start + 20]
        proba = model.predict_proba(part)  # type: ignore[attr-defined]
        logger.record(
            name, version, "native", f"req-{version}-{i}", records(part), list(X.columns),
            model.predict(part), proba, 0.001 + 0.0001 * i,  # type: ignore[attr-defined]
        )
    logger.close()


@pytest.fixture
def registered(home: Path) -> object:
    """``shift`` version 1, registered with its training rows (so with a reference profile)."""
    X = frame(3000, seed=0)
    model = pipeline(X, truth(X, seed=0))
    shipyard.register(model, MODEL, X=X, y=truth(X, seed=0))
    return model


def test_monitor_errors_are_one_line(home: Path, registered: object) -> None:
    bare = pipeline(frame(300, seed=1), truth(frame(300, seed=1), seed=1))
    shipyard.register(bare, "bare")  # no X: no reference profile
    log_predictions(home, bare, frame(200, seed=2), name="bare")
    unknown, no_log, no_profile, bad_window, bad_version = run_many(
        home,
        ["monitor", "nope"],
        ["monitor", MODEL],
        ["monitor", "bare"],
        ["monitor", MODEL, "--window", "soon"],
        ["monitor", MODEL, "--version", "7"],
    )
    assert "model 'nope' is not registered" in unknown.failed().error_line
    assert "no logged predictions of shift" in no_log.failed().error_line
    assert "register it with X=" in no_profile.failed().error_line
    assert "bare:1 has no reference profile" in no_profile.error_line
    assert "--window expects a duration such as 30m, 1h or 7d, got 'soon'" in bad_window.failed().error_line
    assert "7" in bad_version.failed().error_line


def test_monitor_table_and_exit_codes(home: Path, registered: object) -> None:
    log_predictions(home, registered, frame(1000, seed=3))
    healthy = run(home, "monitor", MODEL, "--last", "1000").ok()
    for feature in ("amount", "hour", "channel", "prediction"):
        assert feature in healthy.out
    assert "no alerts" in healthy.out and "p95 ms" in healthy.out
    assert "no feedback labels" in healthy.out

    log_predictions(home, registered, frame(1000, seed=4, shift=1.0))
    shifted, older, strict, lenient = run_many(
        home,
        ["monitor", MODEL, "--last", "1000", "--json"],
        ["monitor", MODEL, "--window", "1h", "--json"],  # both batches: half shifted
        ["monitor", MODEL, "--last", "1000", "--min-samples", "5000", "--json"],
        ["monitor", MODEL, "--last", "1000", "--psi-warn", "50", "--psi-alert", "100", "--p-value", "1e-300"],
    )
    report = json.loads(shifted.failed(1).out)
    amount = next(d for d in report["drift"] if d["feature"] == "amount")
    assert amount["verdict"] == "alert" and report["rows"] == 1000
    assert report["latency"]["1"]["count"] == 50 and report["traffic"] == {"1": 1000}
    assert json.loads(older.failed(1).out)["rows"] == 2000
    insufficient = json.loads(strict.ok().out)  # too few samples for a verdict: no alert, exit 0
    assert {d["verdict"] for d in insufficient["drift"]} == {"insufficient"}
    lenient.ok()


def test_monitor_checks_the_version_asked_for(home: Path, registered: object) -> None:
    X2 = frame(3000, seed=10, shift=1.0)  # version 2 was trained on the shifted distribution
    model2 = pipeline(X2, truth(X2, seed=10))
    shipyard.register(model2, MODEL, X=X2, y=truth(X2, seed=10))
    log_predictions(home, registered, frame(500, seed=11), version=1)
    log_predictions(home, model2, frame(500, seed=12, shift=1.0), version=2)
    newest, first = run_many(home, ["monitor", MODEL, "--json"], ["monitor", MODEL, "--version", "1", "--json"])
    by_default = json.loads(newest.ok().out)
    assert by_default["version"] == 2 and by_default["traffic"] == {"1": 500, "2": 500}
    pinned = json.loads(first.ok().out)
    assert pinned["version"] == 1 and pinned["rows"] == 500 and pinned["traffic"] == {"1": 500}
    assert np.isclose(sum(d["samples"] for d in pinned["drift"] if d["feature"] == "amount"), 500)
