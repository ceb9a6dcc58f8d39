"""MLflow's scoring protocol: ``/invocations``, ``/ping``, ``/health`` and ``/version``.

A client written for ``mlflow models serve`` (MLflow 2.x/3.x pyfunc scoring server) works unchanged:

* ``POST /invocations`` scores with the one model the server serves; ``POST /v1/models/{name}/invocations``
  names the model when the server serves several.
* The body is ``application/json`` with exactly one of ``dataframe_split``, ``dataframe_records``,
  ``instances`` or ``inputs`` (plus optional ``params``), or ``text/csv`` with a header row.
* The answer is ``{"predictions": [...], "version": N}``: the model's ``predict`` output, as MLflow's
  scikit-learn pyfunc gives it (class labels for a classifier), and the version that answered (also in
  the ``X-Shipyard-Version`` header; MLflow clients read ``predictions`` and ignore the rest).
* Errors are ``{"error_code": "BAD_REQUEST", "message": ...}``; input that does not fit the model is a
  400, as in MLflow, and an unsupported content type a 415.

Shipyard extension: ``"params": {"predict_method": "predict_proba"}`` answers with the class
probabilities (one row per input row, columns in the model's class order) instead of the labels.
MLflow's scikit-learn pyfunc ignores ``params`` and fixes the method when the model is logged
(``pyfunc_predict_fn``); shipyard lets each request choose.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import pandas as pd
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import InvalidInput, NotFound, UnsupportedMediaType
from shipyard.serving.dataplane import DataPlane, Prediction, check_columns, count_rows
from shipyard.serving.jsonio import json_response, parse_json, plain
from shipyard.serving.openapi import json_body, schema_with_example

CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPES = [CONTENT_TYPE_CSV, CONTENT_TYPE_JSON]  # in MLflow's order, as its 415 message lists them

DF_SPLIT = "dataframe_split"
DF_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
SUPPORTED_FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
PARAMS = "params"
PREDICT_METHODS = ("predict", "predict_proba")
PARSE_IN_THREAD_BYTES = 256 * 1024  # larger bodies are parsed (and their tables built) off the event loop
NO_LIMIT = sys.maxsize

REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    f"{{{', '.join(repr(f) for f in SUPPORTED_FORMATS)}}}"
)

INVOCATIONS_BODY = json_body(
    {
        "type": "object",
        "properties": {
            DF_SPLIT: {
                "type": "object",
                "description": '{"columns": [...], "data": [[...], ...], "index": [...] (optional)}',
            },
            DF_RECORDS: {"type": "array", "items": {"type": "object"}, "description": "rows as objects"},
            INSTANCES: {"type": "array", "description": "rows as objects or as lists of values"},
            INPUTS: {"description": "an object of columns, or rows as lists of values or objects"},
            PARAMS: {
                "type": "object",
                "description": 'optional; {"predict_method": "predict_proba"} answers with probabilities',
            },
        },
    },
    {DF_SPLIT: {"columns": ["amount", "merchant_id"], "data": [[12.5, 3]]}},
    extra_media_types={CONTENT_TYPE_CSV: schema_with_example({"type": "string"}, "amount,merchant_id\n12.5,3\n")},
)


# ---------------------------------------------------------------------- request parsing
def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` header, checked as MLflow checks it (UTF-8 only, JSON or CSV).

    >>> media_type("application/json; charset=UTF-8")
    'application/json'
    >>> media_type("text/plain")
    Traceback (most recent call last):
    ...
    shipyard.errors.UnsupportedMediaType: This predictor only supports the following content types: ...
    """
    mime, *pairs = (part.strip() for part in content_type.split(";"))
    parameters = {key.strip().lower(): value.strip().strip('"') for key, _, value in (p.partition("=") for p in pairs)}
    parameters.pop("", None)
    if parameters.pop("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("The scoring server only supports UTF-8; send the body with charset=utf-8")
    if parameters:
        raise UnsupportedMediaType(f"Unrecognized content type parameters: {', '.join(sorted(parameters))}")
    mime = mime.lower()
    if mime not in CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"This predictor only supports the following content types: Types: {CONTENT_TYPES}. Got '{content_type}'."
        )
    return mime


def csv_columns(body: bytes) -> int:
    """Columns in the header row of a CSV body, counted without parsing it (a quoted comma counts too).

    >>> csv_columns(b"a,b,c\\n1,2,3\\n"), csv_columns(b"a")
    (3, 1)
    """
    end = body.find(b"\n")
    return (body if end < 0 else body[:end]).count(b",") + 1


def _widest(rows: list[Any]) -> int:
    """The most values in one row of ``rows`` (lists of values or objects)."""
    return max((len(row) for row in rows if isinstance(row, (list, Mapping))), default=0)


