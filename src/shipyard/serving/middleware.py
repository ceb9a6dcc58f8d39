"""One pure-ASGI layer around every request: request id, body size limit, metrics, in-flight count.

Every prediction's answer also carries ``X-Shipyard-Version``: the model version that served it (the
adapters put it in the request state before the answer starts).

The body limit holds however the body comes: a ``Content-Length`` over it is answered 413 at once; a
chunked body is counted as it is read, and the read that passes the limit raises :class:`BodyTooLarge`,
a :class:`~shipyard.errors.PayloadTooLarge` that every protocol answers with 413 in its own error shape.
A client that goes away (or is cut off by the body deadline) before its body is complete raises
:class:`BodyIncomplete` (408) rather than reaching the error log as an unexpected failure.
"""

from __future__ import annotations

import os
import time
from http import HTTPStatus
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.errors import PayloadTooLarge, ShipyardError
from shipyard.serving.limits import OBSERVER_KEY
from shipyard.serving.metrics import ServerMetrics

REQUEST_ID_HEADER = b"x-request-id"
VERSION_HEADER = b"x-shipyard-version"
# Request ids are 128 random bits from the kernel, drawn per request: no state is kept in the process,
# so forked workers, re-forked workers, replicas and restarts never repeat one another's ids, and an id
# seen in one answer does not tell which ids others received. (A per-process prefix and counter, set at
# import, was copied into every pre-forked worker: they all counted from 1 with the same prefix.)
_ID_BYTES = 16  # 32 hex digits; os.urandom(16).hex() takes ~0.5 µs


def _error_body(path: str, message: str) -> bytes:
    if path.startswith("/v2"):
        return orjson.dumps({"error": message})
    if path.endswith("/invocations"):
        return orjson.dumps({"error_code": "BAD_REQUEST", "message": message})
    return orjson.dumps({"error": message, "detail": {"type": "PayloadTooLarge"}})


class BodyTooLarge(PayloadTooLarge):
    """The request body, read so far, is over the server's ``max_body_bytes`` (413)."""


class BodyIncomplete(ShipyardError):
    """The client went away, or was cut off by the body deadline, before sending the whole body (408)."""

    status = HTTPStatus.REQUEST_TIMEOUT


def too_large_message(limit: int) -> str:
    """What a client whose body is over ``limit`` bytes is told."""
    return (
        f"the request body is larger than the limit of {limit} bytes (max_body_bytes); "
        "send fewer rows per request or raise max_body_bytes in the serve config"
    )


class ServingMiddleware:
    """Echoes or makes ``X-Request-ID``, refuses bodies over ``max_body_bytes`` with 413, records metrics."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and isinstance(scope.get("state"), dict):
                # uvicorn shares the lifespan state with its protocol: the connection limits count into our metrics
                scope["state"][OBSERVER_KEY] = self.metrics
            await self.app(scope, receive, send)
            return
        request_id = ""
        length = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                request_id = value.decode("latin-1")[:128]
            elif key == b"content-length":
                length = int(value) if value.isdigit() else None
        request_id = request_id or os.urandom(_ID_BYTES).hex()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        path: str = scope["path"]
        status_holder = [500]
        answered = [False]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                answered[0] = True
                version = state.get("version")
                if version is None:
                    message["headers"] = [*message.get("headers", []), header]
                else:
                    message["headers"] = [*message.get("headers", []), header, (VERSION_HEADER, b"%d" % version)]
            await send(message)

        if length is not None and length > self.max_body_bytes:
            await self._too_large(path, send_with_id, length)
            return

        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(too_large_message(self.max_body_bytes))
                complete = not message.get("more_body", False)
            elif message["type"] == "http.disconnect" and not complete:
                raise BodyIncomplete(
                    f"the client sent {received} bytes of the body and then went away or was too slow; nothing "
                    "was done with the request"
                )
            return message

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:  # raised outside FastAPI (the fast prediction routes): FastAPI answers its own
            if not answered[0]:
                await self._too_large(path, send_with_id, received)
        except BodyIncomplete:
            status_holder[0] = int(HTTPStatus.REQUEST_TIMEOUT)  # nobody is listening for an answer
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            self.metrics.observe_request(
                state.get("model", ""),
                str(state.get("version", "")),
                getattr(route, "path", "unmatched"),
                str(status_holder[0]),
                time.perf_counter() - started,
            )

    async def _too_large(self, path: str, send: Send, size: int) -> None:
        body = _error_body(path, too_large_message(self.max_body_bytes))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
