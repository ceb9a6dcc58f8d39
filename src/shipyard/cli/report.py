"""``shipyard report``: a self-contained HTML monitoring report of a model, from its prediction log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.common import get_service, renamed, since_window
from shipyard.cli.output import say
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.evaluation.drift import DriftThresholds
    from shipyard.monitoring.logs import PredictionLog

CHART_BUCKETS = 60
"""About this many time buckets on the report's time charts."""
STEPS = (
    ("1s", 1),
    ("5s", 5),
    ("10s", 10),
    ("30s", 30),
    ("1min", 60),
    ("5min", 300),
    ("10min", 600),
    ("30min", 1800),
    ("1h", 3600),
    ("6h", 21600),
    ("1D", 86400),
    ("7D", 604800),
)


def chart_step(span: timedelta) -> str:
    """The smallest time bucket that splits ``span`` into at most about :data:`CHART_BUCKETS` buckets.

    >>> chart_step(timedelta(hours=1)), chart_step(timedelta(seconds=20)), chart_step(timedelta(days=30))
    ('1min', '1s', '1D')
    """
    seconds = span.total_seconds() / CHART_BUCKETS
    return next((alias for alias, size in STEPS if size >= seconds), STEPS[-1][0])


def _thresholds(config: Path | None) -> DriftThresholds:
    """The drift thresholds of the serve config's ``monitoring`` section (defaults without a config)."""
    from shipyard.evaluation.drift import DriftThresholds

    if config is None:
        return DriftThresholds()
    from shipyard.serving.settings import ServeSettings

    return DriftThresholds.from_settings(ServeSettings.from_file(config).monitoring)


def _series_since(
    log: PredictionLog, name: str, window: timedelta | None, last: int | None, version: int | None
) -> datetime | None:
    """Where the time charts start: the window's start, else the time of the oldest prediction looked at."""
    if window is not None:
        return datetime.now(UTC) - window
    where = f"where version = {int(version)}" if version is not None else ""
    limit = f"limit {int(last)}" if last is not None else ""
    table = log.query(name, f"select min(ts) from (select ts from predictions {where} order by ts desc {limit})")
    oldest = table.column(0)[0].as_py() if table.num_rows else None
    if oldest is None:
        return None
    return oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def report(
    name: Annotated[str, typer.Argument(help="The model, e.g. fraud.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="PATH", help="The HTML file to write.", dir_okay=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Predictions since then: a DURATION ago (30m, 1h, 7d) or an ISO time."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", hidden=True, help="Old name of --output.", dir_okay=False)
    ] = None,
    window: Annotated[str | None, typer.Option("--window", hidden=True, help="Old name of --since.")] = None,
    last: Annotated[
        int | None, typer.Option(min=1, help="The last N predictions (default: everything logged).", show_default=False)
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="Only this version (default: drift of the newest version logged).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="serve.yaml: where the server logs predictions, and its thresholds."),
    ] = None,
) -> None:
    """Write a self-contained HTML report (opens offline): drift per feature, accuracy, latency, traffic."""
    from shipyard.config import Settings
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.monitor import monitor, timeseries
    from shipyard.monitoring.report import render_report

    out = renamed("--output", output, "--out", out)
    if out is None:
        raise typer.BadParameter("give the HTML file to write, e.g. --output report.html", param_hint="'--output'")
    since_option = "--since" if window is None else "--window"
    since_text = renamed("--since", since, "--window", window)
    if since_text is not None and last is not None:
        raise InvalidInput(f"give either {since_option} or --last, not both")
    if not out.parent.exists():
        raise InvalidInput(f"cannot write {out}: folder {out.parent} does not exist; create it first")
    span = since_window(since_text, since_option)
    service = get_service()
    log = PredictionLog.from_settings(Settings(), config)
    result = monitor(service, log, name, window=span, last=last, version=version, thresholds=_thresholds(config))
    start = _series_since(log, name, span, last, version)
    every = chart_step(datetime.now(UTC) - start) if start is not None else "1min"
    series = timeseries(log, name, since=start, every=every)
    profile = getattr(service.resolve(f"{name}:{result.version}"), "profile", None) if result.version else None
    html = render_report(result, series, profile)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    verdicts = ", ".join(f"{d.feature}={d.verdict}" for d in result.drift if d.verdict != "ok")
    say(
        f"wrote {out} ({result.rows} predictions, {result.window}; "
        f"{len(result.drift)} features checked{': ' + verdicts if verdicts else ', all ok'}; "
        f"{len(result.alerts)} alerts)"
    )
