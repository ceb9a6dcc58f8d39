"""The prediction and feedback routes as raw ASGI: the same code as the FastAPI routes, without its per-request work.

FastAPI still declares these routes (for ``/docs`` and as the fallback); requests whose path matches a
fast route are answered here first, after the request-id, metrics and auth layers have run.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.errors import InvalidInput, SchemaError, ShipyardError
from shipyard.serving import native
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.errors import client_message, error_payload
from shipyard.serving.jsonio import as_object, dumps, parse_json
from shipyard.serving.online import OnlineServing, RateLimited

log = logging.getLogger("shipyard.serving")
_JSON = [(b"content-type", b"application/json")]
_NATIVE = re.compile(r"/v1/models/([^/]+)(?:/versions/([^/]+))?/predict")
_FEEDBACK = re.compile(r"/v1/models/([^/]+)/feedback")

Handler = Callable[[re.Match[str], bytes, Scope], Awaitable[Any]]


class RouteLabel:
    """What the metrics layer reads from ``scope["route"]``: the route's path template."""

    def __init__(self, path: str) -> None:
        self.path = path


class FastPredict:
    """Answers POSTs to the prediction routes directly; everything else goes on to FastAPI."""

    def __init__(self, app: ASGIApp, *, dataplane: DataPlane, online: OnlineServing) -> None:
        self.app = app
        self.dataplane = dataplane
        self.online = online
        self.routes: list[tuple[re.Pattern[str], int, Handler]] = [
            (_NATIVE, 200, self._native),
            (_FEEDBACK, 202, self._feedback),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            for pattern, success, handler in self.routes:
                match = pattern.fullmatch(path)
                if match is not None:
                    await self._answer(match, success, handler, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, match: re.Match[str], success: int, handler: Handler, scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = _JSON
        try:
            payload: Any = await handler(match, body, scope)
            status = success
        except ShipyardError as exc:
            status = int(exc.status)
            if isinstance(exc, RateLimited):
                headers = [*_JSON, (b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())]
            extra = {"problems": exc.problems} if isinstance(exc, SchemaError) else None
            shown = client_message(exc, scope.get("state", {}).get("request_id", ""))
            payload = error_payload(scope["path"], status, shown, type(exc).__name__, extra)
        except Exception as exc:
            request_id = scope.get("state", {}).get("request_id", "")
            log.exception("unexpected error in request %s", request_id)
            status = 500
            text = f"internal error ({type(exc).__name__}); quote request id {request_id} when reporting it"
            payload = error_payload(scope["path"], 500, text, "InternalError")
        data = dumps(payload)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _native(self, match: re.Match[str], body: bytes, scope: Scope) -> Any:
        name, version_text = match.group(1), match.group(2)
        scope["route"] = _NATIVE_PINNED if version_text else _NATIVE_LABEL
        version = None
        if version_text is not None:
            if not version_text.isdigit():
                raise InvalidInput(f"the version in the path must be a number, got {version_text!r}")
            version = int(version_text)
        query = scope.get("query_string", b"").decode("latin-1")
        state: dict[str, Any] = scope.setdefault("state", {})
        return await native.predict_json(
            self.dataplane,
            name,
            version,
            as_object(parse_json(body)),
            native.allow_extra_flag(query),
            state,
            scope["headers"],
        )

    async def _feedback(self, match: re.Match[str], body: bytes, scope: Scope) -> Any:
        scope["route"] = _FEEDBACK_LABEL
        state: dict[str, Any] = scope.setdefault("state", {})
        return await self.online.feedback(match.group(1), as_object(parse_json(body)), state)


_FEEDBACK_LABEL = RouteLabel("/v1/models/{name}/feedback")
_NATIVE_LABEL = RouteLabel("/v1/models/{name}/predict")
_NATIVE_PINNED = RouteLabel("/v1/models/{name}/versions/{version}/predict")
