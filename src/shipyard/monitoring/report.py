"""The monitoring report: one self-contained HTML file, and the chart specs the dashboard draws.

Charts are plain plotly figure dicts (``{"data": [...], "layout": {...}}``), built without importing plotly,
so the server's dashboard can send them as JSON and redraw them with ``Plotly.react``; the report renders
them with plotly and inlines plotly.js once, so the file opens offline.

Every user-supplied string (model names, feature names, categories) is escaped with :func:`html.escape`
before it goes into the page or into a chart (plotly decodes entities when it draws text).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.evaluation.drift import FeatureDrift
    from shipyard.monitoring.monitor import MonitorReport

Figure = dict[str, Any]

VERDICT_COLORS = {"ok": "#2e7d32", "warn": "#ef6c00", "alert": "#c62828", "insufficient": "#757575"}
PERCENTILES = (("p50_ms", "p50", "solid"), ("p95_ms", "p95", "dash"), ("p99_ms", "p99", "dot"))
ACCURACY_METRICS = ("accuracy", "f1", "roc_auc", "mae", "rmse")


def e(value: Any) -> str:
    """``value`` as text safe to put into HTML or a chart label.

    >>> e("<b>fraud</b> & co")
    '&lt;b&gt;fraud&lt;/b&gt; &amp; co'
    """
    return html.escape(str(value), quote=True)


def number(value: float | None, digits: int = 3) -> str:
    """A float for a table: rounded to ``digits`` significant decimals, ``n/a`` when missing.

    >>> number(0.123456), number(None), number(float("nan")), number(12.0)
    ('0.123', 'n/a', 'n/a', '12')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits + 2}g}"


def plot_time(value: Any) -> str:
    """A timestamp (ISO text or datetime) as the UTC wall-clock text plotly reads as a date.

    >>> plot_time("2024-05-01T12:30:00+02:00"), plot_time("2024-05-01T10:30:00")
    ('2024-05-01 10:30:00', '2024-05-01 10:30:00')
    """
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ")


def _layout(title: str, *, x: str, y: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
        "height": 340,
        "legend": {"orientation": "h", "y": -0.25},
        **extra,
    }


def drift_figure(drift: FeatureDrift) -> Figure:
    """Grouped bars of the reference and live fraction per bin, with the verdict and PSI in the title.

    >>> from types import SimpleNamespace
    >>> d = SimpleNamespace(feature="amount", verdict="warn", psi=0.15, bins=["[-inf, 1)", "[1, inf)"],
    ...                     reference=[0.5, 0.5], live=[0.3, 0.7], kind="numeric", samples=500)
    >>> fig = drift_figure(d)
    >>> [t["name"] for t in fig["data"]], fig["layout"]["title"]["text"]
    (['reference', 'live'], 'amount: warn (PSI 0.15, 500 live values)')
    """
    bins = [e(b) for b in drift.bins]
    title = f"{e(drift.feature)}: {e(drift.verdict)} (PSI {number(drift.psi)}, {drift.samples} live values)"
    data = [
        {"type": "bar", "name": "reference", "x": bins, "y": [float(v) for v in drift.reference],
         "marker": {"color": "#90a4ae"}},
        {"type": "bar", "name": "live", "x": bins, "y": [float(v) for v in drift.live],
         "marker": {"color": VERDICT_COLORS.get(drift.verdict, "#1565c0")}},
    ]
    layout = _layout(title, x="bin" if drift.kind == "numeric" else "category", y="fraction", barmode="group")
    return {"data": data, "layout": layout}


