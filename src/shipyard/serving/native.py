"""shipyard's own REST protocol: ``/v1/models/...``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import InvalidInput
from shipyard.serving.dataplane import DataPlane, Prediction
from shipyard.serving.jsonio import json_response, plain, read_object
from shipyard.serving.openapi import json_body

PREDICT_BODY = json_body(
    {
        "type": "object",
        "properties": {
            "instances": {"type": "array", "items": {"type": "object"}, "description": "rows as objects"},
            "inputs": {"type": "object", "description": "columns: {name: [values]}"},
        },
    },
    {"instances": [{"amount": 12.5, "merchant_id": 3}]},
)


def rows_from_body(body: dict[str, Any]) -> Any:
    """The rows of a native request: ``instances`` (records or rows of values) or ``inputs`` (columns)."""
    keys = [k for k in ("instances", "inputs") if k in body]
    if len(keys) != 1:
        raise InvalidInput(
            'the body needs exactly one of "instances" (a list of rows) or "inputs" (an object of columns), '
            f"got {sorted(body) or 'neither'}"
        )
    data = body[keys[0]]
    if not isinstance(data, (list, dict)):
        raise InvalidInput(f'"{keys[0]}" must be a list of rows or an object of columns, got {type(data).__name__}')
    if isinstance(data, list) and not data:
        raise InvalidInput(f'"{keys[0]}" is empty; send at least one row')
    return data


def prediction_payload(prediction: Prediction, request_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": prediction.name,
        "version": prediction.version,
        "predictions": plain(prediction.scores.predictions),
    }
    if prediction.scores.probabilities is not None:
        payload["probabilities"] = plain(prediction.scores.probabilities)
        payload["classes"] = prediction.classes
    payload["request_id"] = request_id
    return payload


async def predict_json(
    dataplane: DataPlane,
    name: str,
    version: int | None,
    body: dict[str, Any],
    allow_extra: bool,
    state: dict[str, Any],
    headers: Sequence[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """The native predict answer for a parsed body; shared by the FastAPI route and the fast path.

    ``headers`` (the raw request headers) are read only for a sticky deployment's ``X-Shipyard-Key``.
    """
    if name in dataplane.repository.deployments:  # only served names become metric labels
        state["model"] = name
    data = rows_from_body(body)
    prediction = await dataplane.predict(
        name,
        data,
        version=version,
        allow_extra=allow_extra,
        route="native",
        request_id=state["request_id"],
        headers=headers,
    )
    state["version"] = prediction.version
    recorder = dataplane.recorders.get(name)  # online models only: kept for the feedback's request-id join
    if recorder is not None:
        recorder.add(name, prediction.version, state["request_id"], data)
    return prediction_payload(prediction, state["request_id"])


def allow_extra_flag(query: str) -> bool:
    """Whether ``?allow_extra=true`` is in a query string."""
    if "allow_extra=" not in query:
        return False
    values = [part.split("=", 1)[1] for part in query.split("&") if part.startswith("allow_extra=")]
    return any(value.lower() in ("1", "true", "yes") for value in values)


def router(dataplane: DataPlane) -> APIRouter:
    """The native routes over ``dataplane``."""
    api = APIRouter(tags=["native"])

    async def _predict(request: Request, name: str, version: int | None) -> Response:
        body = await read_object(request)
        state = request.scope.setdefault("state", {})
        query = request.url.query
        headers = request.scope["headers"]
        payload = await predict_json(dataplane, name, version, body, allow_extra_flag(query), state, headers)
        return json_response(payload)

    @api.post("/v1/models/{name}/predict", openapi_extra=PREDICT_BODY, summary="Predict with the served version")
    async def predict(request: Request, name: str) -> Response:
        return await _predict(request, name, None)

    @api.post(
        "/v1/models/{name}/versions/{version}/predict", openapi_extra=PREDICT_BODY, summary="Predict with one version"
    )
    async def predict_version(request: Request, name: str, version: int) -> Response:
        return await _predict(request, name, version)

    @api.get("/v1/models", summary="Served models")
    async def list_models() -> Response:
        repo = dataplane.repository
        models = []
        for name in repo.served_names():
            deployment = repo.deployments[name]
            current = deployment.current
            route = deployment.route
            models.append(
                {
                    "name": name,
                    "ref": str(deployment.ref),
                    "version": current.version if current else None,
                    "flavor": current.model.flavor if current else None,
                    "ready": current is not None,
                    "deployment": route.spec.describe() if route is not None else None,
                    "deployment_revision": deployment.revision,
                }
            )
        return json_response({"models": models})

    @api.get("/v1/models/{name}", summary="One served model: versions, aliases, signature")
    async def describe(name: str) -> Response:
        repo = dataplane.repository
        served = repo.current(name)
        registered = await asyncio.to_thread(repo.service.get_model, name)
        versions = await asyncio.to_thread(repo.service.list_versions, name)
        return json_response(
            {
                "name": name,
                "ref": str(repo.deployments[name].ref),
                "served_version": served.version,
                "flavor": served.model.flavor,
                "signature": served.info.signature,
                "classes": served.model.classes,
                "aliases": registered.aliases,
                "versions": [
                    {
                        "version": v.version,
                        "flavor": v.flavor,
                        "created_at": v.created_at.isoformat(),
                        "creator": v.creator,
                        "sha256": v.sha256,
                        "metrics": v.metrics,
                        "aliases": list(v.aliases),
                    }
                    for v in versions
                ],
            }
        )

    return api
