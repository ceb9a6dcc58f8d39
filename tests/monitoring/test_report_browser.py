"""``shipyard report`` end to end: a real prediction log, the command, and the HTML opened offline in Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

pytestmark = pytest.mark.slow

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
FEATURES = ["amount", "hour", "channel"]


def training_frame(n: int, rng: np.random.Generator, shift: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    X = pd.DataFrame(
        {
            "amount": rng.normal(100.0 + shift, 20.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "channel": rng.choice(["web", "pos", "app"], n),
        }
    )
    y = pd.Series((X["amount"] + rng.normal(0, 10, n) > 110).astype(int), name="is_fraud")
    return X, y


@pytest.fixture
def logged(home: Path) -> dict[str, Any]:
    """``fraud`` v1 and v2 registered with their training data; v1 served normal rows, v2 rows shifted by +1 std."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(11)
    X, y = training_frame(3000, rng)
    pipe = make_pipeline(
        ColumnTransformer([("num", "passthrough", ["amount", "hour"]),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"])]),
        LogisticRegression(max_iter=500),
    ).fit(X, y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    logger = PredictionLogger(LogSettings(flush_interval_s=0.05), home=home)
    logger.start()
    live: dict[int, list[pd.DataFrame]] = {1: [], 2: []}
    labels: list[tuple[str, Any]] = []
    try:
        for i in range(40):
            version = 1 if i < 10 else 2
            rows, truth = training_frame(20, rng, shift=20.0 if version == 2 else 0.0)
            rid = f"req{i:03d}"
            logger.record("fraud", version, "native", rid, rows.to_dict("records"), FEATURES,
                          pipe.predict(rows), pipe.predict_proba(rows), float(rng.uniform(0.001, 0.02)))
            live[version].append(rows)
            if i % 2 == 0:
                labels += [(f"{rid}/{j}", int(truth.iloc[j])) for j in range(len(rows))]
        logger.record_labels("fraud", labels)
    finally:
        logger.close()
    return {"pipe": pipe, "live": {v: pd.concat(f, ignore_index=True) for v, f in live.items()}}


def test_report_renders_every_chart_offline(logged: dict[str, Any], tmp_path: Path, chromium: Any,
                                            artifacts: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "fraud", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "800 predictions" in result.output and "amount=alert" in result.output

    # the live fractions of amount over the reference bins of version 2, computed here from the rows sent
    profile = shipyard.connect().resolve("fraud:2").profile
    edges = np.asarray(profile["features"]["amount"]["edges"], dtype=float)
    amounts = logged["live"][2]["amount"].to_numpy()
    expected = np.bincount(np.searchsorted(edges[1:-1], amounts, side="right"), minlength=len(edges) - 1)
    expected = expected / len(amounts)

    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    blocked: list[str] = []

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route("**/*", only_files)
    try:
        page.goto(out.as_uri())
        charts = page.evaluate("document.querySelectorAll('.chart').length")
        assert charts >= 3 + 4  # traffic, latency, accuracy, and drift of 3 features + prediction (+ probabilities)
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length === {charts}", timeout=120_000)
        drawn = page.evaluate(
            """Array.from(document.querySelectorAll('.chart')).map(c => {
                 const plot = c.querySelector('.js-plotly-plot');
                 return {key: c.dataset.chart, traces: plot.data.length,
                         shapes: plot.querySelectorAll('g.trace path, g.points path').length,
                         names: plot.data.map(t => t.name), y: plot.data.map(t => Array.from(t.y))};
               })"""
        )
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    finally:
        page.close()
    assert blocked == [] and errors == []
    for chart in drawn:
        assert chart["traces"] > 0 and chart["shapes"] > 0, chart["key"]
    by_key = {c["key"]: c for c in drawn}
    assert by_key["traffic"]["names"] == ["version 1", "version 2"]
    assert [sum(y) for y in by_key["traffic"]["y"]] == [200, 600]
    assert {"v1 p50", "v2 p99"} <= set(by_key["latency"]["names"])
    assert by_key["accuracy"]["names"] == ["version 1", "version 2"]
    amount = by_key["drift:amount"]
    assert amount["names"] == ["reference", "live"]
    assert amount["y"][1] == pytest.approx(expected.tolist())
    assert {"drift:hour", "drift:channel", "drift:prediction"} <= set(by_key)


def test_report_errors_are_one_line(logged: dict[str, Any], tmp_path: Path, home: Path) -> None:
    import os

    env = {**os.environ, "SHIPYARD_HOME": str(home), "NO_COLOR": "1"}
    cases = [
        (["report", "fraud", "--out", str(tmp_path / "r.html"), "--window", "1h", "--last", "5"], "not both"),
        (["report", "fraud", "--out", str(tmp_path / "r.html"), "--window", "soon"], "--window"),
        (["report", "fraud", "--out", str(tmp_path / "missing" / "r.html")], "does not exist"),
        (["report", "nosuch", "--out", str(tmp_path / "r.html")], "nosuch"),
        (["report", "fraud", "--out", str(tmp_path / "r.html"), "--version", "9"], "9"),
    ]
    processes = [subprocess.Popen([SHIPYARD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for args, _ in cases]
    for process, (args, needle) in zip(processes, cases, strict=True):
        _, err = process.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert process.returncode == 1, (args, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, err)
    assert not (tmp_path / "r.html").exists()
