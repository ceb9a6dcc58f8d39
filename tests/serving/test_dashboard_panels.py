"""The dashboard's deployment, online-learning and overview panels and its chart axes (issue 15, item 14).

In process over HTTP for the JSON routes; one real ``shipyard serve`` in headless Chromium for the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier
from tests.serving.conftest import fraud_frame, fraud_pipeline
from tests.serving.inprocess import serving

import shipyard
from shipyard.rollouts import CanaryPlan, DeploymentSpec
from shipyard.serving.settings import ServeSettings

CLICKS = ["x0", "x1", "x2"]
QUIET = {"logging": {"enabled": False}, "monitoring": {"enabled": False}}


def _rows(X: pd.DataFrame, start: int, n: int) -> list[dict[str, Any]]:
    chunk = X.iloc[start : start + n].to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in chunk]


@pytest.fixture
def canary_and_online(home: Path) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, np.ndarray]:
    """``fraud`` v1 in production with a canary of v2 at 10 %; ``clicks`` an online SGD classifier."""
    X, y = fraud_frame(120)
    pipe = fraud_pipeline(X, y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    shipyard.set_alias("fraud", "production", 1)
    plan = CanaryPlan(0, 2, (10, 50, 100), interval_s=3600, max_error_rate=0.01, min_requests=1000)
    shipyard.connect().deploy("fraud", DeploymentSpec(kind="canary", canary=plan), reason="try v2")
    rng = np.random.default_rng(1)
    C = pd.DataFrame(rng.normal(size=(60, 3)).round(6), columns=CLICKS)
    c = (C["x0"] > 0).astype(int).to_numpy()
    shipyard.register(SGDClassifier(random_state=0).fit(C, c), "clicks", X=C, y=c, online=True)
    return X, y, C, c


def test_json_routes_give_deployments_canary_and_online_counts(canary_and_online: Any) -> None:
    _, _, C, c = canary_and_online

    async def run() -> tuple[Any, Any, Any, Any]:
        async with serving(ServeSettings.model_validate({**QUIET, "rollouts": False})) as client:
            labels = {"instances": _rows(C, 0, 7), "labels": c[:7].tolist()}
            sent = await client.post("/v1/models/clicks/feedback", json=labels)
            assert sent.status_code == 202, sent.text
            routes = ("models", "deployments", "online", "overview?minutes=5")
            answers = [await client.get(f"/ui/api/{route}") for route in routes]
            for answer in answers:
                assert answer.status_code == 200, answer.text
            bad = await client.get("/ui/api/overview?minutes=0")
            assert bad.status_code == 400 and "?minutes" in bad.json()["error"], bad.text
            return tuple(a.json() for a in answers)  # type: ignore[return-value]

    models, deployments, online, recent = asyncio.run(run())
    assert recent["minutes"] == 5
    assert {o["name"]: o["predictions"] for o in recent["overview"]} == {"clicks": 0, "fraud": 0}  # log is off
    overview = {m["name"]: m for m in models["models"]}
    assert set(overview) == {"clicks", "fraud"}
    assert overview["fraud"]["deployment"].startswith("canary") and overview["fraud"]["revision"] == 1
    assert overview["clicks"]["online"] is True and overview["fraud"]["online"] is False

    fraud = next(d for d in deployments["deployments"] if d["name"] == "fraud")
    assert fraud["kind"] == "canary" and fraud["revision"] == 1 and fraud["reason"] == "try v2"
    assert fraud["action"] == "deploy" and fraud["actor"] and datetime.fromisoformat(fraud["at"])
    canary = fraud["canary"]
    assert (canary["incumbent"], canary["candidate"], canary["step"], canary["of"]) == (1, 2, 1, 3)
    assert canary["steps"] == [10, 50, 100] and canary["status"] == "running" and canary["percent"] == 10
    assert {v["version"]: (v["role"], v["weight"]) for v in fraud["versions"]} == {
        1: ("incumbent", 90),
        2: ("candidate", 10),
    }
    clicks = next(d for d in deployments["deployments"] if d["name"] == "clicks")
    assert clicks["kind"] is None and clicks["canary"] is None and clicks["description"].startswith("no deployment")

    assert [s["name"] for s in online["online"]] == ["clicks"]
    status = online["online"][0]
    assert status["last_offset"] == 7 and status["applied_offset"] + status["pending"] == 7
    assert status["base_version"] == 1 and status["metric_name"] == "accuracy"


TIME_RANGE = "(id) => document.getElementById(id).layout.xaxis.range"


@pytest.mark.slow
def test_page_shows_deployment_and_online_panels_with_fixed_axes(
    canary_and_online: Any, start_server: Callable[..., Any], chromium: Any, artifacts: Path
) -> None:
    X, y, C, c = canary_and_online
    server = start_server()  # every model with a production alias: fraud (with its canary) and clicks
    answer = server.client.post("/v1/models/fraud/predict", json={"instances": _rows(X, 0, 4)})
    assert answer.status_code == 200, answer.text
    rid = answer.json()["request_id"]
    labels = [{"request_id": f"{rid}/{j}", "label": int(y.iloc[j])} for j in range(4)]
    assert server.client.post("/v1/models/fraud/feedback", json={"labels": labels}).status_code == 202
    sent = server.client.post(
        "/v1/models/clicks/feedback", json={"instances": _rows(C, 0, 5), "labels": c[:5].tolist()}
    )
    assert sent.status_code == 202, sent.text

    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/ui?refresh=1#fraud")
        page.wait_for_selector(".deployment[data-model='fraud'] .canary", timeout=60_000)
        canary = page.inner_text(".deployment[data-model='fraud'] .canary")
        assert "canary running" in canary and "step 1 of 3" in canary and "version 2 against 1" in canary
        versions = page.query_selector_all(".deployment[data-model='fraud'] tbody tr")
        assert [r.query_selector_all("td")[1].inner_text() for r in versions] == ["incumbent", "candidate"]
        assert "try v2" in page.inner_text(".deployment[data-model='fraud'] .meta")

        assert page.is_visible("#online-section")
        cells = {
            k: page.inner_text(f"#online tr[data-model='clicks'] td.{k}") for k in ("received", "applied", "pending")
        }
        assert cells["received"] == "5" and int(cells["applied"]) + int(cells["pending"]) == 5
        overview = [c.inner_text() for c in page.query_selector_all("#models tbody tr[data-model='fraud'] td")]
        assert overview[6].startswith("canary") and overview[7] == "no"
        page.wait_for_selector("#models tr[data-model='fraud'] td.predictions:text-is('4')", timeout=60_000)
        assert page.inner_text("#models tr[data-model='fraud'] td.requests") == "1"

        # one request, one time bucket: the charts span minutes, accuracy's y-axis is [0, 1], no mode bar
        page.wait_for_function("document.getElementById('chart-accuracy').layout !== undefined", timeout=120_000)
        assert page.evaluate("document.getElementById('chart-accuracy').layout.yaxis.range") == [0, 1]
        for chart in ("chart-accuracy", "chart-traffic"):
            start, end = (datetime.fromisoformat(t) for t in page.evaluate(TIME_RANGE, chart))
            assert (end - start).total_seconds() > 60, chart
            assert page.evaluate(f"document.getElementById('{chart}').layout.xaxis.tickformat") == "%H:%M:%S"
        assert page.query_selector_all(".modebar-container .modebar-btn") == []
        page.screenshot(path=str(artifacts / "dashboard-panels.png"), full_page=True)
    finally:
        page.close()
    assert errors == []
