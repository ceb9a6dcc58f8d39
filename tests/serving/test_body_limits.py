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


@pytest.fixture(scope="module")
def iris_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[shipyard.ModelService]:
    """A registry with ``iris`` (4 float columns) in production, registered once for the module."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard.config import Settings

    home = tmp_path_factory.mktemp("body-limits") / "shipyard-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPYARD_HOME", str(home))
        for name in ("SHIPYARD_REGISTRY_URL", "SHIPYARD_ARTIFACTS_URL", "SHIPYARD_TRUSTED_TYPES"):
            patch.delenv(name, raising=False)
        registry = shipyard.connect(Settings())
    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    registry.register(LogisticRegression(max_iter=500).fit(X, data.target), "iris", X=X, y=data.target)
    registry.set_alias("iris", "production", 1)
    yield registry
    registry.store.close()


IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def mlflow_message(answer: httpx.Response) -> str:
    return str(answer.json()["message"])


def error_message(answer: httpx.Response) -> str:
    return str(answer.json()["error"])


def test_a_chunked_body_over_the_limit_is_413_on_every_protocol(iris_service: shipyard.ModelService) -> None:
    cases = [
        ("/v1/models/iris/predict", b'{"instances": [', error_message),
        ("/v2/models/iris/infer", b'{"inputs": [', error_message),
        ("/invocations", b'{"dataframe_records": [', mlflow_message),
        ("/v1/models/iris/invocations", b'{"dataframe_records": [', mlflow_message),
    ]

    async def scenario() -> list[httpx.Response]:
        async with running(create_app(quiet_settings(max_body_bytes=LIMIT), iris_service)) as client:
            headers = {"content-type": "application/json"}
            return [
                await client.post(path, content=astream(chunks(prefix, ROW, 3 * LIMIT)), headers=headers)
                for path, prefix, _ in cases
            ]

    for (path, _, message), answer in zip(cases, asyncio.run(scenario()), strict=True):
        assert answer.status_code == 413, (path, answer.text)
        assert "content-length" not in answer.request.headers  # chunked: only counting while reading finds the size
        text = message(answer)
        assert f"larger than the limit of {LIMIT} bytes" in text, path
        assert "max_body_bytes" in text, path


def test_a_chunked_body_under_the_limit_is_answered(iris_service: shipyard.ModelService) -> None:
    async def scenario() -> list[httpx.Response]:
        async with running(create_app(quiet_settings(max_body_bytes=LIMIT), iris_service)) as client:
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
WIDE_CASES = [
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
]


def test_a_table_wider_than_max_columns_is_refused_before_it_is_built(iris_service: shipyard.ModelService) -> None:
    async def scenario() -> list[httpx.Response]:
        async with running(create_app(quiet_settings(max_columns=1_000), iris_service)) as client:
            return [
                await client.post(path, content=body, headers={"content-type": content_type})
                for path, content_type, body, _, _ in WIDE_CASES
            ]

    for (path, content_type, _, where, message), answer in zip(WIDE_CASES, asyncio.run(scenario()), strict=True):
        assert answer.status_code == 413, (path, content_type, answer.text)
        text = message(answer)
        assert where in text, text
        assert "more than the limit of 1000 (max_columns in the serve config" in text


def test_a_csv_as_wide_as_the_limit_is_scored(iris_service: shipyard.ModelService) -> None:
    header = ",".join(IRIS)
    values = ",".join(str(v) for v in IRIS.values())
    app = create_app(quiet_settings(max_columns=4), iris_service)  # iris takes exactly 4 columns

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with running(app) as client:
            csv = {"content-type": "text/csv"}
            fits = f"{header}\n{values}\n{values}\n{values}\n".encode()
            wider = f"{header},extra\n{values},1\n".encode()
            return (
                await client.post("/invocations", content=fits, headers=csv),
                await client.post("/invocations", content=wider, headers=csv),
            )

    fits, wider = asyncio.run(scenario())
    assert fits.status_code == 200, fits.text
    assert len(fits.json()["predictions"]) == 3
    assert wider.status_code == 413
    assert "the CSV header row has 5 columns, more than the limit of 4" in wider.json()["message"]
