"""MLflow's scoring protocol (/invocations, /ping, /health, /version) against a real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import shipyard

JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}


def records(X: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in X.to_dict("records")]


def bodies(X: pd.DataFrame) -> dict[str, Any]:
    """The same rows in every JSON format MLflow's scoring server reads."""
    rows = records(X)
    columns = list(X.columns)
    values = [[row[c] for c in columns] for row in rows]
    return {
        "dataframe_split": {
            "dataframe_split": {"columns": columns, "data": values, "index": list(range(10, 10 + len(rows)))}
        },
        "dataframe_split without columns": {"dataframe_split": {"data": values}},
        "dataframe_records": {"dataframe_records": rows},
        "instances as records": {"instances": rows},
        "instances as rows": {"instances": values},
        "inputs as columns": {"inputs": {c: [row[c] for row in rows] for c in columns}},
        "inputs as rows": {"inputs": values},
        "inputs as records": {"inputs": rows},
        "params are accepted": {"dataframe_records": rows, "params": {"temperature": 0.5}},
    }


def check_all_formats(client: Any, route: str, X: pd.DataFrame, expected: list[Any]) -> None:
    for label, body in bodies(X).items():
        answer = client.post(route, json=body)
        assert answer.status_code == 200, (label, answer.text)
        assert answer.headers["content-type"] == "application/json", label
        assert answer.json() == {"predictions": expected, "version": 1}, label
        assert answer.headers["x-shipyard-version"] == "1", label
    for content_type in ("text/csv", "text/csv; charset=utf-8"):
        answer = client.post(route, content=X.to_csv(index=False), headers={"Content-Type": content_type})
        assert answer.status_code == 200, (content_type, answer.text)
        assert answer.json() == {"predictions": expected, "version": 1}
    with_charset = client.post(
        route,
        content=b'{"dataframe_records": %b}' % pd.DataFrame(records(X)).to_json(orient="records").encode(),
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert with_charset.status_code == 200, with_charset.text
    assert with_charset.json() == {"predictions": expected, "version": 1}


def assert_error(answer: Any, status: int, *fragments: str, code: str = "BAD_REQUEST") -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])


