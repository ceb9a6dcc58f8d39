"""The dashboard at /ui in a real headless Chromium against a real ``shipyard serve``: models, charts, refresh, auth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import shipyard

pytestmark = pytest.mark.slow

UI_ROUTES = ["/ui", "/ui/static/plotly.min.js", "/ui/api/models", "/ui/api/models/fraud"]
TRAFFIC_TOTAL = """() => {
  const chart = document.getElementById('chart-traffic');
  if (!chart || !chart.data) return 0;
  return chart.data.reduce((sum, trace) => sum + trace.y.reduce((a, b) => a + b, 0), 0);
}"""
CHART_DATA = """(id) => { const c = document.getElementById(id); return c && c.data ? c.data.length : 0; }"""
PLOTTED_SHAPES = """(id) => document.getElementById(id).querySelectorAll('g.trace path, g.points path').length"""


def _rows(X: pd.DataFrame, start: int, n: int) -> list[dict[str, Any]]:
    chunk = X.iloc[start : start + n].to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in chunk]


def _predict(client: httpx.Client, X: pd.DataFrame, y: pd.Series, requests: int, per_request: int,
             headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Send ``requests`` predictions of ``per_request`` rows; per row its request id, true label and prediction."""
    labels = []
    for i in range(requests):
        start = (i * per_request) % (len(X) - per_request)
        answer = client.post("/v1/models/fraud/predict", json={"instances": _rows(X, start, per_request)},
                             headers=headers)
        assert answer.status_code == 200, answer.text
        rid = answer.json()["request_id"]
        ids = [rid] if per_request == 1 else [f"{rid}/{j}" for j in range(per_request)]
        predictions = answer.json()["predictions"]
        labels += [{"request_id": r, "label": int(y.iloc[start + j]), "predicted": predictions[j]}
                   for j, r in enumerate(ids)]
    return labels


def _wait_for(page: Any, expression: str, arg: Any = None, timeout_s: float = 120) -> None:
    page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000)


def test_dashboard_shows_models_and_live_charts_that_refresh(
    start_server: Callable[..., Any], fraud_model: Any, fraud_data: Any, chromium: Any, artifacts: Path
) -> None:
    _, X = fraud_model
    _, y = fraud_data
    server = start_server("fraud")
    labels = _predict(server.client, X, y, requests=30, per_request=5)  # 150 rows: enough for drift verdicts
    feedback = [{"request_id": r["request_id"], "label": r["label"]} for r in labels]
    answer = server.client.post("/v1/models/fraud/feedback", json={"labels": feedback})
    assert answer.status_code == 202, answer.text

    assert server.client.get("/ui/api/models/nosuch").json()["detail"]["type"] == "NotServed"
    for query in ("every=soon", "last=0", "minutes=x"):
        answer = server.client.get(f"/ui/api/models/fraud?{query}")
        assert answer.status_code == 400 and query.split("=")[0] in answer.json()["error"], answer.text

    context = chromium.new_context(viewport={"width": 1300, "height": 900})
    outside: list[str] = []
    context.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/ui?refresh=1")
        _wait_for(page, "document.querySelector('#models tbody tr[data-model=\"fraud\"]') !== null")
        row = [c.inner_text() for c in page.query_selector_all("#models tbody tr[data-model='fraud'] td")]
        assert row[:3] == ["fraud", "1", "sklearn"]
        assert row[3] == "production=1" and row[4] == "2, 1" and row[5] == "yes"

        # traffic, latency, accuracy (labels joined by request id) and one drift chart per checked feature
        _wait_for(page, f"({TRAFFIC_TOTAL})() === 150")
        for chart in ("chart-traffic", "chart-latency", "chart-accuracy"):
            _wait_for(page, f"({CHART_DATA})('{chart}') > 0")
            assert page.evaluate(PLOTTED_SHAPES, chart) > 0, chart
        verdicts = page.query_selector_all("#verdicts tbody tr")
        features = [r.query_selector("td").inner_text() for r in verdicts]
        assert {"amount", "hour", "channel", "is_foreign", "prediction"} <= set(features)
        drift_charts = page.evaluate(
            "Array.from(document.querySelectorAll('#drift-charts .js-plotly-plot')).map(c => c.data.length)"
        )
        assert drift_charts and all(n == 2 for n in drift_charts)  # reference and live bars per feature
        # the accuracy buckets, weighted by their rows, give the accuracy over every labelled row
        buckets = page.evaluate("document.getElementById('chart-accuracy').data[0]")
        weighted = sum(a * n for a, n in zip(buckets["y"], buckets["customdata"], strict=True))
        assert sum(buckets["customdata"]) == len(labels)
        expected = sum(r["label"] == r["predicted"] for r in labels) / len(labels)
        assert weighted / len(labels) == pytest.approx(expected)
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

        # more predictions: the open page redraws with them, without a reload
        updates = int(page.evaluate("document.body.dataset.updates"))
        _predict(server.client, X, y, requests=10, per_request=3)
        _wait_for(page, f"({TRAFFIC_TOTAL})() === 180")
        assert int(page.evaluate("document.body.dataset.updates")) > updates
        page.screenshot(path=str(artifacts / "dashboard-refreshed.png"), full_page=True)
    finally:
        context.close()
    assert errors == []
    assert outside == []  # plotly.js comes from the server itself


