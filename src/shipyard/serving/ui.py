"""The dashboard at ``/ui``: served models, deployments and canaries, online learning, live traffic and latency,
drift verdicts and accuracy.

One static page (``dashboard.html`` in this package) polls its JSON routes and redraws its charts with
``Plotly.react``; plotly.js itself is served from the installed plotly package, so the page needs no network
beyond this server. The statistics come from the prediction log (the same ``monitor`` and ``timeseries`` as
``shipyard monitor`` and ``shipyard report``); deployments come from the registry as ``shipyard deploy show``
reads them, online learning as ``shipyard online status`` does. Everything is computed in a worker thread and cached for
:data:`CACHE_SECONDS` so that many open dashboards cost one computation.

Every route under ``/ui`` needs the ``admin`` scope when auth is on (:data:`shipyard.serving.scopes.ROUTE_SCOPES`).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict
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
    from shipyard.online import OnlineStore
    from shipyard.rollouts import DeploymentSpec
    from shipyard.serving.dataplane import DataPlane
    from shipyard.serving.settings import ServeSettings

CACHE_SECONDS = 5.0
MAX_CACHED = 256
DEFAULT_MINUTES = 30
DEFAULT_EVERY = "10s"
MAX_MINUTES = 7 * 24 * 60
STATIC_MAX_AGE = 86_400
RATIO_METRICS = ("accuracy", "f1", "roc_auc")
"""Metrics that lie in [0, 1]: their charts' y-axis is fixed to that range."""
MIN_TIME_SPAN = timedelta(minutes=5)
"""The narrowest time window a chart shows (one point alone would otherwise span a millisecond)."""
TIME_CHARTS = ("traffic", "latency", "accuracy")
TIME_FORMAT = "%H:%M:%S"
NO_DEPLOYMENT = "no deployment: follows alias production"


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


def _plot_time(moment: datetime) -> str:
    return moment.isoformat(sep=" ")


def tidy_figures(figures: dict[str, Any], every: str) -> dict[str, Any]:
    """Fix the axes of the dashboard's charts in place and return ``figures``.

    Ratio metrics (accuracy, F1, ROC AUC) get a y-axis fixed to [0, 1]; traffic counts start at zero. Time
    charts get a readable ``HH:MM:SS`` axis, and a window of at least :data:`MIN_TIME_SPAN` (one bucket either
    side of the data) so a single point does not stretch over a millisecond.

    >>> fig = {"data": [{"x": ["2026-01-01 05:30:00"], "y": [1.0]}], "layout": {"yaxis": {"title": {"text": "f1"}}}}
    >>> out = tidy_figures({"accuracy": fig}, "10s")["accuracy"]["layout"]
    >>> out["yaxis"]["range"], out["xaxis"]["range"]
    ([0, 1], ['2026-01-01 05:27:30', '2026-01-01 05:32:30'])
    """
    import pandas as pd

    bucket = pd.Timedelta(every).to_pytimedelta()
    for key in TIME_CHARTS:
        figure = figures.get(key)
        if not figure:
            continue
        layout = figure.setdefault("layout", {})
        xaxis = layout.setdefault("xaxis", {})
        yaxis = layout.setdefault("yaxis", {})
        xaxis.update(type="date", tickformat=TIME_FORMAT, hoverformat="%Y-%m-%d %H:%M:%S")
        times = [datetime.fromisoformat(str(x)) for trace in figure.get("data", []) for x in trace.get("x") or []]
        if times:
            first, last = min(times), max(times)
            if last - first < MIN_TIME_SPAN:
                middle = first + (last - first) / 2
                half = max(MIN_TIME_SPAN / 2, (last - first) / 2 + bucket)
                xaxis.update(range=[_plot_time(middle - half), _plot_time(middle + half)], autorange=False)
        metric = (yaxis.get("title") or {}).get("text")
        if key == "accuracy" and metric in RATIO_METRICS:
            yaxis.update(range=[0, 1], autorange=False)
            for trace in figure.get("data", []):
                trace["cliponaxis"] = False  # a point at 1.0 is drawn whole, not cut by the axis
        elif key == "traffic":
            yaxis.update(rangemode="tozero")
            for trace in figure.get("data", []):
                trace["width"] = bucket.total_seconds() * 1000 * 0.9  # one bucket wide (ms), even for one bar
    return figures


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _role(spec: DeploymentSpec, version: int) -> str:
    if spec.kind == "canary" and spec.canary is not None:
        return "candidate" if version == spec.canary.candidate else "incumbent"
    if spec.kind == "shadow":
        return "shadow" if version == spec.shadow else "primary"
    return {"ab": "variant", "pin": "pinned"}.get(spec.kind, "")


def _canary(spec: DeploymentSpec) -> dict[str, Any] | None:
    plan = spec.canary
    if plan is None:
        return None
    next_in = None
    if spec.status == "running" and spec.step_started_at is not None:
        next_in = max(0.0, spec.step_started_at + plan.interval_s - time.time())
    return {
        "incumbent": plan.incumbent,
        "candidate": plan.candidate,
        "steps": list(plan.steps),
        "step": spec.step + 1,
        "of": len(plan.steps),
        "percent": plan.steps[spec.step] if 0 <= spec.step < len(plan.steps) else None,
        "status": spec.status,
        "reason": spec.reason,
        "guards": plan.guards(),
        "interval_s": plan.interval_s,
        "next_step_in_s": next_in,
    }