def _split_frame(value: Any, max_columns: int) -> Any:
    """``dataframe_split``: a DataFrame when ``columns`` are given, else rows in the signature's column order."""
    if not isinstance(value, Mapping):
        kind = "list" if isinstance(value, list) else f"type {type(value).__name__}"
        raise InvalidInput(f"Dataframe split format must be a dictionary. Got {kind}.")
    keys = set(value)
    if "data" not in keys or keys - {"columns", "data", "index"}:
        raise InvalidInput(
            "Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields. "
            f"Got {sorted(keys)}."
        )
    data, columns, index = value["data"], value.get("columns"), value.get("index")
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise InvalidInput('"dataframe_split" "data" must be a list of rows, each a list of values')
    if columns is None:
        check_columns(_widest(data), max_columns, '"dataframe_split" "data"')
        return data
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidInput('"dataframe_split" "columns" must be a list of column names')
    check_columns(len(columns), max_columns, '"dataframe_split" "columns"')
    if len(set(columns)) != len(columns):
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        raise InvalidInput(f'"dataframe_split" "columns" names a column twice: {", ".join(duplicated)}')
    for number, row in enumerate(data):
        if len(row) != len(columns):
            raise InvalidInput(
                f'"dataframe_split" row {number} has {len(row)} values but there are {len(columns)} columns'
            )
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InvalidInput(f'"dataframe_split" "index" must be a list of {len(data)} labels, one per row')
    return pd.DataFrame(data, columns=columns, index=index)


def _records_frame(value: Any, max_columns: int) -> pd.DataFrame:
    """``dataframe_records``: a list of objects, one per row."""
    if not isinstance(value, list):
        kind = "dictionary" if isinstance(value, Mapping) else f"type {type(value).__name__}"
        raise InvalidInput(f"Dataframe records format must be a list of records. Got {kind}.")
    for number, record in enumerate(value):
        if not isinstance(record, Mapping):
            raise InvalidInput(
                f'"dataframe_records" row {number} is a {type(record).__name__}, not an object of column values'
            )
        check_columns(len(record), max_columns, f'"dataframe_records" row {number}')
    return pd.DataFrame.from_records(value)


def _instances(value: Any, max_columns: int) -> Any:
    """``instances`` (TF-serving rows): records become columns, as MLflow does; rows of values pass through."""
    if not isinstance(value, list):
        raise InvalidInput(f'"instances" must be a list of rows, got {type(value).__name__}')
    check_columns(_widest(value), max_columns, '"instances"')
    if not value or not isinstance(value[0], Mapping):
        return value
    fields = list(value[0])
    columns: dict[str, list[Any]] = {name: [] for name in fields}
    for number, record in enumerate(value):
        if not isinstance(record, Mapping):
            raise InvalidInput(f'"instances" mixes objects and other rows: row {number} is a {type(record).__name__}')
        if record.keys() != columns.keys():
            raise InvalidInput(
                f'every row of "instances" needs the same fields: row {number} has {sorted(record)}, '
                f"row 0 has {sorted(fields)}"
            )
        for name, item in record.items():
            columns[name].append(item)
    return columns


def _inputs(value: Any, max_columns: int) -> Any:
    """``inputs`` (TF-serving columns): an object of columns, or a list of rows (values or objects)."""
    if not isinstance(value, (list, Mapping)):
        raise InvalidInput(f'"inputs" must be an object of columns or a list of rows, got {type(value).__name__}')
    check_columns(len(value) if isinstance(value, Mapping) else _widest(value), max_columns, '"inputs"')
    return value


_PARSERS = {DF_SPLIT: _split_frame, DF_RECORDS: _records_frame, INSTANCES: _instances, INPUTS: _inputs}


def data_from_json(payload: Any, max_columns: int = NO_LIMIT) -> tuple[Any, dict[str, Any]]:
    """The model input and the ``params`` of an MLflow JSON body (413 if it has more than ``max_columns``).

    >>> data_from_json({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}})[0]["a"].tolist()
    [1, 2]
    >>> data_from_json({"inputs": {"a": [1]}, "params": {"predict_method": "predict_proba"}})
    ({'a': [1]}, {'predict_method': 'predict_proba'})
    """
    if not isinstance(payload, dict):
        kind = "a list" if isinstance(payload, list) else f"unexpected input type '{type(payload).__name__}'"
        raise InvalidInput(f"{REQUIRED_INPUT_FORMAT}. Received {kind}.")
    keys = [key for key in SUPPORTED_FORMATS if key in payload]
    if len(keys) != 1:
        raise InvalidInput(
            f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {list(payload)}. "
            'For example: {"dataframe_split": {"columns": [...], "data": [[...]]}} or {"inputs": [[...]]}'
        )
    params = payload.get(PARAMS)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(f'"params" must be a JSON object, got {type(params).__name__}')
    return _PARSERS[keys[0]](payload[keys[0]], max_columns), params


def _data_from_body(body: bytes, max_columns: int) -> tuple[Any, dict[str, Any]]:
    return data_from_json(parse_json(body), max_columns)


