"""Every error turned into an HTTP answer in one place, in the shape each protocol expects.

An answer never carries a connection string, a file path or a stack: a storage failure's message (which names the
database URL or the artifact path, for the command line) goes to the server log under the request id, and the
client is told only that the registry is unavailable and which id to look for (:func:`client_message`).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import SchemaError, ShipyardError, StorageError
from shipyard.serving.jsonio import json_response

log = logging.getLogger("shipyard.serving")

_MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    422: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


_MLFLOW_PATH = re.compile(r"/invocations|/v1/models/[^/]+/invocations")


def error_payload(path: str, status: int, message: str, kind: str, extra: dict[str, Any] | None = None) -> Any:
    """The body of an error answer: V2 ``{"error"}``, MLflow ``{"error_code", "message"}``, else native.

    The MLflow shape is for the MLflow routes only, not for any path ending in ``/invocations``:

    >>> error_payload("/ui/api/models/invocations", 404, "no such model", "NotServed")
    {'error': 'no such model', 'detail': {'type': 'NotServed'}}
    """
    if path.startswith("/v2"):
        return {"error": message}
    if _MLFLOW_PATH.fullmatch(path):
        return {"error_code": _MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": message}
    return {"error": message, "detail": {"type": kind, **(extra or {})}}


def client_message(exc: ShipyardError, request_id: str) -> str:
    """What an HTTP client is told of ``exc``: its message, unless it may name a database URL or a file path.

    Such errors (the registry database or artifact store being unavailable) are logged here in full, under the
    request id, and the client gets one generic line that names that id.
    """
    if isinstance(exc, StorageError):
        log.error("registry unavailable in request %s: %s", request_id, exc.message)
        return f"the registry is unavailable; see the server log (error id {request_id})"
    return exc.message


async def shipyard_error(request: Request, exc: Exception) -> Response:
    """The answer to a :class:`ShipyardError`: its status, and its message unless that may leak (see above)."""
    assert isinstance(exc, ShipyardError)
    extra = {"problems": exc.problems} if isinstance(exc, SchemaError) else None
    status = int(exc.status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    message = client_message(exc, getattr(request.state, "request_id", ""))
    return json_response(error_payload(request.url.path, status, message, type(exc).__name__, extra), status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the routes"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return json_response(
        error_payload(request.url.path, exc.status_code, message, "HTTPException"), exc.status_code, exc.headers
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "")
    log.exception("unexpected error in request %s", request_id)
    message = f"internal error ({type(exc).__name__}); quote request id {request_id} when reporting it"
    return json_response(error_payload(request.url.path, 500, message, "InternalError"), 500)
