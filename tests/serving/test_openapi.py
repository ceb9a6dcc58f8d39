"""The OpenAPI document declares the request body of every prediction and feedback route, as the modules build it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

import shipyard
from shipyard.serving import mlflow, native, online, v2
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings


def test_prediction_routes_document_their_request_bodies(home: Any) -> None:
    app = create_app(ServeSettings(), shipyard.connect())

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # no lifespan: the document needs no loaded model
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
            return await client.get("/openapi.json")

    answer = asyncio.run(fetch())
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    expected = {
        "/v1/models/{name}/predict": native.PREDICT_BODY,
        "/v1/models/{name}/versions/{version}/predict": native.PREDICT_BODY,
        "/v2/models/{name}/infer": v2.INFER_BODY,
        "/v2/models/{name}/versions/{version}/infer": v2.INFER_BODY,
        "/invocations": mlflow.INVOCATIONS_BODY,
        "/v1/models/{name}/invocations": mlflow.INVOCATIONS_BODY,
        "/v1/models/{name}/feedback": online.FEEDBACK_BODY,
    }
    documented = {
        path: ops["post"]["requestBody"] for path, ops in paths.items() if "requestBody" in ops.get("post", {})
    }
    assert documented == {path: body["requestBody"] for path, body in expected.items()}
    for body in documented.values():
        assert body["required"] is True
        assert {"schema", "example"} <= set(body["content"]["application/json"])
    assert list(documented["/invocations"]["content"]) == ["application/json", "text/csv"]
    assert documented["/invocations"]["content"]["text/csv"]["example"] == "amount,merchant_id\n12.5,3\n"
