"""Which API-key scope each route needs, decided by the route a request matches.

The scope of a request is that of the route it matches, found with the app's own route objects (the same
``matches`` the router calls, in the router's order) and looked up in :data:`ROUTE_SCOPES` by method and path
template: never from the text of the path, so a model named ``invocations`` or ``feedback`` changes nothing. A route
missing from the table, a path that matches no route and a method that a route does not allow all need ``admin``.

Slash redirects (``/v2/`` to ``/v2``) are answered here too, with a relative ``Location``: the router's own would
copy the request's ``Host`` header into it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from fastapi.routing import iter_route_contexts
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match, Mount, Route
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
    ("GET", "/docs/assets/{name}"): PUBLIC,
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
    ("GET", "/ui/api/deployments"): ADMIN,
    ("GET", "/ui/api/online"): ADMIN,
    ("GET", "/ui/api/overview"): ADMIN,
    ("GET", "/ui/api/models/{name}"): ADMIN,
    ("POST", "/ui/login"): PUBLIC,  # checks the key it is sent itself
    ("POST", "/ui/logout"): PUBLIC,
}
"""The scope each route needs, by method and path template (``HEAD`` is looked up as ``GET``).

``None`` marks a public route. Every route of the app must be listed; one that is not needs ``admin``.
"""

Matcher = Callable[[Scope], tuple[Match, Scope]]
ANY_METHOD = "*"
"""The method of a route that takes every method (an ASGI app or a mount) in :data:`ROUTE_SCOPES` keys."""


@dataclass(frozen=True)
class _Route:
    template: str
    path_regex: re.Pattern[str] | None  # None: ask the route's own ``matches``
    methods: frozenset[str] | None  # None: every method
    matches: Matcher


class RouteScopes:
    """The scope a request needs, decided by the route of ``routes`` that it matches (first match wins).

    ``routes`` are an app's routes (FastAPI's included routers are flattened into their routes); the table is
    :data:`ROUTE_SCOPES` unless given. Starlette routes and mounts are matched as their own ``matches`` does
    (their path regex on the path below ``root_path``, then the method), without building its child scope.
    """

    def __init__(self, routes: Sequence[BaseRoute], table: Mapping[tuple[str, str], str | None] = ROUTE_SCOPES):
        self.table = dict(table)
        self._routes: list[_Route] = []
        self._declared: list[tuple[str, str]] = []
        for context in iter_route_contexts(routes):
            template = context.path
            if template is None:  # pragma: no cover - every Route and Mount has a path
                continue
            methods = frozenset(context.methods) if context.methods else None
            plain = isinstance(context.original_route, (Route, Mount))
            regex = context.path_regex if plain else None
            self._routes.append(_Route(template, regex, methods, context.matches))
            for method in sorted(methods or {ANY_METHOD}):
                if method != "HEAD":
                    self._declared.append((method, template))
        self._combined = _combine(self._routes)

    def route_keys(self) -> list[tuple[str, str]]:
        """The ``(method, path template)`` of every route, as :data:`ROUTE_SCOPES` keys them (``HEAD`` left out)."""
        return list(self._declared)

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
        key = (method, template)
        if key in self.table:
            return self.table[key]
        return self.table.get((ANY_METHOD, template), ADMIN)

    def match(self, scope: Scope) -> tuple[Match, str | None]:
        """How the request ``scope`` matches the routes, and the path template of the route it matches."""
        path = route_path(scope)
        method: str = scope["method"]
        if self._combined is not None:  # one regex search instead of one per route
            by_method, any_method, every = self._combined
            found = by_method.get(method, any_method).match(path)
            if found is not None and found.lastgroup is not None:
                return Match.FULL, self._routes[int(found.lastgroup[1:])].template
            found = every.match(path)  # the path of a route, with a method it does not take: 405
            if found is not None and found.lastgroup is not None:
                return Match.PARTIAL, self._routes[int(found.lastgroup[1:])].template
            return Match.NONE, None
        partial = None
        for route in self._routes:
            if route.path_regex is not None:
                if route.path_regex.match(path) is None:
                    continue
                match = Match.FULL if route.methods is None or method in route.methods else Match.PARTIAL
            else:
                match, _ = route.matches(scope)
            if match is Match.FULL:
                return match, route.template
            if match is Match.PARTIAL and partial is None:
                partial = route.template
        return (Match.NONE, None) if partial is None else (Match.PARTIAL, partial)


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
_NEVER = re.compile(r"(?!)")

Combined = tuple[dict[str, re.Pattern[str]], re.Pattern[str], re.Pattern[str]]


def _combine(routes: Sequence[_Route]) -> Combined | None:
    """One alternation of every route's path regex per method (and one for a method no route takes, one for
    every route), in route order, each branch the group ``r<index>``; ``None`` unless every route is plain.

    The regex engine tries the branches in order, so the first route whose path matches wins, as in the router.
    """
    bodies = []
    for route in routes:
        pattern = route.path_regex.pattern if route.path_regex is not None else ""
        if not (pattern.startswith("^") and pattern.endswith("$")):
            return None
        bodies.append(_NAMED_GROUP.sub("(?:", pattern[1:-1]))

    def alternation(indexes: list[int]) -> re.Pattern[str]:
        if not indexes:
            return _NEVER
        return re.compile("^(?:" + "|".join(f"(?P<r{i}>{bodies[i]})" for i in indexes) + ")$")

    methods = {method for route in routes for method in route.methods or ()}
    by_method = {
        method: alternation([i for i, r in enumerate(routes) if r.methods is None or method in r.methods])
        for method in methods
    }
    any_method = alternation([i for i, r in enumerate(routes) if r.methods is None])
    return by_method, any_method, alternation(list(range(len(routes))))


def route_path(scope: Scope) -> str:
    """The path that routes match: ``scope["path"]`` below ``scope["root_path"]`` (as Starlette's router takes it).

    >>> route_path({"path": "/api/v2", "root_path": "/api"}), route_path({"path": "/v2", "root_path": ""})
    ('/v2', '/v2')
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


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
