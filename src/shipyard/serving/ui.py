"""The dashboard at ``/ui``: served models, live traffic and latency, drift verdicts and accuracy.

One static page (``dashboard.html`` in this package) polls two JSON routes and redraws its charts with
``Plotly.react``; plotly.js itself is served from the installed plotly package, so the page needs no network
beyond this server. The statistics come from the prediction log (the same ``monitor`` and ``timeseries`` as
``shipyard monitor`` and ``shipyard report``), computed in a worker thread and cached for
:data:`CACHE_SECONDS` so that many open dashboards cost one computation.

Every route under ``/ui`` needs the ``admin`` scope when auth is on (:data:`shipyard.serving.scopes.ROUTE_SCOPES`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import InvalidInput
from shipyard.serving.jsonio import json_response

if TYPE_CHECKING:
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.monitor import MonitorReport
    from shipyard.serving.dataplane import DataPlane
    from shipyard.serving.settings import ServeSettings

CACHE_SECONDS = 5.0
MAX_CACHED = 256
DEFAULT_MINUTES = 30
DEFAULT_EVERY = "10s"
MAX_MINUTES = 7 * 24 * 60
STATIC_MAX_AGE = 86_400


@cache
def dashboard_html() -> bytes:
    """The dashboard page, read once from the package."""
    return (resources.files("shipyard.serving") / "dashboard.html").read_bytes()


@cache
def plotly_js() -> bytes:
    """``plotly.min.js`` from the installed plotly package, read once."""
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"?{name} must be a whole number from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"?{name} must be from {low} to {high}, got {value}")
    return value


def _every_param(request: Request) -> str:
    """The time bucket of the charts, a pandas offset alias such as ``10s``, ``1min`` or ``1h``."""
    import pandas as pd

    text = request.query_params.get("every") or DEFAULT_EVERY
    try:
        pd.tseries.frequencies.to_offset(text)
        step = pd.Timedelta(text)
    except (ValueError, TypeError):
        raise InvalidInput(f"?every must be a time step such as 10s, 1min or 1h, got {text!r}") from None
    if step < pd.Timedelta(seconds=1):
        raise InvalidInput(f"?every must be at least one second, got {text!r}")
    return text


class Dashboard:
    """The dashboard's data: served models from the repository, statistics from the prediction log."""

    def __init__(self, dataplane: DataPlane, settings: ServeSettings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self._log: PredictionLog | None = None
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    def prediction_log(self) -> PredictionLog:
        """The reader over the log this server writes (its ``logging`` settings)."""
        if self._log is None:
            from shipyard.config import Settings
            from shipyard.monitoring.logs import PredictionLog
            from shipyard.monitoring.predlog import log_root

            logging = self.settings.logging
            writer = self.dataplane.prediction_log
            sensitive, personal = logging.sensitive, logging.hash_personal_columns
            if logging.backend == "postgres":
                self._log = PredictionLog(
                    postgres_url=logging.postgres_url, sensitive=sensitive, hash_personal=personal
                )
            elif writer is not None:
                self._log = PredictionLog(writer.root, sensitive=sensitive, hash_personal=personal)
            else:
                root = log_root(logging, Settings().resolved_home())
                self._log = PredictionLog(root, sensitive=sensitive, hash_personal=personal)
        return self._log

    async def cached(self, key: tuple[Any, ...], compute: Any) -> Any:
        """``compute()`` run in a worker thread, its result shared for :data:`CACHE_SECONDS` per ``key``."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent pollers wait for one computation
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            value = await asyncio.to_thread(compute)
            now = time.monotonic()
            if len(self._cache) >= MAX_CACHED:  # many distinct queries: keep only the fresh answers
                for stale in [k for k, (expires, _) in self._cache.items() if expires <= now]:
                    del self._cache[stale]
                    self._locks.pop(stale, None)
            self._cache[key] = (now + CACHE_SECONDS, value)
            return value

    def models(self) -> dict[str, Any]:
        """Served models with their versions and aliases (blocking: registry reads)."""
        repo = self.dataplane.repository
        models = []
        for name in repo.served_names():
            deployment = repo.deployment(name)
            current = deployment.current
            registered = repo.service.get_model(name)
            versions = repo.service.list_versions(name)
            models.append(
                {
                    "name": name,
                    "ref": str(deployment.ref),
                    "served_version": current.version if current else None,
                    "flavor": current.model.flavor if current else None,
                    "ready": current is not None,
                    "aliases": dict(registered.aliases),
                    "versions": [
                        {
                            "version": v.version,
                            "flavor": v.flavor,
                            "created_at": v.created_at.isoformat(),
                            "aliases": list(v.aliases),
                            "profiled": getattr(v, "profile", None) is not None,
                        }
                        for v in sorted(versions, key=lambda v: v.version, reverse=True)
                    ],
                }
            )
        return {"models": models, "logging": self.settings.logging.enabled}

    def model(self, name: str, *, last: int, minutes: int, every: str, version: int | None) -> dict[str, Any]:
        """Drift, accuracy, latency and traffic of ``name`` from its log (blocking: reads and statistics)."""
        from shipyard.evaluation.drift import DriftThresholds
        from shipyard.monitoring.monitor import NoPredictions, monitor, timeseries
        from shipyard.monitoring.report import figures, verdict_counts, verdict_rows

        settings = self.settings.monitoring
        thresholds = DriftThresholds(
            psi_warn=settings.psi_warn, psi_alert=settings.psi_alert, p_value=settings.p_value,
            min_samples=settings.min_samples,
        )
        log = self.prediction_log()
        service = self.dataplane.repository.service
        report: MonitorReport | None = None
        notice = None
        try:
            report = monitor(service, log, name, last=last, version=version, thresholds=thresholds)
        except (NoPredictions, InvalidInput) as exc:  # nothing logged yet, or no reference profile
            notice = exc.message
        since = datetime.now(UTC) - timedelta(minutes=minutes)
        series = timeseries(log, name, since=since, every=every)
        return {
            "name": name,
            "notice": notice,
            "version": report.version if report else None,
            "window": report.window if report else None,
            "rows": report.rows if report else 0,
            "alerts": list(report.alerts) if report else [],
            "verdicts": verdict_rows(report) if report else [],
            "verdict_counts": verdict_counts(report) if report else {},
            "latency": {str(v): stats for v, stats in sorted(report.latency.items())} if report else {},
            "traffic": {str(v): n for v, n in sorted(report.traffic.items())} if report else {},
            "accuracy": list(report.accuracy) if report else [],
            "figures": figures(report, series),
            "series_since": since.isoformat(),
            "every": every,
            "computed_at": datetime.now(UTC).isoformat(),
        }


def router(dataplane: DataPlane, settings: ServeSettings) -> APIRouter:
    """The ``/ui`` routes over ``dataplane``: the page, plotly.js, and the page's JSON."""
    api = APIRouter(tags=["dashboard"])
    dashboard = Dashboard(dataplane, settings)

    @api.get("/ui", include_in_schema=False)
    async def page() -> Response:
        html = await asyncio.to_thread(dashboard_html)
        return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @api.get("/ui/static/plotly.min.js", include_in_schema=False)
    async def plotly() -> Response:
        body = await asyncio.to_thread(plotly_js)
        return Response(body, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": f"private, max-age={STATIC_MAX_AGE}"})

    @api.get("/ui/api/models", summary="Dashboard: served models, their versions and aliases")
    async def models() -> Response:
        return json_response(await dashboard.cached(("models",), dashboard.models))

    @api.get("/ui/api/models/{name}", summary="Dashboard: traffic, latency, drift and accuracy of one model")
    async def model(request: Request, name: str) -> Response:
        dataplane.repository.deployment(name)  # 404 naming the served models
        last = _int_param(request, "last", settings.monitoring.window_rows, 1, 10_000_000)
        minutes = _int_param(request, "minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
        version_text = request.query_params.get("version")
        version = _int_param(request, "version", 0, 1, 2**31 - 1) if version_text else None
        every = _every_param(request)

        def compute() -> dict[str, Any]:
            return dashboard.model(name, last=last, minutes=minutes, every=every, version=version)

        return json_response(await dashboard.cached(("model", name, last, minutes, every, version), compute))

    return api
