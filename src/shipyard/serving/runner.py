"""Run the server with uvicorn (uvloop + httptools): in this process, or pre-forked into several workers.

Either way uvicorn speaks HTTP through the protocol of :mod:`shipyard.serving.limits` (httptools with header
and body read deadlines and a cap on connections per client address). One worker runs uvicorn directly.
Several workers run under gunicorn's arbiter with ``preload_app``: the parent imports the libraries and
loads and warms up the models once, then forks the workers, which share those memory pages
(copy-on-write; :func:`gc.freeze` keeps the collector from touching them). Each worker runs uvicorn's
server on the shared socket (``uvicorn_worker.UvicornWorker``). The arbiter restarts a worker that dies,
and on SIGTERM lets every worker finish its in-flight requests.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.types import ASGIApp

from shipyard.serving.settings import ServeSettings

SETTINGS_ENV = "SHIPYARD_SERVE_SETTINGS"
# prometheus_client picks its multiprocess mode when first imported, so this is set before anything imports
# it (the pre-fork parent builds the app, and so its metrics, in this process).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def app_from_env() -> ASGIApp:
    """The app factory each uvicorn worker calls: settings come from the parent through the environment."""
    from shipyard import connect
    from shipyard.serving.app import create_app

    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    return create_app(settings, connect())


def curl_example(settings: ServeSettings, name: str, example: list[Any] | None, api_key: bool) -> str:
    """A ``curl`` line that predicts with model ``name`` on its stored input example, ready to paste into a shell.

    The key header is in double quotes, so that ``$SHIPYARD_API_KEY`` expands; everything else is single-quoted.

    >>> line = curl_example(ServeSettings(port=8000), "fraud", [{"a": "it's"}], api_key=True)
    >>> print(line.replace(" -H", "\\n  -H").replace(" -d", "\\n  -d"))
    curl -s http://127.0.0.1:8000/v1/models/fraud/predict
      -H 'Content-Type: application/json'
      -H "Authorization: Bearer $SHIPYARD_API_KEY"
      -d '{"instances": [{"a": "it'"'"'s"}]}'
    """
    import shlex

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    rows = example[:1] if example else [{}]
    key = "key" if isinstance(rows[0], dict) else "inputs"
    body = json.dumps({"instances": rows} if key == "key" else {"inputs": rows})
    auth = ' -H "Authorization: Bearer $SHIPYARD_API_KEY"' if api_key else ""
    url = shlex.quote(f"http://{host}:{settings.port}/v1/models/{name}/predict")
    return f"curl -s {url} -H 'Content-Type: application/json'{auth} -d {shlex.quote(body)}"


def serve(settings: ServeSettings, *, log_level: str = "info") -> None:
    """Start the server and block until it stops (SIGTERM/SIGINT finish in-flight requests first)."""
    import shutil
    import tempfile

    if settings.models:  # a typo there is an error before anything starts, naming the file
        from shipyard import connect
        from shipyard.serving.repository import check_models_section

        check_models_section(settings, connect())
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="shipyard-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir  # the workers inherit it and write their values there
    try:
        if settings.workers > 1:
            _run_prefork(settings, log_level)
        else:
            _run_uvicorn(settings, log_level)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    from shipyard.serving.limits import ClientLimits, guarded_protocol

    limits = ClientLimits(settings.header_timeout_s, settings.body_timeout_s, settings.max_connections_per_client)
    return {
        "loop": "uvloop",
        "http": guarded_protocol(limits),  # httptools, with read deadlines and a per-client connection cap
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.timeout_s) + 5,
        "server_header": False,
        "proxy_headers": False,  # client addresses are not used; skip the per-request header rewrite
    }


def _run_uvicorn(settings: ServeSettings, log_level: str) -> None:
    import uvicorn

    uvicorn.run(
        "shipyard.serving.runner:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        **_uvicorn_options(settings),
    )


def _run_prefork(settings: ServeSettings, log_level: str) -> None:
    from shipyard.serving.prefork import PreforkServer

    PreforkServer(settings, options=_uvicorn_options(settings), log_level=log_level).run()