def read_csv(body: bytes, string_columns: list[str]) -> pd.DataFrame:
    """A CSV body with a header row as a DataFrame; ``string_columns`` stay text (``"007"`` is not 7)."""
    try:
        return pd.read_csv(io.BytesIO(body), dtype=dict.fromkeys(string_columns, object) or None)
    except Exception as exc:  # pandas raises many kinds (ParserError, EmptyDataError, UnicodeDecodeError, ...)
        raise InvalidInput(
            "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV-formatted Pandas "
            f"DataFrame produced using the `pandas.DataFrame.to_csv()` method. Error: '{exc}'"
        ) from None


# ---------------------------------------------------------------------- routes
def router(dataplane: DataPlane) -> APIRouter:
    """The MLflow scoring routes over ``dataplane``."""
    api = APIRouter(tags=["mlflow"])
    repository = dataplane.repository

    def string_columns(name: str) -> list[str]:
        signature = repository.current(name).model.signature
        if signature is None:
            return []
        return [c.name for c in signature.inputs if c.dtype in ("string", "category")]

    def max_columns(name: str) -> int:
        return dataplane.max_columns(repository.current(name))

    async def invoke(request: Request, name: str) -> Response:
        request.state.model = name
        mime = media_type(request.headers.get("content-type", ""))
        if mime == CONTENT_TYPE_CSV:
            body = await request.body()
            check_columns(csv_columns(body), max_columns(name), "the CSV header row")
            columns = string_columns(name)
            if len(body) > PARSE_IN_THREAD_BYTES:
                data: Any = await asyncio.to_thread(read_csv, body, columns)
            else:
                data = read_csv(body, columns)
            params: dict[str, Any] = {}
        else:
            body = await request.body()
            limit = max_columns(name)
            if len(body) > PARSE_IN_THREAD_BYTES:
                data, params = await asyncio.to_thread(_data_from_body, body, limit)
            else:
                data, params = _data_from_body(body, limit)
        method = params.get("predict_method", "predict")
        if method not in PREDICT_METHODS:
            raise InvalidInput(f'"params" "predict_method" must be one of {", ".join(PREDICT_METHODS)}, got {method!r}')
        if count_rows(data) == 0:
            raise InvalidInput("the input has no rows; send at least one")
        try:
            prediction = await dataplane.predict(
                name, data, route="mlflow", request_id=request.state.request_id, headers=request.scope["headers"]
            )
        except InvalidInput as exc:
            # SchemaError and PredictionFailed are 422 elsewhere; MLflow answers input the model cannot use with 400
            if exc.status != HTTPStatus.BAD_REQUEST:
                raise InvalidInput(exc.message) from None
            raise
        request.state.version = prediction.version  # also sent as the X-Shipyard-Version header
        return json_response({"predictions": predictions(prediction, method), "version": prediction.version})

    @api.post(
        "/invocations",
        openapi_extra=INVOCATIONS_BODY,
        summary="MLflow scoring: predict with the one served model",
    )
    async def invocations(request: Request) -> Response:
        names = repository.served_names()
        if not names:
            raise NotFound("this server serves no models, so /invocations has nothing to score with")
        if len(names) > 1:
            raise InvalidInput(
                f"this server serves several models ({', '.join(names)}); /invocations cannot tell which one "
                f"to use. POST to /v1/models/{{name}}/invocations instead, e.g. /v1/models/{names[0]}/invocations"
            )
        return await invoke(request, names[0])

    @api.post(
        "/v1/models/{name}/invocations",
        openapi_extra=INVOCATIONS_BODY,
        summary="MLflow scoring: predict with a named model",
    )
    async def named_invocations(request: Request, name: str) -> Response:
        return await invoke(request, name)

    async def ping() -> Response:
        ready = repository.ready and all(d.current is not None for d in repository.deployments.values())
        # MLflow answers "\n" as application/json: 200 once the model is loaded, else 404 (503 here, as /readyz).
        return Response("\n", status_code=200 if ready else 503, media_type=CONTENT_TYPE_JSON)

    api.add_api_route("/ping", ping, methods=["GET"], summary="MLflow health check: 200 once models are loaded")
    api.add_api_route("/health", ping, methods=["GET"], summary="MLflow health check (same as /ping)")

    @api.get("/version", summary="The server version, as plain text (MLflow answers its version)")
    async def version() -> Response:
        from shipyard import __version__

        return Response(__version__, media_type="text/plain")

    return api


def predictions(prediction: Prediction, method: str) -> Any:
    """What MLflow puts under ``"predictions"``: the labels, or the probability rows if asked for."""
    if method == "predict_proba":
        if prediction.scores.probabilities is None:
            raise InvalidInput(
                f"model {prediction.name!r} version {prediction.version} has no predict_proba; leave out "
                '"predict_method" to get its predictions'
            )
        return plain(prediction.scores.probabilities)
    return plain(prediction.scores.predictions)