def _by_version(points: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for point in points:
        if point.get("t") is None:  # a row not bucketed in time
            continue
        grouped.setdefault(int(point["version"]), []).append(point)
    for rows in grouped.values():
        rows.sort(key=lambda p: plot_time(p["t"]))
    return dict(sorted(grouped.items()))


def traffic_figure(series: Mapping[str, Any]) -> Figure | None:
    """Predictions per time bucket, one stacked bar series per version; ``None`` without traffic."""
    grouped = _by_version(series.get("traffic") or [])
    if not grouped:
        return None
    data = [
        {"type": "bar", "name": f"version {version}", "x": [plot_time(p["t"]) for p in rows],
         "y": [int(p["count"]) for p in rows]}
        for version, rows in grouped.items()
    ]
    return {"data": data, "layout": _layout("Traffic per version", x="time (UTC)", y="predictions", barmode="stack")}


def latency_figure(series: Mapping[str, Any]) -> Figure | None:
    """p50, p95 and p99 latency per time bucket and version; ``None`` without data."""
    grouped = _by_version(series.get("latency") or [])
    if not grouped:
        return None
    data = []
    for version, rows in grouped.items():
        x = [plot_time(p["t"]) for p in rows]
        for key, label, dash in PERCENTILES:
            y = [_finite(p.get(key)) for p in rows]
            data.append({"type": "scatter", "mode": "lines+markers", "name": f"v{version} {label}", "x": x, "y": y,
                         "line": {"dash": dash}, "legendgroup": f"v{version}"})
    return {"data": data, "layout": _layout("Latency percentiles", x="time (UTC)", y="milliseconds")}


def accuracy_metric(points: Sequence[Mapping[str, Any]]) -> str | None:
    """The metric to chart: the first of accuracy, f1, roc_auc, mae, rmse that the points carry.

    >>> accuracy_metric([{"mae": 1.0, "n": 3}]), accuracy_metric([{"n": 3}])
    ('mae', None)
    """
    for metric in ACCURACY_METRICS:
        if any(_finite(p.get(metric)) is not None for p in points):
            return metric
    return None


def accuracy_figure(series: Mapping[str, Any]) -> Figure | None:
    """Live accuracy (or MAE for regressors) per time bucket and version; ``None`` without labels."""
    points = list(series.get("accuracy") or [])
    metric = accuracy_metric(points)
    if metric is None:
        return None
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": f"version {version}",
         "x": [plot_time(p["t"]) for p in rows], "y": [_finite(p.get(metric)) for p in rows],
         "customdata": [int(p.get("n") or 0) for p in rows],
         "hovertemplate": "%{y:.3f} over %{customdata} labelled predictions"}
        for version, rows in _by_version(points).items()
    ]
    return {"data": data, "layout": _layout(f"Live {metric} per version", x="time (UTC)", y=metric)}


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number_ = float(value)
    return number_ if math.isfinite(number_) else None


def figures(report: MonitorReport | None, series: Mapping[str, Any]) -> dict[str, Figure]:
    """Every chart of a report by id: ``traffic``, ``latency``, ``accuracy``, then ``drift:<feature>``.

    Charts without data (no labels yet, an empty window, no report) are left out.
    """
    charts: dict[str, Figure | None] = {
        "traffic": traffic_figure(series),
        "latency": latency_figure(series),
        "accuracy": accuracy_figure(series),
    }
    for drift in report.drift if report is not None else []:
        charts[f"drift:{drift.feature}"] = drift_figure(drift)
    return {key: fig for key, fig in charts.items() if fig is not None}


def verdict_rows(report: MonitorReport) -> list[dict[str, Any]]:
    """One JSON-safe row per checked feature: feature, kind, verdict, psi, test, p_value, samples, missing_rate."""
    return [
        {
            "feature": d.feature,
            "kind": d.kind,
            "verdict": d.verdict,
            "psi": _finite(d.psi),
            "test": d.test,
            "p_value": _finite(d.p_value),
            "samples": d.samples,
            "missing_rate": _finite(d.missing_rate),
        }
        for d in report.drift
    ]