class Dashboard:
    """The dashboard's data: served models from the repository, statistics from the prediction log."""

    def __init__(self, dataplane: DataPlane, settings: ServeSettings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self._log: PredictionLog | None = None
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}
        self._online: OnlineStore | None = None

    def online_store(self) -> OnlineStore:
        """The online-learning state of the registry this server serves from."""
        if self._online is None:
            from shipyard.online import OnlineStore

            self._online = OnlineStore(self.dataplane.repository.service)
        return self._online

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
        online = self.online_store()
        models = []
        for name in repo.served_names():
            deployment = repo.deployment(name)
            state = repo.service.deployment(name)
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
                    "deployment": state.describe() if state is not None else NO_DEPLOYMENT,
                    "revision": state.revision if state is not None else 0,
                    "online": online.is_online(name),
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

    def deployments(self) -> dict[str, Any]:
        """Per served model its deployment as ``shipyard deploy show`` reads it (blocking: registry reads)."""
        repo = self.dataplane.repository
        service = repo.service
        rows = []
        for name in repo.served_names():
            current = repo.deployment(name).current
            state = service.deployment(name)
            spec = state.deployment_spec() if state is not None else None
            stats = service.rollout_stats(name, state.revision) if state is not None else {}
            weights = spec.weights() if spec is not None else {}
            versions = sorted(set(spec.versions() if spec is not None else ()) | set(stats))
            rows.append(
                {
                    "name": name,
                    "served_version": current.version if current else None,
                    "revision": state.revision if state is not None else 0,
                    "kind": spec.kind if spec is not None else None,
                    "description": state.describe() if state is not None else NO_DEPLOYMENT,
                    "action": state.action if state is not None else None,
                    "reason": state.reason if state is not None else None,
                    "actor": state.actor if state is not None else None,
                    "at": state.at.isoformat() if state is not None else None,
                    "alias": spec.alias if spec is not None else None,
                    "canary": _canary(spec) if spec is not None else None,
                    "versions": [
                        {
                            "version": v,
                            "role": _role(spec, v) if spec is not None else "",
                            "weight": weights.get(v),
                            "requests": stats[v].requests if v in stats else 0,
                            "errors": stats[v].errors if v in stats else 0,
                            "error_rate": stats[v].error_rate() if v in stats else None,
                            "p99_ms": _finite(stats[v].p99_ms()) if v in stats else None,
                            "agreement": stats[v].agreement() if v in stats else None,
                        }
                        for v in versions
                    ],
                }
            )
        return {"deployments": rows, "computed_at": datetime.now(UTC).isoformat()}

    def overview(self, minutes: int) -> dict[str, Any]:
        """Per served model its predictions, requests and p95 latency of the last ``minutes`` from the log."""
        import pandas as pd

        from shipyard.monitoring.monitor import latency_summary, request_latencies

        since = datetime.now(UTC) - timedelta(minutes=minutes)
        log = self.prediction_log() if self.settings.logging.enabled else None
        rows = []
        for name in self.dataplane.repository.served_names():
            frame = log.predictions(name, since=since, inputs=False, shadow=False) if log is not None else None
            if frame is None or frame.empty:
                rows.append({"name": name, "predictions": 0, "requests": 0, "p95_ms": None, "last_at": None})
                continue
            requests = request_latencies(frame)
            requests_ms = latency_summary(requests["latency_ms"])["p95_ms"]
            rows.append(
                {
                    "name": name,
                    "predictions": len(frame),
                    "requests": len(requests),
                    "p95_ms": _finite(requests_ms),
                    "last_at": pd.Timestamp(frame["ts"].max()).isoformat(),
                }
            )
        return {"overview": rows, "minutes": minutes, "computed_at": datetime.now(UTC).isoformat()}

    def online(self) -> dict[str, Any]:
        """Per served online model its learning state as ``shipyard online status`` reads it (blocking)."""
        store = self.online_store()
        rows = []
        for name in self.dataplane.repository.served_names():
            if not store.is_online(name):
                continue
            status = store.status(name)
            row = {key: _finite(value) for key, value in asdict(status).items()}
            row["frozen_steps"] = list(status.frozen_steps)
            row["lease_expires_at"] = status.lease_expires_at.isoformat() if status.lease_expires_at else None
            row["lease_held"] = status.lease_held
            rows.append(row)
        return {"online": rows, "computed_at": datetime.now(UTC).isoformat()}

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
            "figures": tidy_figures(figures(report, series), every),
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

    @api.get("/ui/api/deployments", summary="Dashboard: every served model's deployment, canary and counters")
    async def deployments() -> Response:
        return json_response(await dashboard.cached(("deployments",), dashboard.deployments))

    @api.get("/ui/api/overview", summary="Dashboard: recent predictions and latency of every served model")
    async def overview(request: Request) -> Response:
        minutes = _int_param(request, "minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
        return json_response(await dashboard.cached(("overview", minutes), lambda: dashboard.overview(minutes)))

    @api.get("/ui/api/online", summary="Dashboard: online learning of every served online model")
    async def online() -> Response:
        return json_response(await dashboard.cached(("online",), dashboard.online))

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
