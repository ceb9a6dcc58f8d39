"""Which API-key scope each route needs, decided by the route a request matches.

The scope of a request is that of the route it matches, found with the app's own route objects (the same
``matches`` the router calls, in the router's order) and looked up in :data:`ROUTE_SCOPES` by method and path
template: never from the text of the path, so a model named ``invocations`` or ``feedback`` changes nothing. A route
missing from the table, a path that matches no route and a method that a route does not allow all need ``admin``.

Slash redirects (``/v2/`` to ``/v2``) are answered here too, with a relative ``Location``: the router's own would
copy the request's ``Host`` header into it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from fastapi.routing import iter_route_contexts
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC = None
"""The "scope" of a route that answers without a key."""
ADMIN = "admin"

ROUTE_SCOPES: Mapping[tuple[str, str], str | None] = {
    # ops and docs: no key
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/v2"): PUBLIC,
    ("GET", "/v2/health/live"): PUBLIC,
    ("GET", "/v2/health/ready"): PUBLIC,
    ("GET", "/ping"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/version"): PUBLIC,
    # native
    ("POST", "/v1/models/{name}/predict"): "predict",
    ("POST", "/v1/models/{name}/versions/{version}/predict"): "predict",
    ("GET", "/v1/models"): "predict",
    ("GET", "/v1/models/{name}"): "predict",
    # Open Inference Protocol V2
    ("GET", "/v2/models/{name}"): "predict",
    ("GET", "/v2/models/{name}/versions/{version}"): "predict",
    ("GET", "/v2/models/{name}/ready"): "predict",
    ("GET", "/v2/models/{name}/versions/{version}/ready"): "predict",
    ("POST", "/v2/models/{name}/infer"): "predict",
    ("POST", "/v2/models/{name}/versions/{version}/infer"): "predict",
    # MLflow scoring
    ("POST", "/invocations"): "predict",
    ("POST", "/v1/models/{name}/invocations"): "predict",
    # online learning
    ("POST", "/v1/models/{name}/feedback"): "feedback",
    # the dashboard
    ("GET", "/ui"): ADMIN,
    ("GET", "/ui/static/plotly.min.js"): ADMIN,
    ("GET", "/ui/api/models"): ADMIN,
    ("GET", "/ui/api/models/{name}"): ADMIN,
}
"""The scope each route needs, by method and path template (``HEAD`` is looked up as ``GET``).

``None`` marks a public route. Every route of the app must be listed; one that is not needs ``admin``.
"""

Matcher = Callable[[Scope], tuple[Match, Scope]]


class RouteScopes:
    """The scope a request needs, decided by the route of ``routes`` that it matches (first match wins).

    ``routes`` are an app's routes (FastAPI's included routers are flattened into their routes); the table is
    :data:`ROUTE_SCOPES` unless given.
    """

    def __init__(self, routes: Sequence[BaseRoute], table: Mapping[tuple[str, str], str | None] = ROUTE_SCOPES):
        self.table = dict(table)
        self._routes: list[tuple[Matcher, str]] = []
        self.declared: list[tuple[str, str]] = []
        for context in iter_route_contexts(routes):
            template = context.path
            if template is None:  # pragma: no cover - every Route and Mount has a path
                continue
            self._routes.append((context.matches, template))
            for method in sorted(context.methods or {"GET"}):
                if method != "HEAD":
                    self.declared.append((method, template))

    def route_keys(self) -> list[tuple[str, str]]:
        """The ``(method, path template)`` of every route, as :data:`ROUTE_SCOPES` keys them (``HEAD`` left out)."""
        return list(self.declared)

    def required(self, scope: Scope) -> str | None:
        """The scope the request ``scope`` needs, or ``None`` for a public route; ``admin`` if nothing matches.

        A path that matches no route but would with its trailing slash removed (or added) needs what that route
        needs: the app answers it with a redirect there (see :class:`SlashRedirect`).
        """
        match, template = self.match(scope)
        if match is Match.NONE:
            match, template = self.match({**scope, "path": other_slash(scope["path"])})
        if match is not Match.FULL or template is None:
            return ADMIN
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        return self.table.get((method, template), ADMIN)

    def match(self, scope: Scope) -> tuple[Match, str | None]:
        """How the request ``scope`` matches the routes, and the path template of the route it matches."""
        partial = None
        for matches, template in self._routes:
            match, _ = matches(scope)
            if match is Match.FULL:
                return match, template
            if match is Match.PARTIAL and partial is None:
                partial = template
        return (Match.NONE, None) if partial is None else (Match.PARTIAL, partial)


def other_slash(path: str) -> str:
    """``path`` with its trailing slashes removed, or with one added.

    >>> other_slash("/v2/"), other_slash("/v2"), other_slash("/")
    ('/v2', '/v2/', '/')
    """
    if path == "/":
        return path
    return (path.rstrip("/") or "/") if path.endswith("/") else path + "/"


class SlashRedirect:
    """The router's fallback: a path that matches no route but would without (or with) its trailing slash is
    redirected there with 307 and a relative ``Location`` (path and query only); anything else goes to ``app``."""

    def __init__(self, app: ASGIApp, routes: RouteScopes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and path != "/":
            other = other_slash(path)
            if self.routes.match({**scope, "path": other})[0] is not Match.NONE:
                # one leading slash (never "//host", a network-path reference), the path percent-encoded again
                location = quote("/" + other.lstrip("/"), safe="/:@!$&'()*+,;=")
                query: bytes = scope.get("query_string", b"")
                if query:
                    location += "?" + query.decode("latin-1")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)
