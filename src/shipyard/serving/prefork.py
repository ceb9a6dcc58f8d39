"""Several workers on one port: gunicorn's arbiter forks them after the parent has loaded the models.

Forking after the load is what makes N workers cost little more memory than one: the libraries'
code and data and the models' arrays stay shared pages until a worker writes to them. The arbiter
(``gunicorn``) handles the rest that a supervisor must: restarting dead workers, graceful stops on
SIGTERM (each worker's uvicorn finishes its in-flight requests), fast stops on SIGINT.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication
from starlette.types import ASGIApp
from uvicorn_worker import UvicornWorker

from shipyard.serving.settings import ServeSettings


class ShipyardWorker(UvicornWorker):  # type: ignore[misc]
    """uvicorn in a gunicorn worker, with the same options (uvloop, httptools, no access log) as one process."""

    def __init__(self, age: int, ppid: int, sockets: Any, app: PreforkServer, *args: Any, **kwargs: Any) -> None:
        self.CONFIG_KWARGS = app.uvicorn_options  # read by UvicornWorker.__init__
        super().__init__(age, ppid, sockets, app, *args, **kwargs)

    def init_process(self) -> None:
        """In the new worker: stop (gracefully, SIGTERM) when the parent dies, even by SIGKILL."""
        _terminate_with_parent()
        if os.getppid() != self.ppid:  # the parent died before the line above took effect
            raise SystemExit(0)
        super().init_process()


class PreforkServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application whose app is built, with its models loaded, before the workers fork.

    ``options`` are uvicorn's (``loop``, ``http``, ``timeout_graceful_shutdown``...) for every worker.
    """

    def __init__(self, settings: ServeSettings, *, options: dict[str, Any], log_level: str = "info") -> None:
        self.settings = settings
        self.log_level = log_level
        self.uvicorn_options = options
        self.graceful_seconds = int(options.get("timeout_graceful_shutdown") or 30)
        self.application: ASGIApp | None = None
        super().__init__()

    def load_config(self) -> None:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        config = {
            "bind": [f"{host}:{self.settings.port}"],
            "workers": self.settings.workers,
            "worker_class": f"{__name__}.ShipyardWorker",
            "preload_app": True,
            "graceful_timeout": self.graceful_seconds,
            "timeout": max(120, self.graceful_seconds),
            "keepalive": 5,
            "loglevel": self.log_level,
            "accesslog": None,
            "child_exit": _forget_worker_metrics,
            "proc_name": "shipyard",
        }
        for key, value in config.items():
            self.cfg.set(key, value)

    def load(self) -> ASGIApp:
        """Build the app and load its models, in the parent (gunicorn calls this once, before forking)."""
        if self.application is None:
            from shipyard import connect
            from shipyard.serving.app import create_app

            service = connect()
            self.application = create_app(self.settings, service, preload=True)
            # Connections must not be shared across the fork: drop the pool; each worker opens its own.
            service.store.close()
            _forget_parent_metrics()
        return self.application


def _terminate_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent exits (``prctl(PR_SET_PDEATHSIG)``).

    Without it, workers of a parent killed with SIGKILL would keep serving, orphaned, on the port.
    Elsewhere than Linux this does nothing (the arbiter's own checks remain).
    """
    import ctypes
    import ctypes.util
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _forget_parent_metrics() -> None:
    """The parent serves nothing: remove its live gauges (models loaded) so that only workers are counted."""
    from shipyard.serving.metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _forget_worker_metrics(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges (in-flight requests, models loaded) no longer count."""
    from shipyard.serving.metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
