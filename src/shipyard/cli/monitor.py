"""``shipyard monitor NAME``: drift per feature, latency and live accuracy over a window of the prediction log.

Exit code 1 when any alert fires, so a scheduler (cron, Airflow) can act on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.common import get_service, renamed, since_window
from shipyard.cli.output import cell, console, err_console, number, say, table
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.monitoring.monitor import MonitorReport

VERDICT_STYLE = {"ok": "green", "warn": "yellow", "alert": "bold red", "insufficient": "dim"}


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no such numbers).

    >>> json_safe({"a": [1.0, float("nan")]})
    {'a': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _figure(value: float | None, digits: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, digits)


def print_report(report: MonitorReport) -> None:
    """The report as Rich tables: drift per feature, latency and traffic per version, accuracy per version."""
    out = console()
    version = f":{report.version}" if report.version is not None else ""
    drift = table(
        "feature",
        "kind",
        "PSI",
        "test",
        "statistic",
        "p-value",
        "samples",
        "verdict",
        title=f"{report.model}{version}: drift over the {report.window} ({report.rows} predictions)",
    )
    for d in report.drift:
        verdict = cell(d.verdict)
        verdict.stylize(VERDICT_STYLE.get(d.verdict, ""))
        drift.add_row(
            cell(d.feature),
            cell(d.kind),
            cell(_figure(d.psi)),
            cell(d.test),
            cell(_figure(d.statistic)),
            cell(_figure(d.p_value, ".3g")),
            cell(d.samples),
            verdict,
        )
    out.print(drift)
    latency = table("version", "predictions", "requests", "p50 ms", "p95 ms", "p99 ms", title="latency and traffic")
    for v in sorted(set(report.traffic) | set(report.latency)):
        stats = report.latency.get(v, {})
        latency.add_row(
            cell(v),
            cell(report.traffic.get(v, 0)),
            cell(int(stats.get("count", 0))),
            *(cell(_figure(stats.get(k), ".2f")) for k in ("p50_ms", "p95_ms", "p99_ms")),
        )
    out.print(latency)
    if report.accuracy:
        names = [k for k in report.accuracy[0] if k not in ("version", "window_start", "n")]
        accuracy = table("version", "labelled", *names, title="live accuracy (feedback labels)")
        for row in report.accuracy:
            values = [cell(number(row[k]) if isinstance(row.get(k), float) else row.get(k)) for k in names]
            accuracy.add_row(cell(row["version"]), cell(int(row.get("n", 0))), *values)
        out.print(accuracy)
    else:
        say("live accuracy: no feedback labels joined to these predictions")
    if report.alerts:
        for alert in report.alerts:
            err_console().print(f"alert: {alert}", markup=False, soft_wrap=True, style="bold red")
    else:
        say("no alerts")


def monitor(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud.")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Predictions since then: a DURATION ago (30m, 1h, 7d) or an ISO time."),
    ] = None,
    window: Annotated[str | None, typer.Option("--window", hidden=True, help="Old name of --since.")] = None,
    last: Annotated[int | None, typer.Option("--last", help="The last N logged predictions.", min=1)] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Check this version (default: the newest in the window).")
    ] = None,
    psi_warn: Annotated[
        float | None, typer.Option("--psi-warn", help="PSI from which drift warns (default: as the server, 0.1).")
    ] = None,
    psi_alert: Annotated[
        float | None, typer.Option("--psi-alert", help="PSI from which drift alerts (default: as the server, 0.2).")
    ] = None,
    p_value: Annotated[
        float | None,
        typer.Option("--p-value", help="Significance level of the KS / chi2 tests (default: as the server, 0.05)."),
    ] = None,
    min_samples: Annotated[
        int | None,
        typer.Option(
            "--min-samples", help="Fewer live values than this: no verdict (default: as the server, 100).", min=1
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="serve.yaml whose logging section says where the log is.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Drift per feature (PSI, KS / chi2), latency and live accuracy of NAME's logged predictions.

    Exits with 1 when any alert fires, 0 otherwise. The thresholds are the server's: the monitoring section of
    --config serve.yaml (else the defaults), each overridden by its option when given.
    """
    from shipyard.config import Settings
    from shipyard.evaluation.drift import DriftThresholds
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.monitor import monitor as run_monitor

    section = None
    if config is not None:
        from shipyard.serving.settings import ServeSettings

        section = ServeSettings.from_file(config).monitoring
    thresholds = DriftThresholds.from_settings(
        section, psi_warn=psi_warn, psi_alert=psi_alert, p_value=p_value, min_samples=min_samples
    )
    if not 0.0 < thresholds.p_value < 1.0:
        raise InvalidInput(f"--p-value must be between 0 and 1, got {thresholds.p_value:g}")
    if thresholds.psi_warn < 0 or thresholds.psi_alert < thresholds.psi_warn:
        raise InvalidInput(
            f"--psi-alert ({thresholds.psi_alert:g}) must be at least --psi-warn ({thresholds.psi_warn:g}), both >= 0"
        )
    span = since_window(renamed("--since", since, "--window", window), "--since" if window is None else "--window")
    service = get_service()
    log = PredictionLog.from_settings(Settings(), config)
    report = run_monitor(service, log, name, window=span, last=last, version=version, thresholds=thresholds)
    if as_json:
        typer.echo(json.dumps(json_safe(report.to_dict())))
    else:
        print_report(report)
    if report.alerts:
        raise typer.Exit(1)
