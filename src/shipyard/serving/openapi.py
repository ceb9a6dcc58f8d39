"""OpenAPI request bodies for routes that read their body themselves, and the offline ``/docs`` pages.

FastAPI documents such a body only through ``openapi_extra``; :func:`json_body` builds that dict.
:func:`install_docs` serves Swagger UI and ReDoc with their files from the installed ``fastapi-offline`` package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from shipyard.serving.errors import error_payload
from shipyard.serving.jsonio import json_response

if TYPE_CHECKING:
    from fastapi import FastAPI

JSON = "application/json"


def schema_with_example(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    """An OpenAPI Media Type object: the body's JSON schema and one example of it.

    >>> schema_with_example({"type": "string"}, "a,b\\n1,2\\n")
    {'schema': {'type': 'string'}, 'example': 'a,b\\n1,2\\n'}
    """
    return {"schema": schema, "example": example}


def json_body(
    schema: dict[str, Any],
    example: Any,
    *,
    required: bool = True,
    extra_media_types: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose body is JSON (``schema``, ``example``), and maybe other media types.

    ``extra_media_types`` maps more content types to their :func:`schema_with_example`, listed after JSON.

    >>> json_body({"type": "object"}, {"rows": []})
    {'requestBody': {'required': True,
                     'content': {'application/json': {'schema': {'type': 'object'}, 'example': {'rows': []}}}}}
    >>> csv = schema_with_example({"type": "string"}, "a\\n1\\n")
    >>> body = json_body({"type": "object"}, {"a": [1]}, extra_media_types={"text/csv": csv})
    >>> list(body["requestBody"]["content"])
    ['application/json', 'text/csv']
    """
    content = {JSON: schema_with_example(schema, example), **(extra_media_types or {})}
    return {"requestBody": {"required": required, "content": content}}


# ---------------------------------------------------------------------- /docs and /redoc, offline
DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's and ReDoc's files are served from (the ``fastapi-offline`` package ships them)."""
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
"""The asset files served, by exact name, with their media types."""
ASSET_MAX_AGE = 86_400


@cache
def docs_asset(name: str) -> bytes:
    """The file ``name`` (one of :data:`ASSET_TYPES`) from the installed ``fastapi-offline`` package, read once."""
    return (resources.files("fastapi_offline") / "static" / name).read_bytes()


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI), its OAuth2 redirect and ``/redoc`` from local assets, never from a CDN.

    Create ``app`` with ``docs_url=None`` and ``redoc_url=None``: these routes replace FastAPI's own, whose pages
    load their scripts, styles and fonts from the internet (a blank page without it).
    """
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        assets = root(request) + DOCS_ASSETS
        return get_swagger_ui_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root(request) + redirect_url,
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        assets = root(request) + DOCS_ASSETS
        return get_redoc_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(DOCS_ASSETS + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            message = f"no docs asset {name!r}; the assets are {', '.join(sorted(ASSET_TYPES))}"
            return json_response(error_payload(f"{DOCS_ASSETS}/{name}", 404, message, "NotFound"), 404)
        body = await asyncio.to_thread(docs_asset, name)
        return Response(body, media_type=media_type, headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE}"})
