"""The server serves the version that was asked for (issue 15, items 4 and 6), in process over HTTP.

* An explicit version or alias on the command line wins over the model's registry deployment.
* With no refs, a model that gets a production alias after the server started is served without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serving.conftest import fraud_frame, fraud_pipeline

import shipyard
from shipyard.rollouts import DeploymentSpec, Variant
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings

QUIET = {"logging": {"enabled": False}, "monitoring": {"enabled": False}, "rollouts": False}


@pytest.fixture
def row(home: Path) -> dict[str, Any]:
    """``fraud`` versions 1 and 2 registered; returns one row to predict on."""
    X, y = fraud_frame(120)
    pipe = fraud_pipeline(X, y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in X.iloc[0].to_dict().items()}


@contextlib.asynccontextmanager
async def serving(home: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app of ``settings`` with its lifespan run (models loaded on entry), and a client over ASGI."""
    app = create_app(ServeSettings.model_validate({**QUIET, **settings}), shipyard.connect(), home=home)
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put))
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shipyard") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task


def test_an_explicit_alias_wins_over_the_registry_deployment(home: Path, row: dict[str, Any]) -> None:
    shipyard.set_alias("fraud", "staging", 1)
    shipyard.connect().deploy("fraud", DeploymentSpec(kind="pin", variants=(Variant(2, 100),)))

    async def scenario() -> None:
        async with serving(home, refs=["fraud@staging"]) as client:
            [model] = (await client.get("/v1/models")).json()["models"]
            assert (model["ref"], model["version"]) == ("fraud@staging", 1), model
            answer = await client.post("/v1/models/fraud/predict", json={"instances": [row]})
            assert answer.status_code == 200 and answer.json()["version"] == 1
        async with serving(home, refs=["fraud"]) as client:  # a plain name is served as its deployment says
            assert (await client.get("/v1/models")).json()["models"][0]["version"] == 2

    asyncio.run(scenario())


def test_a_model_given_a_production_alias_later_is_served_without_a_restart(home: Path, row: dict[str, Any]) -> None:
    shipyard.set_alias("fraud", "production", 1)
    X, y = fraud_frame(120, seed=5)

    async def scenario() -> None:
        async with serving(home, reload_interval_s=0.2) as client:
            shipyard.register(fraud_pipeline(X, y), "late", X=X, y=y)
            assert (await client.post("/v1/models/late/predict", json={"instances": [row]})).status_code == 404
            shipyard.set_alias("late", "production", 1)
            deadline = time.monotonic() + 10
            body = {"instances": [row]}
            while (answer := await client.post("/v1/models/late/predict", json=body)).status_code != 200:
                assert answer.status_code == 404, answer.text
                assert time.monotonic() < deadline, answer.text
                await asyncio.sleep(0.05)
            assert answer.json()["version"] == 1
            assert "late" in {m["name"] for m in (await client.get("/v1/models")).json()["models"]}

    asyncio.run(scenario())
