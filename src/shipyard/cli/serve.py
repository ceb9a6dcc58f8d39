"""``shipyard serve``: a prediction server for registered models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    refs: Annotated[
        list[str] | None,
        typer.Argument(metavar="[REF]...", help="Models to serve (fraud, fraud:3, fraud@staging); default: every "
                       "model with a production alias."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes on the one port (default 1).")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="serve.yaml with limits, batching and per-model settings.")
    ] = None,
    auth: Annotated[
        bool | None,
        typer.Option("--auth/--no-auth", help="Require API keys (default: on unless bound to a loopback address)."),
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(min=1, help="Most rows per model call (default 64).")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(min=0, help="Extra wait to fill a batch (default 0).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Per-request time limit in seconds (default 30).")] = None,
    header_timeout: Annotated[
        float | None, typer.Option(help="Seconds a client has to send a request's head (default 10; 408 above).")
    ] = None,
    body_timeout: Annotated[
        float | None, typer.Option(help="Seconds a client has to send a request's body (default 30; 408 above).")
    ] = None,
    max_connections_per_client: Annotated[
        int | None, typer.Option(help="Open connections per client address and worker (default 64; 429 above).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve registered models over HTTP: native /v1, Open Inference Protocol V2 and MLflow's /invocations."""
    from shipyard.serving.runner import serve as run_server
    from shipyard.serving.settings import BatchSettings, ServeSettings

    overrides: dict[str, object] = {
        "refs": list(refs) if refs else None,
        "host": host,
        "port": port,
        "workers": workers,
        "auth": auth,
        "timeout_s": timeout,
        "header_timeout_s": header_timeout,
        "body_timeout_s": body_timeout,
        "max_connections_per_client": max_connections_per_client,
    }
    settings = (
        ServeSettings.from_file(config, **overrides)
        if config
        else ServeSettings.from_yaml_text("", **overrides)
    )
    if max_batch_size is not None or max_wait_ms is not None:
        settings.batching = BatchSettings(
            max_batch_size=max_batch_size or settings.batching.max_batch_size,
            max_wait_ms=settings.batching.max_wait_ms if max_wait_ms is None else max_wait_ms,
        )
    _check_port(settings.host, settings.port)
    _check_refs(settings.refs)
    if settings.auth_required():
        _warn_without_keys()
    run_server(settings, log_level=log_level)


def _warn_without_keys() -> None:
    """With auth on and no active key, every request would get 401: say so before starting."""
    from shipyard.config import Settings
    from shipyard.registry.keys import KeyStore
    from shipyard.registry.store import MetadataStore

    store = MetadataStore(Settings().resolved_registry_url())
    try:
        active = KeyStore(store).list_keys(include_revoked=False)
    finally:
        store.close()
    if not active:
        typer.echo(
            "warning: API keys are required but none is active, so every request will be refused with 401; "
            "create one with 'shipyard keys create --name app --scope predict'",
            err=True,
        )


def _check_port(host: str, port: int) -> None:
    """Fail fast, before any model loads and before "ready" is printed, when ``host:port`` cannot be bound.

    The probe binds as the server will (``SO_REUSEADDR``: a port left in TIME_WAIT is free) and lets go at
    once; the server binds it again a moment later.
    """
    import errno
    import socket

    from shipyard.errors import ShipyardError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ShipyardError(f"cannot bind to host {host!r}: {exc.strerror}; choose another with --host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                holder = _port_holder(port)
                raise ShipyardError(
                    f"port {port} on {host} is in use{f' (by {holder})' if holder else ''}; stop it or choose "
                    "another port with --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise ShipyardError(
                    f"port {port} on {host} needs privileges to bind; choose a port above 1023 with --port"
                ) from None
            raise ShipyardError(f"cannot bind to {host}:{port}: {exc.strerror}; check --host and --port") from None


def _port_holder(port: int) -> str:
    """``pid N (name)`` of the process listening on ``port``, when this user may see it; else ``""``."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    return f"pid {conn.pid}, {psutil.Process(conn.pid).name()}"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except (psutil.Error, OSError):
        pass
    return ""


def _check_refs(refs: list[str]) -> None:
    """Fail fast, with the registry's own message, on a reference that does not resolve.

    Only the metadata store is opened here: the workers load the models, so this process stays small.
    """
    from shipyard.config import Settings
    from shipyard.errors import ShipyardError
    from shipyard.registry.store import MetadataStore
    from shipyard.types import ModelRef

    store = MetadataStore(Settings().resolved_registry_url())
    try:
        if refs:
            for text in refs:
                ref = ModelRef.parse(text)
                store.resolve(ref.name, version=ref.version, alias=ref.alias)
            return
        if not any("production" in m.aliases for m in store.list_models()):
            raise ShipyardError(
                "no model has a production alias to serve; name models to serve (shipyard serve fraud) or set "
                "one with 'shipyard alias set NAME production VERSION' (try 'shipyard demo')"
            )
    finally:
        store.close()
