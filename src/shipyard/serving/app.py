"""The ASGI application: protocol adapters over one data plane, with ops routes and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from shipyard.errors import ShipyardError
from shipyard.rollouts.controller import CanaryController
from shipyard.rollouts.stats import replica_id
from shipyard.service import ModelService
from shipyard.serving import errors, mlflow, native, ui, ui_login, v2
from shipyard.serving.auth import AuthMiddleware
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.fastpath import FastPredict
from shipyard.serving.jsonio import json_response, read_object
from shipyard.serving.metrics import ServerMetrics, live_monitor
from shipyard.serving.middleware import ServingMiddleware
from shipyard.serving.online import FEEDBACK_BODY, OnlineServing
from shipyard.serving.openapi import install_docs
from shipyard.serving.repository import Deployment, ModelRepository
from shipyard.serving.scopes import RouteScopes, SlashRedirect
from shipyard.serving.settings import ServeSettings

log = logging.getLogger("shipyard.serving")


def _announce(settings: ServeSettings, repository: ModelRepository) -> None:
    """Tell the person who started the server what it serves and how to call it."""
    from shipyard.serving.runner import curl_example

    lines = [f"shipyard is ready on http://{settings.host}:{settings.port} (docs: /docs)"]
    for name in repository.served_names():
        served = repository.current(name)
        lines.append(f"  {name}: version {served.version} ({served.model.flavor}), try:")
        lines.append("    " + curl_example(settings, name, served.info.input_example, settings.auth_required()))
    print("\n".join(lines), flush=True)


def _running_canary(deployment: Deployment) -> bool:
    """Whether the deployment this server routes ``deployment`` by is a running canary (the controller's work)."""
    route = deployment.route
    return route is not None and route.spec.kind == "canary" and route.spec.status == "running"


def _freeze_heap() -> None:
    """Keep everything loaded so far out of the cyclic garbage collector's full passes.

    It lives as long as the process; without this, full collections pause the event loop for tens of
    milliseconds, and in forked workers they would touch (and so copy) every shared page.
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: ServeSettings, service: ModelService, *, preload: bool = False, home: Path | None = None
) -> ASGIApp:
    """Build the server for ``settings`` on the registry behind ``service``.

    Models are loaded and warmed up during start-up; ``/readyz`` answers 200 once they all are. With
    ``preload`` they are loaded here instead, before the function returns: the pre-fork server does this
    in its parent so that every worker it forks shares the loaded models and libraries' memory pages.
    The layers run outside FastAPI (request id and metrics, then auth, then the raw prediction routes), so
    the hot path pays for none of the framework's per-request middleware; the rest goes on to FastAPI.
    The prediction log (``settings.logging``) goes under ``home`` (default ``$SHIPYARD_HOME``)``/logs``.
    """
    from shipyard import __version__

    metrics = ServerMetrics()
    repository = ModelRepository(
        service,
        settings,
        observer=lambda served, stats: metrics.observe_batch(served.name, served.version, stats),
        on_load=metrics.observe_served,
    )
    dataplane = DataPlane(repository, settings)
    if settings.logging.enabled:
        from shipyard.config import Settings
        from shipyard.monitoring.predlog import PredictionLogger

        dataplane.prediction_log = PredictionLogger(settings.logging, home=home or Settings().resolved_home())
    dataplane.background.prediction_log = dataplane.prediction_log
    dataplane.background.on_drop = lambda name: metrics.shadow_dropped.labels(name).inc()
    repository.on_route = lambda deployment: metrics.deployment_revision.labels(deployment.name).set(
        deployment.revision
    )
    online = OnlineServing(service, repository, settings, metrics, dataplane.recorders, dataplane.prediction_log)
    monitor = live_monitor(settings, service, metrics, dataplane.prediction_log)
    if preload:
        repository.plan()
        repository.load_all()
        _freeze_heap()
        _announce(settings, repository)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if repository.ready:
            # Forked from a parent that loaded the models: count them in this worker's metrics, and catch
            # up with alias moves made since the parent loaded (a worker may be re-forked much later).
            for served in repository.loaded():
                metrics.observe_served(served)
            await repository.refresh()
        else:
            repository.plan()
            await asyncio.to_thread(repository.load_all)
            _freeze_heap()
            _announce(settings, repository)
        if dataplane.prediction_log is not None:
            await asyncio.to_thread(dataplane.prediction_log.start)  # in each worker: its own writer and files
        if monitor is not None:
            monitor.start()  # its thread recomputes drift and accuracy off the event loop
        await online.start()
        dataplane.stats.replica = replica_id()  # after any fork: one name per worker process
        for deployment in repository.deployments.values():
            metrics.deployment_revision.labels(deployment.name).set(deployment.revision)
        watcher = asyncio.create_task(repository.watch())
        tasks = [asyncio.create_task(dataplane.stats.run(service, settings.stats_flush_s))]
        if settings.rollouts:
            controller = CanaryController(
                service,
                dataplane.stats.replica,
                lambda: [d.name for d in repository.deployments.values() if _running_canary(d)],
            )
            tasks.append(asyncio.create_task(controller.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await dataplane.background.close()
            with contextlib.suppress(Exception):
                await dataplane.stats.flush(service)
            await online.stop()
            if monitor is not None:
                await asyncio.to_thread(monitor.stop)
            if dataplane.prediction_log is not None:
                await asyncio.to_thread(dataplane.prediction_log.close)  # requests are done: write what is held
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            repository.close()

    app = FastAPI(
        title="shipyard",
        version=__version__,
        description="Predictions from models in the shipyard registry: native, Open Inference Protocol V2 "
        "and MLflow scoring protocols.",
        lifespan=lifespan,
        redirect_slashes=False,  # SlashRedirect below: the router's own copies the Host header into Location
        docs_url=None,  # install_docs: the same pages with their assets served from here, not from a CDN
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    app.state.dataplane = dataplane
    app.state.metrics = metrics
    app.add_exception_handler(ShipyardError, errors.shipyard_error)
    app.add_exception_handler(HTTPException, errors.http_error)
    app.add_exception_handler(Exception, errors.unexpected_error)
    app.include_router(native.router(dataplane))
    app.include_router(v2.router(dataplane))
    app.include_router(mlflow.router(dataplane))
    app.include_router(ui.router(dataplane, settings))
    app.include_router(ui_login.router())

    @app.post(
        "/v1/models/{name}/feedback",
        tags=["online"],
        status_code=202,
        openapi_extra=FEEDBACK_BODY,
        summary="Labels for earlier predictions (by request id) or rows with labels, for online learning",
    )
    async def feedback(request: Request, name: str) -> Response:
        state = request.scope.setdefault("state", {})
        return json_response(await online.feedback(name, await read_object(request), state), 202)

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["ops"], summary="Every model is loaded and warmed up")
    async def readyz() -> Response:
        if not repository.ready:
            return json_response({"status": "loading"}, 503)
        return json_response({"status": "ready", "models": repository.served_names()})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    scopes = RouteScopes(app.routes)
    app.router.default = SlashRedirect(app.router.default, scopes)
    routed = FastPredict(app, dataplane=dataplane, online=online)
    guarded = AuthMiddleware(routed, service=service, routes=scopes, required=settings.auth_required())
    app.state.auth = guarded  # the dashboard's login checks keys as the auth layer does
    return ServingMiddleware(guarded, metrics=metrics, max_body_bytes=settings.max_body_bytes)
