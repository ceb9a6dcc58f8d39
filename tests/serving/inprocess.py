"""The real server app in this process: its start-up and shut-down run, requests go through httpx's ASGI transport.

No port, no subprocess: a test that needs a loaded model but no socket pays only for loading it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

import shipyard
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings

STARTUP_TIMEOUT = 60.0


@contextlib.asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s lifespan (models load at start-up) around the block, as uvicorn does."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), STARTUP_TIMEOUT)
    if started["type"] != "lifespan.startup.complete":
        task.cancel()
        raise RuntimeError(f"the app did not start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), STARTUP_TIMEOUT)
        await task


@contextlib.asynccontextmanager
async def serving(settings: ServeSettings | None = None, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a started server app over the registry of ``$SHIPYARD_HOME`` (the ``home`` fixture)."""
    app = create_app(settings or ServeSettings(), shipyard.connect())
    async with running(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is an answer to check
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard", headers=headers) as client:
            yield client


def post_json(client: httpx.AsyncClient, path: str, body: Any) -> Any:
    """POST ``body`` serialised by the standard library (it writes integers of any size, as clients may)."""
    import json

    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def call(app: Any, requests: list[tuple[str, str, dict[str, str], Any]]) -> list[httpx.Response]:
    """Send ``(method, path, headers, json body)`` requests in order to ``app`` (no lifespan run)."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.request(method, path, headers=headers, json=body)
                for method, path, headers, body in requests
            ]

    return asyncio.run(run())
