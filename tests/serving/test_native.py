"""The native /v1 protocol and the ops routes against a real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


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