def verdict_counts(report: MonitorReport) -> dict[str, int]:
    """How many features got each verdict, in the order alert, warn, ok, insufficient."""
    counts = {verdict: 0 for verdict in ("alert", "warn", "ok", "insufficient")}
    for d in report.drift:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    return {k: v for k, v in counts.items() if v}


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#212121}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0} th,td{padding:.3rem .7rem;border-bottom:1px solid #eee;text-align:left}
th{background:#fafafa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:.1rem .5rem;border-radius:.3rem;color:#fff}
.ok{background:#2e7d32}.warn{background:#ef6c00}.alert{background:#c62828}.insufficient{background:#757575}
.muted{color:#757575} .alerts li{color:#c62828} .charts{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.chart{border:1px solid #eee;border-radius:.4rem;padding:.3rem}
"""


def _verdict_badge(verdict: str) -> str:
    return f'<span class="verdict {e(verdict)}">{e(verdict)}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(report: MonitorReport, profile: Mapping[str, Any] | None) -> str:
    versions = sorted(report.traffic) or ([report.version] if report.version is not None else [])
    counts = verdict_counts(report)
    verdicts = ", ".join(f"{n} {_verdict_badge(v)}" for v, n in counts.items()) or "no features checked"
    checked = f"version {report.version}" if report.version is not None else "all versions"
    items = [
        f"<li>Window: {e(report.window)} ({report.rows} predictions)</li>",
        f"<li>Versions in the window: {e(', '.join(str(v) for v in versions)) or 'none'}; drift checked "
        f"against the reference profile of {e(checked)}</li>",
        f"<li>Drift verdicts: {verdicts}</li>",
    ]
    if profile is not None:
        items.append(f"<li>Reference profile: {e(profile.get('rows', '?'))} training rows, "
                     f"{len(profile.get('features') or {})} features</li>")
    else:
        items.append('<li class="muted">No reference profile for this version: drift cannot be checked</li>')
    alerts = (
        '<ul class="alerts">' + "".join(f"<li>{e(a)}</li>" for a in report.alerts) + "</ul>"
        if report.alerts
        else "<p>No alerts: healthy.</p>"
    )
    return "<ul>" + "".join(items) + "</ul><h3>Alerts</h3>" + alerts


def _verdict_table(report: MonitorReport) -> str:
    if not report.drift:
        return '<p class="muted">No drift results (no reference profile, or no predictions in the window).</p>'
    rows = [
        [e(r["feature"]), e(r["kind"]), _verdict_badge(r["verdict"]), number(r["psi"]), e(r["test"]),
         number(r["p_value"]), str(r["samples"]), number(r["missing_rate"])]
        for r in verdict_rows(report)
    ]
    return _table(["feature", "kind", "verdict", "PSI", "test", "p-value", "live values", "missing rate"], rows,
                  numeric=(3, 5, 6, 7))


def _latency_table(report: MonitorReport) -> str:
    if not report.latency and not report.traffic:
        return '<p class="muted">No predictions in the window.</p>'
    rows = []
    for version in sorted(set(report.latency) | set(report.traffic)):
        stats = report.latency.get(version, {})
        rows.append([str(version), str(report.traffic.get(version, 0)), number(stats.get("p50_ms")),
                     number(stats.get("p95_ms")), number(stats.get("p99_ms"))])
    return _table(["version", "predictions", "p50 ms", "p95 ms", "p99 ms"], rows, numeric=(1, 2, 3, 4))


def _accuracy_table(report: MonitorReport) -> str:
    if not report.accuracy:
        return '<p class="muted">No labels joined yet: send them to the feedback endpoint.</p>'
    keys = [k for k in ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")
            if any(k in row for row in report.accuracy)]
    rows = [[e(row.get("version", "")), *(number(row.get(k)) if k != "n" else e(row.get(k, "")) for k in keys)]
            for row in report.accuracy]
    return _table(["version", *keys], rows, numeric=tuple(range(1, len(keys) + 1)))


def render_report(report: MonitorReport, series: Mapping[str, Any], profile: Mapping[str, Any] | None) -> str:
    """One self-contained HTML page for ``report`` and its time ``series`` (plotly.js inlined: opens offline).

    ``series`` is :func:`shipyard.monitoring.monitor.timeseries`'s result, ``profile`` the reference profile of
    the version checked (or ``None``).
    """
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    charts = figures(report, series)

    def chart(key: str) -> str:
        div = pio.to_html(charts[key], full_html=False, include_plotlyjs=False, config={"displaylogo": False},
                          default_width="100%", default_height="340px", validate=False)
        return f'<div class="chart" data-chart="{e(key)}">{div}</div>'

    def section(key: str, empty: str) -> str:
        return chart(key) if key in charts else f'<p class="muted">{e(empty)}</p>'

    drift_charts = "".join(chart(key) for key in charts if key.startswith("drift:"))
    name = e(report.model)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>shipyard report: {name}</title>
<style>{STYLE}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Monitoring report: {name}</h1>
<p class="muted">Generated {generated} by shipyard.</p>
{_summary(report, profile)}
<h2>Drift verdicts</h2>
{_verdict_table(report)}
<h2>Drift per feature (reference vs live)</h2>
<div class="charts">{drift_charts or '<p class="muted">No drift charts.</p>'}</div>
<h2>Accuracy over time</h2>
{_accuracy_table(report)}
{section("accuracy", "No labelled predictions in the window.")}
<h2>Latency</h2>
{_latency_table(report)}
{section("latency", "No latency data in the window.")}
<h2>Traffic per version</h2>
{section("traffic", "No traffic in the window.")}
</body></html>
"""
