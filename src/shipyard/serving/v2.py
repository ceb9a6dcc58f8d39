"""The Open Inference Protocol (KServe V2) over REST: ``/v2`` health, metadata and inference routes.

The routes only speak HTTP (paths, headers, compressed bodies, binary answers); the protocol's data is
converted by :mod:`shipyard.serving.v2_codec` (request and response bodies), :mod:`shipyard.serving.v2_tensors`
(tensor data) and :mod:`shipyard.serving.v2_signature` (what tensors a model takes and gives), and
predictions come from the shared :class:`~shipyard.serving.dataplane.DataPlane`.
"""

from __future__ import annotations

import asyncio
import zlib

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.jsonio import json_response
from shipyard.serving.openapi import json_body
from shipyard.serving.v2_codec import check_requested_outputs, infer_response, parse_request
from shipyard.serving.v2_signature import TENSOR_INPUT, features, metadata_inputs, metadata_outputs, output_names
from shipyard.serving.v2_tensors import DTYPES

HEADER_LENGTH = "inference-header-content-length"
_MAX_VERSION = 2**63 - 1

INFER_BODY = json_body(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "inputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string", "enum": list(DTYPES)},
                        "data": {"type": "array", "description": "flat (row-major) or nested"},
                    },
                    "required": ["name", "shape", "datatype", "data"],
                },
            },
            "outputs": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
        "required": ["inputs"],
    },
    {
        "id": "42",
        "inputs": [{"name": TENSOR_INPUT, "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}],
    },
)


# ---------------------------------------------------------------------- routes
def _version_or_alias(name: str, text: str) -> tuple[int | None, str | None]:
    """A ``{version}`` path segment: a version number, or else an alias name."""
    if text.isascii() and text.isdigit():
        if int(text) > _MAX_VERSION:  # beyond what the registry can store
            raise NotFound(f"model {name!r} has no version {text}")
        return int(text), None
    return None, text


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, inflated when sent with ``Content-Encoding: gzip`` or ``deflate`` (up to ``limit``)."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid {encoding} data: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the inflated request body is larger than the limit of {limit} bytes")
    if not inflater.eof:
        raise InvalidInput(f"the {encoding} body is truncated")
    return inflated


def router(dataplane: DataPlane) -> APIRouter:
    """The Open Inference Protocol V2 routes over ``dataplane``."""
    api = APIRouter(tags=["v2"])
    repository = dataplane.repository

    @api.get("/v2", summary="Server metadata")
    async def server_metadata() -> Response:
        from shipyard import __version__

        return json_response({"name": "shipyard", "version": __version__, "extensions": []})

    @api.get("/v2/health/live", summary="200 (empty body) while the server runs")
    async def live() -> Response:
        return Response(status_code=200)

    @api.get("/v2/health/ready", summary="200 (empty body) once every model is loaded, else 503")
    async def ready() -> Response:
        return Response(status_code=200 if repository.ready else 503)

    async def _metadata(name: str, version_text: str | None) -> Response:
        if version_text is None:
            served = repository.current(name)
        else:
            version, alias = _version_or_alias(name, version_text)
            served = await repository.get(name, version=version, alias=alias)
        registered = await asyncio.to_thread(repository.service.list_versions, name)
        return json_response(
            {
                "name": name,
                "versions": [str(v.version) for v in sorted(registered, key=lambda v: v.version)],
                "platform": served.model.flavor,
                "inputs": metadata_inputs(served.model.signature),
                "outputs": metadata_outputs(
                    served.model.signature, served.model.classes, has_predict_proba=served.model.has_predict_proba
                ),
            }
        )

    @api.get("/v2/models/{name}", summary="Model metadata: versions, platform, input and output tensors")
    async def model_metadata(name: str) -> Response:
        return await _metadata(name, None)

    @api.get("/v2/models/{name}/versions/{version}", summary="Metadata of one version (a number or an alias)")
    async def version_metadata(name: str, version: str) -> Response:
        return await _metadata(name, version)

    @api.get("/v2/models/{name}/ready", summary="200 (empty body) when the model is ready")
    async def model_ready(name: str) -> Response:
        repository.current(name)  # 404 when not served, 503 while loading
        return Response(status_code=200)

    @api.get("/v2/models/{name}/versions/{version}/ready", summary="200 (empty body) when the version is ready")
    async def version_ready(name: str, version: str) -> Response:
        number, alias = _version_or_alias(name, version)
        await repository.get(name, version=number, alias=alias)  # loads it on demand, as inference would
        return Response(status_code=200)

    async def _infer(request: Request, name: str, version_text: str | None) -> Response:
        version, alias = _version_or_alias(name, version_text) if version_text is not None else (None, None)
        served = await repository.get(name, version=version, alias=alias)
        request.state.model = served.name
        body = await _read_body(request, dataplane.settings.max_body_bytes)
        infer = parse_request(body, request.headers.get(HEADER_LENGTH), dataplane.max_columns(served))
        check_requested_outputs(infer, output_names(served.model.has_predict_proba))
        data = features(served.model.signature, infer.inputs)
        prediction = await dataplane.predict(
            name,
            data,
            version=version,
            alias=alias,
            route="v2",
            request_id=request.state.request_id,
            headers=request.scope["headers"],
        )
        request.state.version = prediction.version
        payload, chunks = infer_response(
            prediction.name, prediction.version, prediction.scores, infer, request.state.request_id
        )
        if not chunks:
            return json_response(payload)
        head = orjson.dumps(payload)
        return Response(
            head + b"".join(chunks),
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )

    @api.post("/v2/models/{name}/infer", openapi_extra=INFER_BODY, summary="Inference with the served version")
    async def infer(request: Request, name: str) -> Response:
        return await _infer(request, name, None)

    @api.post(
        "/v2/models/{name}/versions/{version}/infer",
        openapi_extra=INFER_BODY,
        summary="Inference with one version (a number or an alias)",
    )
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await _infer(request, name, version)

    return api
