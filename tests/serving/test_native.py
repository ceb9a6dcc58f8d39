"""The native /v1 protocol and the ops routes against a real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest


def records(X: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in X.to_dict("records")
    ]


def test_predict_records_and_columns(start_server: Callable[..., Any], fraud_model: Any) -> None:
    pipe, X = fraud_model
    server = start_server()
    sample = X.head(7)
    answer = server.client.post("/v1/models/fraud/predict", json={"instances": records(sample)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["classes"]) == ("fraud", 1, [0, 1])
    assert body["predictions"] == pipe.predict(sample).tolist()
    np.testing.assert_allclose(body["probabilities"], pipe.predict_proba(sample))
    assert body["request_id"] == answer.headers["x-request-id"]

    columns = {c: [r[c] for r in records(sample)] for c in sample.columns}
    by_columns = server.client.post(
        "/v1/models/fraud/predict", json={"inputs": columns}, headers={"X-Request-ID": "abc"}
    )
    assert by_columns.json()["predictions"] == body["predictions"]
    assert by_columns.headers["x-request-id"] == "abc" and by_columns.json()["request_id"] == "abc"

    pinned = server.client.post("/v1/models/fraud/versions/2/predict", json={"instances": records(sample)})
    assert pinned.status_code == 200 and pinned.json()["version"] == 2


def test_client_errors_limits_and_docs(start_server: Callable[..., Any], fraud_model: Any, tmp_path: Any) -> None:
    import shipyard
    from shipyard import errors

    pipe, X = fraud_model
    config = tmp_path / "serve.yaml"
    config.write_text("max_rows: 20\nmax_body_bytes: 4000\nmodels:\n  fraud:\n    max_batch_size: 8\n")
    server = start_server("fraud", "--config", str(config))
    with shipyard.Client(server.url) as client:
        assert client.ready()
        assert client.predict("fraud", X.head(3)) == pipe.predict(X.head(3)).tolist()
        np.testing.assert_allclose(client.predict_proba("fraud", records(X.head(3))), pipe.predict_proba(X.head(3)))
        assert client.infer("fraud", X.head(2), version=2).version == 2
        assert [m["name"] for m in client.models()] == ["fraud"]

        bad = records(X.head(4))
        bad[2]["amount"] = "lots"
        with pytest.raises(errors.SchemaError, match=r"column 'amount': expected float64, got string 'lots' \(row 2\)"):
            client.predict("fraud", bad)
        with pytest.raises(errors.NotFound, match="'nope' is not served here"):
            client.predict("nope", bad)
        with pytest.raises(errors.NotFound, match="no version 9"):
            client.predict("fraud", X.head(1), version=9)
        with pytest.raises(errors.PayloadTooLarge, match="21 rows, the limit is 20"):
            client.predict("fraud", X.head(21))
    assert shipyard.Client("http://127.0.0.1:9").ready() is False
    with pytest.raises(errors.ServerUnavailable), shipyard.Client("http://127.0.0.1:9") as nowhere:
        nowhere.predict("fraud", X.head(1))

    too_big = server.client.post("/v1/models/fraud/predict", content=b"{" + b" " * 5000 + b"}")
    assert too_big.status_code == 413
    assert "larger than the limit of 4000 bytes" in too_big.json()["error"]
    for body, fragment in (
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", 'exactly one of "instances"'),
        (b'{"instances": []}', "is empty"),
        (b'{"instances": "x"}', "must be a list of rows"),
        (b'{"instances": [1, 2]}', "expected rows of 4 values"),
    ):
        answer = server.client.post("/v1/models/fraud/predict", content=body)
        assert answer.status_code in (400, 422), (body, answer.text)
        assert fragment in answer.json()["error"], (body, answer.text)

    described = server.client.get("/v1/models/fraud").json()
    assert described["served_version"] == 1
    assert described["aliases"] == {"production": 1}
    assert [v["version"] for v in described["versions"]] == [2, 1]
    assert described["signature"]["inputs"][0] == {"name": "amount", "dtype": "float64", "nullable": False}
    assert server.client.get("/healthz").json() == {"status": "ok"}
    assert "/v1/models/{name}/predict" in server.client.get("/openapi.json").json()["paths"]
    assert server.client.get("/docs").status_code == 200
    assert server.client.get("/nope").status_code == 404

    metrics = server.client.get("/metrics").text
    route = 'route="/v1/models/{name}/predict"'
    assert f'shipyard_requests_total{{model="fraud",{route},status="200",version="1"}}' in metrics
    assert f'shipyard_requests_total{{model="fraud",{route},status="422",version=""}}' in metrics
    assert "shipyard_model_load_seconds{" in metrics
    assert "shipyard_batch_rows_bucket{" in metrics
    assert "shipyard_in_flight_requests" in metrics


def test_concurrent_requests_are_batched_and_a_bad_row_fails_only_its_request(
    start_server: Callable[..., Any], fraud_data: Any, tmp_path: Any
) -> None:
    import asyncio

    import httpx
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    import shipyard

    X, y = fraud_data
    strict = make_pipeline(
        ColumnTransformer([("cat", OneHotEncoder(handle_unknown="error"), ["channel"])], remainder="passthrough"),
        LogisticRegression(max_iter=500),
    ).fit(X, y)
    shipyard.register(strict, "strict", X=X, y=y)
    config = tmp_path / "serve.yaml"
    config.write_text("models:\n  strict:\n    max_batch_size: 32\n    max_wait_ms: 40\n")
    server = start_server("strict", "--config", str(config))

    rows = records(X)
    requests = []
    for i in range(60):
        size = 1 + i % 5
        chunk = [dict(r) for r in rows[i * 3 : i * 3 + size]]
        if i % 13 == 7:
            chunk[-1]["channel"] = "carrier-pigeon"  # fits the signature, but the model refuses it
        requests.append(chunk)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/v1/models/strict/predict", json={"instances": r}) for r in requests)
            )

    answers = asyncio.run(send_all())
    for chunk, answer in zip(requests, answers, strict=True):
        if any(r["channel"] == "carrier-pigeon" for r in chunk):
            assert answer.status_code == 422, answer.text
            assert "could not score" in answer.json()["error"]
        else:
            assert answer.status_code == 200, answer.text
            frame = pd.DataFrame(chunk)
            assert answer.json()["predictions"] == strict.predict(frame).tolist()
            np.testing.assert_allclose(answer.json()["probabilities"], strict.predict_proba(frame))
    metrics = server.client.get("/metrics").text
    calls = next(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("shipyard_batch_rows_count{")
    )
    assert calls < len(requests)  # requests were merged into fewer model calls
