"""Fast JSON in and out of the server (orjson), with errors that say what was wrong with the body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import InvalidInput

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_NATIVE_DTYPES = frozenset({"float64", "float32", "int64", "int32"})


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON, or :class:`InvalidInput` naming the problem."""
    return parse_json(await request.body())


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON, or :class:`InvalidInput` naming the problem."""
    if not body:
        raise InvalidInput("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None


async def read_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object."""
    return as_object(await read_json(request))


def as_object(payload: Any) -> dict[str, Any]:
    """``payload`` if it is a JSON object, else :class:`InvalidInput`."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {type(payload).__name__}")
    return payload


def plain(values: Any) -> Any:
    """Numpy results ready for :func:`dumps`: numeric arrays as they are (orjson writes them fast), others as lists."""
    if isinstance(values, np.ndarray):
        if values.dtype.name in _NATIVE_DTYPES and values.flags.c_contiguous:
            return values
        return values.tolist()
    return values


def dumps(payload: Any) -> bytes:
    """``payload`` as JSON bytes (numpy values included)."""
    return orjson.dumps(payload, option=_OPTIONS)


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(payload, option=_OPTIONS), status_code=status, headers=headers,
                    media_type="application/json")
