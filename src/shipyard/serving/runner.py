"""Run the server with uvicorn (uvloop + httptools), in one or several worker processes."""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.types import ASGIApp

from shipyard.serving.settings import ServeSettings

SETTINGS_ENV = "SHIPYARD_SERVE_SETTINGS"


def app_from_env() -> ASGIApp:
    """The app factory each uvicorn worker calls: settings come from the parent through the environment."""
    from shipyard import connect
    from shipyard.serving.app import create_app

    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    return create_app(settings, connect())


def curl_example(settings: ServeSettings, name: str, example: list[Any] | None, api_key: bool) -> str:
    """A ``curl`` line that predicts with model ``name`` on its stored input example."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    rows = example[:1] if example else [{}]
    key = "key" if isinstance(rows[0], dict) else "inputs"
    body = json.dumps({"instances": rows} if key == "key" else {"inputs": rows})
    auth = " -H 'Authorization: Bearer $SHIPYARD_API_KEY'" if api_key else ""
    return (
        f"curl -s http://{host}:{settings.port}/v1/models/{name}/predict "
        f"-H 'Content-Type: application/json'{auth} -d '{body}'"
    )


def serve(settings: ServeSettings, *, log_level: str = "info") -> None:
    """Start uvicorn and block until it stops (SIGTERM/SIGINT finish in-flight requests first)."""
    import shutil
    import tempfile

    import uvicorn

    from shipyard.serving.metrics import MULTIPROCESS_ENV

    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="shipyard-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir  # the workers inherit it and write their values there
    try:
        _run_uvicorn(uvicorn, settings, log_level)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(uvicorn: Any, settings: ServeSettings, log_level: str) -> None:
    uvicorn.run(
        "shipyard.serving.runner:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.timeout_s) + 5,
        server_header=False,
        proxy_headers=False,  # client addresses are not used; skip the per-request header rewrite
    )