def test_dashboard_needs_an_admin_key_when_auth_is_on(
    start_server: Callable[..., Any], fraud_model: Any, fraud_data: Any, chromium: Any, artifacts: Path
) -> None:
    _, X = fraud_model
    _, y = fraud_data
    service = shipyard.connect()
    _, predict_key = service.create_key("app", ["predict"])
    _, admin_key = service.create_key("ops", ["admin"])
    server = start_server("fraud", "--auth")
    _predict(server.client, X, y, requests=5, per_request=2, headers={"Authorization": f"Bearer {predict_key}"})
    for path in UI_ROUTES:
        assert server.client.get(path).status_code == 401, path
        assert server.client.get(path, headers={"Authorization": f"Bearer {predict_key}"}).status_code == 403, path
        answer = server.client.get(path, headers={"X-API-Key": admin_key})
        assert answer.status_code == 200, (path, answer.text)

    anonymous = chromium.new_context()
    try:
        assert anonymous.new_page().goto(f"{server.url}/ui").status == 401
    finally:
        anonymous.close()
    context = chromium.new_context(extra_http_headers={"Authorization": f"Bearer {admin_key}"})
    try:
        page = context.new_page()
        assert page.goto(f"{server.url}/ui?refresh=1").status == 200
        _wait_for(page, f"({TRAFFIC_TOTAL})() === 10")
        assert page.inner_text("#models tbody tr[data-model='fraud'] td") == "fraud"
        assert page.is_hidden("#error")
        page.screenshot(path=str(artifacts / "dashboard-auth.png"), full_page=True)
    finally:
        context.close()


def test_dashboard_says_when_the_prediction_log_is_off(
    start_server: Callable[..., Any], fraud_model: Any, chromium: Any, tmp_path: Path
) -> None:
    _, X = fraud_model
    config = tmp_path / "serve.yaml"
    config.write_text("logging:\n  enabled: false\n")
    server = start_server("fraud", "--config", str(config))
    assert server.client.post("/v1/models/fraud/predict", json={"instances": _rows(X, 0, 3)}).status_code == 200
    page = chromium.new_page()
    try:
        page.goto(f"{server.url}/ui?refresh=1")
        _wait_for(page, "document.body.dataset.updates >= 2")
        assert page.is_visible("#logging-off") and page.is_hidden("#error")
        assert page.inner_text("#chart-traffic") == "No traffic in the last minutes."
        assert "no logged predictions of fraud" in page.inner_text("#summary")
    finally:
        page.close()