def test_named_invocations_formats_errors_and_health(
    start_server: Callable[..., Any], fraud_model: Any, numeric_model: Any
) -> None:
    pipe, X = fraud_model
    clf, iris_X = numeric_model
    server = start_server("fraud", "iris")
    client = server.client

    fraud_rows = X.head(7)
    check_all_formats(client, "/v1/models/fraud/invocations", fraud_rows, pipe.predict(fraud_rows).tolist())
    iris_rows = iris_X.iloc[::25]
    expected_iris = clf.predict(iris_rows).tolist()
    assert len(set(expected_iris)) == 3  # the sample covers every class
    check_all_formats(client, "/v1/models/iris/invocations", iris_rows, expected_iris)
    in_process = shipyard.load("iris").predict(iris_rows).tolist()
    assert in_process == expected_iris

    # predict_proba through params (a shipyard extension); other params are accepted and ignored
    proba = client.post(
        "/v1/models/fraud/invocations",
        json={"dataframe_records": records(fraud_rows), "params": {"predict_method": "predict_proba"}},
    )
    assert proba.status_code == 200, proba.text
    assert set(proba.json()) == {"predictions", "version"}
    np.testing.assert_allclose(proba.json()["predictions"], pipe.predict_proba(fraud_rows))
    assert_error(
        client.post(
            "/v1/models/fraud/invocations",
            json={"dataframe_records": records(fraud_rows), "params": {"predict_method": "decision_function"}},
        ),
        400,
        "predict_method",
        "decision_function",
    )

    # /invocations cannot choose between two served models
    assert_error(
        client.post("/invocations", json={"dataframe_records": records(fraud_rows)}),
        400,
        "several models (fraud, iris)",
        "/v1/models/{name}/invocations",
    )

    route = "/v1/models/fraud/invocations"
    good = records(fraud_rows.head(2))
    for content_type in ("text/plain", "application/xml", "application/json; charset=latin-1", "application/json; x=1"):
        answer = client.post(route, content=b'{"dataframe_records": []}', headers={"Content-Type": content_type})
        assert_error(answer, 415)
    assert_error(
        client.post(route, content=b"<rows/>", headers={"Content-Type": "application/xml"}),
        415,
        "text/csv",
        "application/json",
        "application/xml",
    )
    assert_error(client.post(route, json={"rows": good}), 400, "exactly one of the input fields", "['rows']")
    assert_error(client.post(route, json={}), 400, "exactly one of the input fields")
    assert_error(
        client.post(route, json={"dataframe_records": good, "inputs": good}),
        400,
        "exactly one of the input fields",
        "['dataframe_records', 'inputs']",
    )
    assert_error(client.post(route, json=good), 400, "Received a list")
    assert_error(client.post(route, content=b'{"inputs": [', headers=JSON), 400, "not valid JSON")
    assert_error(client.post(route, content=b"", headers=JSON), 400, "empty")
    assert_error(client.post(route, content=b'amount,"hour\n1,2\n', headers=CSV), 400, "Failed to parse input as a")
    assert_error(client.post(route, content=b"", headers=CSV), 400, "Failed to parse input as a")
    assert_error(client.post(route, content=b"amount,hour,channel,is_foreign\n", headers=CSV), 400, "no rows")
    assert_error(client.post(route, json={"dataframe_records": []}), 400, "no rows")
    assert_error(client.post(route, json={"dataframe_records": {"amount": 1}}), 400, "must be a list of records")
    assert_error(client.post(route, json={"dataframe_split": [[1]]}), 400, "must be a dictionary")
    assert_error(client.post(route, json={"dataframe_split": {"columns": ["amount"]}}), 400, "'data' field")
    assert_error(
        client.post(route, json={"dataframe_split": {"columns": ["amount", "hour"], "data": [[1.0]]}}),
        400,
        "row 0 has 1 values but there are 2 columns",
    )
    assert_error(client.post(route, json={"instances": [good[0], {"amount": 1.0}]}), 400, "needs the same fields")
    assert_error(client.post(route, json={"params": {"predict_method": "predict"}}), 400, "exactly one")

    # input that does not fit the signature: 400 (as MLflow), naming the column, in every format
    bad = [dict(r) for r in good]
    bad[1]["amount"] = "lots"
    columns = list(X.columns)
    for body in (
        {"dataframe_records": bad},
        {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in bad]}},
        {"instances": bad},
        {"inputs": {c: [r[c] for r in bad] for c in columns}},
    ):
        assert_error(client.post(route, json=body), 400, "column 'amount': expected float64, got string 'lots' (row 1)")
    bad_csv = fraud_rows.head(2).astype({"amount": object})
    bad_csv.iloc[1, 0] = "lots"
    assert_error(
        client.post(route, content=bad_csv.to_csv(index=False), headers=CSV),
        400,
        "column 'amount': expected float64, got string 'lots' (row 1)",
    )
    assert_error(client.post(route, json={"inputs": [[1.0, 2]]}), 400, "expected rows of 4 values")
    # rows that fit the signature but that the model refuses (a missing amount): MLflow answers 400 too
    missing = b"amount,hour,channel,is_foreign\n,3,web,False\n"
    assert_error(client.post(route, content=missing, headers=CSV), 400)
    assert_error(
        client.post(route, json={"dataframe_records": [{**good[0], "extra": 1}]}), 400, "unexpected column 'extra'"
    )
    assert_error(
        client.post("/v1/models/nope/invocations", json={"inputs": good}),
        404,
        "'nope' is not served here",
        code="RESOURCE_DOES_NOT_EXIST",
    )

    # health checks and version, as MLflow's scoring server answers them
    for path in ("/ping", "/health"):
        answer = client.get(path)
        assert (answer.status_code, answer.text) == (200, "\n")
    version = client.get("/version")
    assert (version.status_code, version.text) == (200, shipyard.__version__)

    metrics = client.get("/metrics").text
    assert 'model="fraud",route="/v1/models/{name}/invocations",status="200",version="1"' in metrics
    assert "/v1/models/{name}/invocations" in client.get("/openapi.json").json()["paths"]


def test_invocations_with_one_served_model(start_server: Callable[..., Any], numeric_model: Any) -> None:
    clf, X = numeric_model
    server = start_server("iris")
    sample = X.iloc[::30]
    check_all_formats(server.client, "/invocations", sample, clf.predict(sample).tolist())
    proba = server.client.post(
        "/invocations", json={"inputs": sample.to_numpy().tolist(), "params": {"predict_method": "predict_proba"}}
    )
    np.testing.assert_allclose(proba.json()["predictions"], clf.predict_proba(sample))
    assert_error(
        server.client.post("/invocations", content="a,b\n1,2\n", headers={"Content-Type": "text/plain"}),
        415,
        "This predictor only supports the following content types",
    )
    assert server.client.get("/ping").status_code == 200
    metrics = server.client.get("/metrics").text
    assert 'model="iris",route="/invocations",status="200",version="1"' in metrics
