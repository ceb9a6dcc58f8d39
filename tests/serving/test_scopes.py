"""Every route of the server against every API-key scope, decided by the matched route (never the path's text);
the loopback rule of ``auth_required``; relative slash redirects.

In process (httpx over ASGI, no lifespan: ``preload`` loads the model while the app is built), on a real SQLite
registry with a model named ``invocations``, the name that once turned admin routes into predict routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.serving.inprocess import call

import shipyard
from shipyard.registry.keys import SCOPES
from shipyard.serving.app import create_app
from shipyard.serving.auth import AuthMiddleware
from shipyard.serving.scopes import ROUTE_SCOPES, RouteScopes
from shipyard.serving.settings import ServeSettings

NO_KEY = "no key"

# The reviewed answer for every route of the app: the scope it needs, None for public. A new route fails
# test_the_table_lists_every_route_of_the_app until it is added here and to ROUTE_SCOPES.
EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/redoc"): None,
    ("GET", "/docs/assets/{name}"): None,
    ("POST", "/ui/login"): None,
    ("POST", "/ui/logout"): None,
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/v2"): None,
    ("GET", "/v2/health/live"): None,
    ("GET", "/v2/health/ready"): None,
    ("GET", "/ping"): None,
    ("GET", "/health"): None,
    ("GET", "/version"): None,
    ("POST", "/v1/models/{name}/predict"): "predict",
    ("POST", "/v1/models/{name}/versions/{version}/predict"): "predict",
    ("GET", "/v1/models"): "predict",
    ("GET", "/v1/models/{name}"): "predict",
    ("GET", "/v2/models/{name}"): "predict",
    ("GET", "/v2/models/{name}/versions/{version}"): "predict",
    ("GET", "/v2/models/{name}/ready"): "predict",
    ("GET", "/v2/models/{name}/versions/{version}/ready"): "predict",
    ("POST", "/v2/models/{name}/infer"): "predict",
    ("POST", "/v2/models/{name}/versions/{version}/infer"): "predict",
    ("POST", "/invocations"): "predict",
    ("POST", "/v1/models/{name}/invocations"): "predict",
    ("POST", "/v1/models/{name}/feedback"): "feedback",
    ("GET", "/ui"): "admin",
    ("GET", "/ui/static/plotly.min.js"): "admin",
    ("GET", "/ui/api/models"): "admin",
    ("GET", "/ui/api/deployments"): "admin",
    ("GET", "/ui/api/online"): "admin",
    ("GET", "/ui/api/overview"): "admin",
    ("GET", "/ui/api/models/{name}"): "admin",
}


def allowed(key: str, needed: str | None) -> bool:
    return needed is None or key in ("admin", needed)


def concrete(template: str, name: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: {"name": name, "version": "1"}[m.group(1)], template)


def guarded(app: Any) -> AuthMiddleware:
    """The auth layer inside the app that :func:`create_app` returns."""
    while not isinstance(app, AuthMiddleware):
        app = app.app
    return app


@pytest.fixture
def server(home: Path) -> Iterator[tuple[Any, dict[str, str], pd.DataFrame]]:
    """An app with auth on serving a model named ``invocations``, and one key per scope."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (X["a"] > 0).astype(int)
    shipyard.register(LogisticRegression().fit(X, y), "invocations", X=X, y=y)
    shipyard.set_alias("invocations", "production", 1)
    service = shipyard.connect()
    keys = {scope: service.create_key(f"key-{scope}", [scope])[1] for scope in SCOPES}
    app = create_app(ServeSettings(auth=True), service, preload=True)
    yield app, keys, X
    service.store.close()


def headers_for(keys: dict[str, str], key: str) -> dict[str, str]:
    return {} if key == NO_KEY else {"Authorization": f"Bearer {keys[key]}"}


def test_the_table_lists_every_route_of_the_app(server: tuple[Any, dict[str, str], pd.DataFrame]) -> None:
    app, _keys, _X = server
    routes = guarded(app).routes.route_keys()
    assert len(routes) == len(set(routes)), "two routes with one method and path template"
    assert set(routes) == set(EXPECTED), "a route without a reviewed scope (or a table entry without a route)"
    assert dict(ROUTE_SCOPES) == EXPECTED


def test_every_route_answers_every_scope_as_the_table_says(server: tuple[Any, dict[str, str], pd.DataFrame]) -> None:
    app, keys, _X = server
    cases = [(route, key) for route in guarded(app).routes.route_keys() for key in (NO_KEY, *SCOPES)]
    requests: list[tuple[str, str, dict[str, str], Any]] = [
        (method, concrete(template, "invocations"), headers_for(keys, key), {} if method == "POST" else None)
        for (method, template), key in cases
    ]
    wrong = []
    for ((method, template), key), answer in zip(cases, call(app, requests), strict=True):
        needed = EXPECTED[(method, template)]
        if allowed(key, needed):
            ok = answer.status_code not in (401, 403)
        elif key == NO_KEY:
            ok = answer.status_code == 401 and "needs an API key" in answer.text
        else:
            ok = answer.status_code == 403 and f"needs the scope {needed!r}" in answer.text
        if not ok:
            wrong.append((method, template, key, answer.status_code, answer.text[:120]))
    assert not wrong, wrong


