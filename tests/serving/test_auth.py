"""API keys on a real server (``shipyard serve --auth``), and the auth layer's cache in process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import shipyard
from shipyard.registry.keys import ApiKey, StoredKey, hash_secret
from shipyard.serving.auth import AuthMiddleware
from shipyard.serving.scopes import RouteScopes

PUBLIC = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/docs/oauth2-redirect",
    "/v2/health/live",
    "/v2/health/ready",
    "/ping",
    "/health",
    "/version",
    "/v2",
]


def native_body(X: pd.DataFrame) -> dict[str, Any]:
    return {
        "instances": [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in X.head(2).to_dict("records")
        ]
    }


def v2_body(X: pd.DataFrame) -> dict[str, Any]:
    rows = X.head(2)
    datatypes = {"amount": "FP64", "hour": "INT64", "channel": "BYTES", "is_foreign": "BOOL"}
    return {
        "inputs": [
            {"name": c, "shape": [len(rows)], "datatype": datatypes[c], "data": rows[c].tolist()} for c in rows.columns
        ]
    }


def mlflow_body(X: pd.DataFrame) -> dict[str, Any]:
    rows = X.head(2)
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_and_scopes_on_every_protocol(start_server: Callable[..., Any], fraud_model: Any) -> None:
    _pipe, X = fraud_model
    service = shipyard.connect()
    _, predict_key = service.create_key("app1", ["predict"])
    _, feedback_key = service.create_key("collector", ["feedback"])
    _, admin_key = service.create_key("ops", ["admin"])
    server = start_server("fraud", "--auth")
    client = server.client
    calls = [
        ("/v1/models/fraud/predict", native_body(X)),
        ("/v2/models/fraud/infer", v2_body(X)),
        ("/invocations", mlflow_body(X)),
    ]

    # no key: 401 in each protocol's own error shape, with WWW-Authenticate and the request id
    native, v2, mlflow = (client.post(path, json=body) for path, body in calls)
    for answer in (native, v2, mlflow):
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["x-request-id"]
    assert native.json()["detail"] == {"type": "Unauthorized"}
    assert "needs an API key" in native.json()["error"] and "Authorization: Bearer" in native.json()["error"]
    assert set(v2.json()) == {"error"} and "needs an API key" in v2.json()["error"]
    assert mlflow.json()["error_code"] == "UNAUTHENTICATED" and "needs an API key" in mlflow.json()["message"]
    assert client.get("/v1/models/fraud").status_code == 401
    assert client.get("/v1/models").status_code == 401

    # malformed, unknown and wrong keys: 401 too
    key_id, secret = predict_key.split("_", 2)[1:]
    wrong = f"sy_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    for bad in ["nonsense", f"sy_{'f' * 8 if key_id != 'f' * 8 else 'e' * 8}_{secret}", wrong]:
        answer = client.post(calls[0][0], json=calls[0][1], headers=bearer(bad))
        assert answer.status_code == 401 and "not valid" in answer.json()["error"], answer.text
    assert (
        client.post(calls[0][0], json=calls[0][1], headers={"Authorization": f"Basic {predict_key}"}).status_code == 401
    )

    # a valid key without the route's scope: 403, in each protocol's shape
    native, v2, mlflow = (client.post(path, json=body, headers=bearer(feedback_key)) for path, body in calls)
    for answer in (native, v2, mlflow):
        assert answer.status_code == 403, answer.text
        assert "www-authenticate" not in answer.headers
    assert native.json()["detail"] == {"type": "Forbidden"}
    assert "'collector' has the scopes feedback" in native.json()["error"]
    assert "needs the scope 'predict'" in v2.json()["error"]
    assert mlflow.json()["error_code"] == "PERMISSION_DENIED"
    assert client.get("/v1/models/fraud", headers=bearer(feedback_key)).status_code == 403
    assert client.post("/admin/reload", headers=bearer(predict_key)).status_code == 403
    # ... while the feedback route lets a feedback key through (to whatever answers there)
    assert client.post("/v1/models/fraud/feedback", json={}, headers=bearer(feedback_key)).status_code not in (401, 403)

    # predict and admin keys predict, by Authorization: Bearer or X-API-Key
    for headers in (bearer(predict_key), {"X-API-Key": predict_key}, bearer(admin_key), {"X-API-Key": admin_key}):
        answer = client.post(calls[0][0], json=calls[0][1], headers=headers)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2
        assert client.get("/v1/models/fraud", headers=headers).status_code == 200
    for path, body in [*calls[1:], ("/v1/models/fraud/invocations", mlflow_body(X))]:
        for key in (predict_key, admin_key):
            answer = client.post(path, json=body, headers=bearer(key))
            assert answer.status_code == 200, (path, answer.text)
            if path.startswith("/v2"):
                assert answer.json()["outputs"], answer.text
            else:
                assert len(answer.json()["predictions"]) == 2, answer.text
    assert client.get("/v2/models/fraud", headers=bearer(predict_key)).status_code == 200
    named = client.post("/v1/models/fraud/invocations", json=mlflow_body(X))
    assert named.status_code == 401 and named.json()["error_code"] == "UNAUTHENTICATED"
    assert client.post("/admin/reload", headers=bearer(admin_key)).status_code not in (401, 403)

    # the SDK client sends its key, and raises the matching errors
    from shipyard import errors

    with shipyard.Client(server.url, api_key=predict_key) as sdk:
        assert len(sdk.predict("fraud", X.head(3))) == 3
    with shipyard.Client(server.url) as sdk, pytest.raises(errors.Unauthorized, match="needs an API key"):
        sdk.predict("fraud", X.head(1))
    with shipyard.Client(server.url, api_key=feedback_key) as sdk, pytest.raises(errors.Forbidden, match="scope"):
        sdk.predict("fraud", X.head(1))

    # public routes need no key
    for path in PUBLIC:
        answer = client.get(path)
        assert answer.status_code not in (401, 403), (path, answer.text)
    for path in ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"]:
        assert client.get(path).status_code == 200, path
    assert client.post("/v2", json={}).status_code == 401  # only GET /v2 is public

    # the last use is recorded (in the background) for the listing
    deadline = time.monotonic() + 5
    while (used := {k.name: k.last_used_at for k in service.list_keys()})["app1"] is None:
        assert time.monotonic() < deadline, used
        time.sleep(0.1)
    assert used["ops"] is not None and used["collector"] is not None  # collector passed on the feedback route

    # no key and no secret ever reaches the log
    server_log = server.log()
    for key in (predict_key, feedback_key, admin_key):
        assert key not in server_log and key.split("_", 2)[2] not in server_log


def test_a_revoked_key_is_refused_within_seconds(start_server: Callable[..., Any], fraud_model: Any) -> None:
    _pipe, X = fraud_model
    server = start_server("fraud", "--auth")
    service = shipyard.connect()
    _, key = service.create_key("app1", ["predict"])  # created while the server runs
    path, body = "/v1/models/fraud/predict", native_body(X)
    assert server.client.post(path, json=body, headers=bearer(key)).status_code == 200

    service.revoke_key("app1")
    revoked_at = time.monotonic()
    while (answer := server.client.post(path, json=body, headers=bearer(key))).status_code == 200:
        assert time.monotonic() - revoked_at < 3.0, "the revoked key still worked after 3 s"
        time.sleep(0.05)
    assert answer.status_code == 401, answer.text
    assert "'app1' was revoked" in answer.json()["error"]
    assert key not in server.log()


def test_without_auth_on_loopback_no_key_is_needed(start_server: Callable[..., Any], fraud_model: Any) -> None:
    _pipe, X = fraud_model
    server = start_server("fraud")
    answer = server.client.post("/v1/models/fraud/predict", json=native_body(X))
    assert answer.status_code == 200, answer.text
    assert server.client.get("/v1/models/fraud").status_code == 200
    assert server.client.post("/v2/models/fraud/infer", json=v2_body(X)).status_code == 200
    assert server.client.post("/invocations", json=mlflow_body(X)).status_code == 200


# ---------------------------------------------------------------------- the cache, in process
class CountingKeys:
    """A key store that counts its database lookups and can be told that a key is now revoked."""

    def __init__(self, record: ApiKey, salt: str, secret: str) -> None:
        self.stored = StoredKey(record, salt, hash_secret(salt, secret))
        self.lookups = 0
        self.touched: list[str] = []

    def find(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        time.sleep(0.05)  # a slow database: concurrent requests must share one lookup
        return self.stored if key_id == self.stored.key.key_id else None

    def touch(self, key_id: str) -> None:
        self.touched.append(key_id)


def test_key_rows_are_cached_and_looked_up_once_per_key_id() -> None:
    secret = "s" * 43
    record = ApiKey("app1", "0a1b2c3d", ("predict",), datetime.now(UTC), "tester")
    keys = CountingKeys(record, "00ff", secret)

    async def predict(request: Request) -> JSONResponse:
        return JSONResponse({"key": request.scope["state"]["api_key"]})

    inner = Starlette(routes=[Route("/v1/models/{name}/predict", predict, methods=["POST"])])
    app = AuthMiddleware(
        inner,
        service=SimpleNamespace(keys=keys),  # type: ignore[arg-type]
        routes=RouteScopes(inner.routes),
        required=True,
        cache_seconds=0.5,
    )
    key = f"sy_{record.key_id}_{secret}"

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(
                *(client.post("/v1/models/m/predict", headers=bearer(key)) for _ in range(20))
            )
            assert [a.status_code for a in answers] == [200] * 20
            assert answers[0].json() == {"key": "app1"}
            assert keys.lookups == 1  # twenty concurrent requests, one lookup
            wrong = await client.post("/v1/models/m/predict", headers=bearer(key[:-1] + "t"))
            assert wrong.status_code == 401 and keys.lookups == 1  # the secret is checked on every request
            unknown = f"sy_ffffffff_{secret}"
            for _ in range(3):
                assert (await client.post("/v1/models/m/predict", headers=bearer(unknown))).status_code == 401
            assert keys.lookups == 2  # unknown key ids are cached too
            await asyncio.sleep(0.6)
            keys.stored = StoredKey(
                ApiKey("app1", record.key_id, ("predict",), record.created_at, "tester", datetime.now(UTC)),
                keys.stored.salt,
                keys.stored.secret_hash,
            )
            revoked = await client.post("/v1/models/m/predict", headers=bearer(key))
            assert revoked.status_code == 401 and keys.lookups == 3
            await asyncio.sleep(0.1)
            assert keys.touched == [record.key_id]  # last use recorded once, not per request

    asyncio.run(scenario())
