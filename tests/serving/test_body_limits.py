"""Bodies over the server's limits: chunked bodies over max_body_bytes and tables too wide to build (issue 14).

In process: the real app over httpx's ASGI transport, which streams a generator body chunk by chunk
(``Transfer-Encoding: chunked``, no ``Content-Length``), its lifespan run so that the models are loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Message

import shipyard
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings

LIMIT = 4_000
ROW = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'


def quiet_settings(**overrides: Any) -> ServeSettings:
    """Settings of an in-process server with no background writers (prediction log, monitor, rollouts)."""
    return ServeSettings(
        logging={"enabled": False}, monitoring={"enabled": False}, rollouts=False, online={"learn": False}, **overrides
    )


@contextlib.asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan (models load at start-up) and yield a client that talks to it in process."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), 60)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), 60)
        await task


def chunks(prefix: bytes, row: bytes, total: int) -> Iterator[bytes]:
    """A JSON-ish body of about ``total`` bytes, sent in small chunks (the server cannot know its size up front)."""
    yield prefix
    sent = len(prefix)
    while sent < total:
        yield row + b","
        sent += len(row) + 1
    yield row + b"]}"


async def astream(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("path", "prefix", "error"),
    [
        ("/v1/models/iris/predict", b'{"instances": [', lambda body: body["error"]),
        ("/v2/models/iris/infer", b'{"inputs": [', lambda body: body["error"]),
        ("/invocations", b'{"dataframe_records": [', lambda body: body["message"]),
        ("/v1/models/iris/invocations", b'{"dataframe_records": [', lambda body: body["message"]),
    ],
)
def test_a_chunked_body_over_the_limit_is_413_on_every_protocol(
    numeric_model: Any, path: str, prefix: bytes, error: Any
) -> None:
    app = create_app(quiet_settings(max_body_bytes=LIMIT), shipyard.connect())

    async def scenario() -> httpx.Response:
        async with running(app) as client:
            headers = {"content-type": "application/json"}
            return await client.post(path, content=astream(chunks(prefix, ROW, 3 * LIMIT)), headers=headers)

    answer = asyncio.run(scenario())
    assert answer.status_code == 413, answer.text
    assert "content-length" not in answer.request.headers  # chunked: only counting while reading finds the size
    message = error(answer.json())
    assert f"larger than the limit of {LIMIT} bytes" in message
    assert "max_body_bytes" in message


def test_a_chunked_body_under_the_limit_is_answered(numeric_model: Any) -> None:
    app = create_app(quiet_settings(max_body_bytes=LIMIT), shipyard.connect())

    async def scenario() -> list[httpx.Response]:
        async with running(app) as client:
            headers = {"content-type": "application/json"}
            return [
                await client.post(path, content=astream(chunks(prefix, ROW, 200)), headers=headers)
                for path, prefix in (
                    ("/v1/models/iris/predict", b'{"instances": ['),
                    ("/invocations", b'{"dataframe_records": ['),
                )
            ]

    assert [a.status_code for a in asyncio.run(scenario())] == [200, 200]


def wide_csv(columns: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    return (header + "\n" + ",".join("1" for _ in range(columns)) + "\n").encode()


WIDE = 5_000
NAMES = [f"c{i}" for i in range(WIDE)]


def mlflow_message(answer: httpx.Response) -> str:
    return str(answer.json()["message"])


def error_message(answer: httpx.Response) -> str:
    return str(answer.json()["error"])


@pytest.mark.parametrize(
    ("path", "content_type", "body", "where", "message"),
    [
        ("/invocations", "text/csv", wide_csv(29_500), "the CSV header row has 29500 columns", mlflow_message),
        (
            "/invocations",
            "application/json",
            orjson.dumps({"dataframe_split": {"columns": NAMES, "data": [[1] * WIDE]}}),
            f'"dataframe_split" "columns" has {WIDE} columns',
            mlflow_message,
        ),
        (
            "/invocations",
            "application/json",
            orjson.dumps({"dataframe_records": [dict.fromkeys(NAMES, 1)]}),
            f'"dataframe_records" row 0 has {WIDE} columns',
            mlflow_message,
        ),
        (
            "/invocations",
            "application/json",
            orjson.dumps({"inputs": {name: [1] for name in NAMES}}),
            f'"inputs" has {WIDE} columns',
            mlflow_message,
        ),
        (
            "/v1/models/iris/predict",
            "application/json",
            orjson.dumps({"instances": [dict.fromkeys(NAMES, 1)]}),
            f"the input has {WIDE} columns",
            error_message,
        ),
        (
            "/v1/models/iris/predict",
            "application/json",
            orjson.dumps({"inputs": {name: [1] for name in NAMES}}),
            f"the input has {WIDE} columns",
            error_message,
        ),
        (
            "/v2/models/iris/infer",
            "application/json",
            orjson.dumps({"inputs": [{"name": n, "datatype": "INT64", "shape": [1], "data": [1]} for n in NAMES]}),
            f'"inputs" has {WIDE} tensors',
            error_message,
        ),
    ],
    ids=["csv", "split", "records", "mlflow-inputs", "native-instances", "native-inputs", "v2"],
)
def test_a_table_wider_than_max_columns_is_refused_before_it_is_built(
    numeric_model: Any, path: str, content_type: str, body: bytes, where: str, message: Any
) -> None:
    app = create_app(quiet_settings(max_columns=1_000), shipyard.connect())

    async def scenario() -> httpx.Response:
        async with running(app) as client:
            return await client.post(path, content=body, headers={"content-type": content_type})

    answer = asyncio.run(scenario())
    assert answer.status_code == 413, answer.text
    text = message(answer)
    assert where in text
    assert "more than the limit of 1000 (max_columns in the serve config" in text


def test_a_csv_as_wide_as_the_limit_is_scored(numeric_model: Any) -> None:
    _, X = numeric_model
    app = create_app(quiet_settings(max_columns=4), shipyard.connect())  # iris takes exactly 4 columns

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with running(app) as client:
            csv = {"content-type": "text/csv"}
            fits = await client.post("/invocations", content=X.head(3).to_csv(index=False).encode(), headers=csv)
            wider = X.head(3).assign(extra=1).to_csv(index=False).encode()
            return fits, await client.post("/invocations", content=wider, headers=csv)

    fits, wider = asyncio.run(scenario())
    assert fits.status_code == 200, fits.text
    assert len(fits.json()["predictions"]) == 3
    assert wider.status_code == 413
    assert "the CSV header row has 5 columns, more than the limit of 4" in wider.json()["message"]
