"""The HTML report: self-contained (plotly.js inlined once, nothing fetched), user strings escaped, all charts."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs

from shipyard.evaluation.drift import drift_report
from shipyard.evaluation.profile import build_profile
from shipyard.monitoring.monitor import MonitorReport, latency_summary
from shipyard.monitoring.report import figures, render_report

EVIL = "<img src=x onerror=alert(1)>"


def drifted_report(model: str = "fraud") -> tuple[MonitorReport, dict[str, Any], dict[str, Any]]:
    """A report computed from a real profile and real drift: ``amount`` shifted by one std, a hostile category."""
    rng = np.random.default_rng(7)
    train = pd.DataFrame({"amount": rng.normal(100, 20, 2000), "channel": rng.choice(["web", EVIL, "pos"], 2000)})
    live = pd.DataFrame({"amount": rng.normal(120, 20, 800), "channel": rng.choice(["web", EVIL, "pos"], 800)})
    profile = build_profile(train, predictions=(train["amount"] > 110).astype(int).to_numpy(), classes=[0, 1])
    live["prediction"] = (live["amount"] > 110).astype(int)
    drift = drift_report(profile, live)
    latencies = rng.gamma(2.0, 2.0, 800)
    report = MonitorReport(
        model=model, version=2, window="last 1h", rows=800, drift=drift,
        accuracy=[{"version": 2, "window_start": None, "n": 50, "accuracy": 0.9}],
        latency={2: latency_summary(latencies)}, traffic={2: 800},
        alerts=[f"{d.feature}: drifted" for d in drift if d.verdict == "alert"],
    )
    series = {
        "traffic": [{"t": f"2026-01-01T00:0{i}:00+00:00", "version": 2, "count": 100 + i} for i in range(8)],
        "latency": [{"t": f"2026-01-01T00:0{i}:00+00:00", "version": 2, "p50_ms": 3.0, "p95_ms": 7.0,
                     "p99_ms": 9.0} for i in range(8)],
        "accuracy": [{"t": f"2026-01-01T00:0{i}:00+00:00", "version": 2, "n": 6, "accuracy": 0.5 + i / 20}
                     for i in range(8)],
    }
    return report, series, profile


def embedded_figures(html: str) -> list[list[dict[str, Any]]]:
    """The trace lists plotly's ``newPlot`` calls receive in the page."""
    return [json.loads(m) for m in re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', html, re.S)]


def test_report_is_self_contained_and_escapes_user_strings() -> None:
    report, series, profile = drifted_report(model="<script>alert('m')</script>")
    html = render_report(report, series, profile)
    bundle = get_plotlyjs()
    assert html.count(bundle) == 1  # plotly.js inlined once
    page = html.replace(bundle, "")
    assert page.count("<script") == 1 + len(figures(report, series))  # the bundle, then one per chart
    assert re.search(r"<script[^>]*\bsrc=", page) is None and "http" not in page.replace("http-equiv", "")
    assert "<script>alert('m')</script>" not in html and "&lt;script&gt;alert(&#x27;m&#x27;)&lt;/script&gt;" in html
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_report_charts_carry_the_drift_bins_and_the_series() -> None:
    report, series, profile = drifted_report()
    html = render_report(report, series, profile)
    traces = embedded_figures(html)
    assert len(traces) == 3 + len(report.drift)  # accuracy, latency, traffic and one per checked feature
    amount = next(d for d in report.drift if d.feature == "amount")
    assert amount.verdict == "alert"  # a one-std shift
    drawn = next(t for t in traces if t[0]["type"] == "bar" and t[0]["name"] == "reference"
                 and len(t[0]["x"]) == len(amount.bins) and t[0]["y"] == amount.reference)
    assert drawn[1]["y"] == amount.live
    counts = next(t for t in traces if t[0]["type"] == "bar" and t[0]["name"] == "version 2")
    assert counts[0]["y"] == [p["count"] for p in series["traffic"]]
    assert "amount: alert" in html and "last 1h" in html


def test_report_without_labels_or_profile_says_so() -> None:
    report, series, _ = drifted_report()
    empty = MonitorReport(model="fraud", version=2, window="last 5 predictions", rows=5, drift=[],
                          latency=report.latency, traffic={2: 5})
    html = render_report(empty, {"traffic": series["traffic"], "latency": [], "accuracy": []}, None)
    assert len(embedded_figures(html)) == 1  # traffic only
    assert "No labels joined yet" in html and "No reference profile" in html and "No latency data" in html