def test_a_model_named_like_a_route_gets_no_other_scope(server: tuple[Any, dict[str, str], pd.DataFrame]) -> None:
    """Regression: ``/ui/api/models/invocations`` ended in ``/invocations`` and so needed only ``predict``."""
    app, keys, X = server
    body = {"dataframe_split": {"columns": list(X.columns), "data": X.head(2).to_numpy().tolist()}}
    predict, feedback, admin = (headers_for(keys, k) for k in ("predict", "feedback", "admin"))
    answers = call(
        app,
        [
            ("GET", "/ui/api/models/invocations", predict, None),
            ("GET", "/ui/api/models/invocations/", predict, None),  # redirected: as the route it leads to
            ("GET", "/ui/api/models/invocations", admin, None),
            ("POST", "/v1/models/invocations/invocations", predict, body),
            ("GET", "/v1/models/feedback", feedback, None),  # a name ending like the feedback route
            ("GET", "/ui/api/models/x/invocations", predict, None),  # no route: admin only
            ("HEAD", "/healthz", {}, None),  # a method the route does not allow: admin only
        ],
    )
    assert [a.status_code for a in answers] == [403, 403, 200, 200, 403, 403, 401], [a.text for a in answers]
    assert "needs the scope 'admin'" in answers[0].json()["error"]  # in the dashboard's error shape, not MLflow's
    assert answers[2].json()["name"] == "invocations"
    assert len(answers[3].json()["predictions"]) == 2


def test_a_route_missing_from_the_table_needs_admin() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    routes = [Route("/healthz", hello), Route("/new/{thing}", hello)]
    scopes = RouteScopes(Starlette(routes=routes).routes)
    assert scopes.route_keys() == [("GET", "/healthz"), ("GET", "/new/{thing}")]
    http = {"type": "http", "method": "GET", "root_path": ""}
    assert scopes.required({**http, "path": "/healthz"}) is None
    assert scopes.required({**http, "path": "/new/x"}) == "admin"
    assert scopes.required({**http, "path": "/nothing"}) == "admin"


def test_the_auth_layer_matches_routes_as_the_router_does(home: Path) -> None:
    from fastapi import FastAPI
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Match, WebSocketRoute

    app = guarded(create_app(ServeSettings(auth=True), shipyard.connect()))
    fastapi_app = app.app
    while not isinstance(fastapi_app, FastAPI):
        fastapi_app = fastapi_app.app
    routes = list(fastapi_app.routes)
    contexts = list(iter_route_contexts(routes))

    def reference(scope: dict[str, Any]) -> tuple[Match, str | None]:
        partial = None
        for context in contexts:
            match, _ = context.matches(scope)
            if match is Match.FULL:
                return match, context.path
            if match is Match.PARTIAL and partial is None:
                partial = context.path
        return (Match.NONE, None) if partial is None else (Match.PARTIAL, partial)

    async def socket(websocket: Any) -> None:  # pragma: no cover - never called
        pass

    combined = RouteScopes(routes)
    one_by_one = RouteScopes([*routes, WebSocketRoute("/ws", socket)])  # not a plain route: matched in a loop
    names = ["invocations", "feedback", "predict", "a.b-c_1", "x%2Fy"]
    paths = {concrete(t, n) for _m, t in EXPECTED for n in names} | {"/", "/v2/", "/nothing", "/v1/models/a/b/predict"}
    paths |= {p + "/" for p in paths} | {"/api" + p for p in paths}
    for path in sorted(paths):
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"):
            for root_path in ("", "/api"):
                scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
                expected = reference(scope)
                assert combined.match(scope) == expected, scope
                assert one_by_one.match(scope) == expected, scope


# ---------------------------------------------------------------------- redirects
def test_slash_redirects_are_relative_whatever_the_host_header(home: Path) -> None:
    service = shipyard.connect()
    for auth in (True, False):
        app = create_app(ServeSettings(auth=auth), service)
        evil = {"Host": "evil.example"}
        answers = call(
            app,
            [
                ("GET", "/v2/", evil, None),
                ("GET", "/healthz/?full=1", evil, None),
                ("GET", "http://test//v2/", evil, None),  # no "//v2" route, so no "Location: //v2"
            ],
        )
        first, second, third = answers
        assert first.status_code == 307 and first.headers["location"] == "/v2", first.headers
        assert second.status_code == 307 and second.headers["location"] == "/healthz?full=1"
        assert third.status_code in (401, 404) and "location" not in third.headers
        assert all("evil.example" not in a.headers.get("location", "") for a in answers)
    service.store.close()


# ---------------------------------------------------------------------- loopback
@pytest.mark.parametrize(
    ("host", "required"),
    [
        ("127.attacker.example", True),  # not a loopback address: a name, which resolves elsewhere or not at all
        ("127.0.0.1.attacker.example", True),
        ("0.0.0.0", True),
        ("::", True),
        ("", True),
        ("localhost", False),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
    ],
)
def test_auth_is_off_only_when_every_bound_address_is_loopback(host: str, required: bool) -> None:
    assert ServeSettings(host=host).auth_required() is required
    assert ServeSettings(host=host, auth=True).auth_required() is True
    assert ServeSettings(host=host, auth=False).auth_required() is False
