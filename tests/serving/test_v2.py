"""The Open Inference Protocol V2 routes: one real server checked with tritonclient and with plain HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

import shipyard
from shipyard.errors import InvalidInput
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings
from shipyard.serving.v2_codec import parse_request
from shipyard.serving.v2_signature import features
from shipyard.signature import Signature

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
INT_TYPES = ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
FLOAT_TYPES = ["FP16", "FP32", "FP64"]


@pytest.fixture
def vector_model(home: Any) -> LogisticRegression:
    """``vec``: a classifier with string labels registered from a float32 array (a tensor signature)."""
    X = np.random.default_rng(5).normal(size=(80, 3)).astype(np.float32)
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = LogisticRegression().fit(X, y)
    shipyard.register(clf, "vec", X=X, y=y)
    return clf


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def fraud_inputs(X: pd.DataFrame) -> list[dict[str, Any]]:
    types = {"amount": "FP64", "hour": "INT64", "channel": "BYTES", "is_foreign": "BOOL"}
    return [tensor(c, types[c], [len(X)], X[c].tolist()) for c in X.columns]


def outputs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


def assert_error(answer: httpx.Response, status: int, *fragments: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


# ---------------------------------------------------------------------- one real server
def test_v2_protocol_on_a_real_server(
    start_server: Callable[..., Any], numeric_model: Any, fraud_model: Any, vector_model: LogisticRegression
) -> None:
    server = start_server("iris", "fraud", "vec")
    check_health_and_metadata(server.client)
    check_tritonclient(server.url.removeprefix("http://"), numeric_model, fraud_model, vector_model)
    check_infer_forms(server.client, numeric_model, fraud_model)
    check_datatypes(server.client, fraud_model, vector_model)
    check_errors(server.client)
    metrics = server.client.get("/metrics").text
    assert 'model="iris",route="/v2/models/{name}/infer",status="200",version="1"' in metrics


def check_health_and_metadata(client: httpx.Client) -> None:
    meta = client.get("/v2")
    assert meta.status_code == 200
    assert meta.json() == {"name": "shipyard", "version": shipyard.__version__, "extensions": []}
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/iris/ready",
        "/v2/models/fraud/versions/2/ready",
        "/v2/models/fraud/versions/production/ready",
    ):
        answer = client.get(path)
        assert (answer.status_code, answer.content) == (200, b""), path
    assert_error(client.get("/v2/models/nope/ready"), 404, "'nope' is not served")
    assert_error(client.get("/v2/models/fraud/versions/9/ready"), 404, "no version 9")
    assert_error(client.get("/v2/models/nope"), 404, "'nope'")
    assert_error(client.get("/v2/models/fraud/versions/staging"), 404, "no alias 'staging'")
    assert_error(client.get("/v2/nothing/here"), 404)

    fraud = client.get("/v2/models/fraud").json()
    assert fraud == {
        "name": "fraud",
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [-1]},
            {"name": "hour", "datatype": "INT64", "shape": [-1]},
            {"name": "channel", "datatype": "BYTES", "shape": [-1]},
            {"name": "is_foreign", "datatype": "BOOL", "shape": [-1]},
        ],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
        ],
    }
    assert client.get("/v2/models/fraud/versions/2").json()["inputs"] == fraud["inputs"]
    vec = client.get("/v2/models/vec").json()
    assert vec["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 3]}]
    assert vec["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}


def check_tritonclient(url: str, numeric_model: Any, fraud_model: Any, vector_model: LogisticRegression) -> None:
    clf, X_iris = numeric_model
    pipe, X_fraud = fraud_model
    client = triton.InferenceServerClient(url=url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris") and client.is_model_ready("fraud", "production")
        assert not client.is_model_ready("nope")

        # iris: one 2-D tensor, built from the metadata
        meta = client.get_model_metadata("iris")
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
        sample = X_iris.sample(12, random_state=0)
        spec = meta["inputs"][0]
        matrix = sample.to_numpy().astype(triton_to_np_dtype(spec["datatype"]))
        for binary in (True, False):
            infer_input = triton.InferInput(spec["name"], list(matrix.shape), spec["datatype"])
            infer_input.set_data_from_numpy(matrix, binary_data=binary)
            result = client.infer("iris", [infer_input], request_id=f"iris-{binary}")
            assert result.get_response()["id"] == f"iris-{binary}"
            assert result.get_response()["model_version"] == "1"
            assert result.as_numpy("predict").tolist() == clf.predict(sample).tolist()
            assert np.allclose(result.as_numpy("predict_proba"), clf.predict_proba(sample))

        selected = client.infer(
            "iris",
            [infer_input],
            outputs=[triton.InferRequestedOutput("predict_proba", binary_data=False)],
            request_compression_algorithm="gzip",
        )
        assert [o["name"] for o in selected.get_response()["outputs"]] == ["predict_proba"]
        assert "data" in selected.get_response()["outputs"][0]
        assert np.allclose(selected.as_numpy("predict_proba"), clf.predict_proba(sample))
        assert selected.as_numpy("predict") is None

        # fraud: one input per column, BYTES and BOOL included
        meta = client.get_model_metadata("fraud")
        sample = X_fraud.head(25)
        for binary in (True, False):
            inputs = []
            for spec in meta["inputs"]:
                values = sample[spec["name"]].to_numpy().astype(triton_to_np_dtype(spec["datatype"]))
                infer_input = triton.InferInput(spec["name"], [len(values)], spec["datatype"])
                inputs.append(infer_input.set_data_from_numpy(values, binary_data=binary))
            result = client.infer("fraud", inputs)
            assert result.as_numpy("predict").tolist() == pipe.predict(sample).tolist()
            assert np.allclose(result.as_numpy("predict_proba"), pipe.predict_proba(sample))
            pinned = client.infer("fraud", inputs, model_version="2")
            assert pinned.get_response()["model_version"] == "2"

        # vec: a float32 tensor model with string labels (BYTES output, binary and JSON)
        rows = np.random.default_rng(9).normal(size=(6, 3)).astype(np.float32)
        infer_input = triton.InferInput("input-0", list(rows.shape), "FP32").set_data_from_numpy(rows)
        expected = vector_model.predict(rows).tolist()
        result = client.infer("vec", [infer_input])
        assert [v.decode() for v in result.as_numpy("predict")] == expected
        as_json = client.infer("vec", [infer_input], outputs=[triton.InferRequestedOutput("predict", False)])
        assert as_json.as_numpy("predict").tolist() == expected

        with pytest.raises(InferenceServerException, match="unknown output 'nope'"):
            client.infer("vec", [infer_input], outputs=[triton.InferRequestedOutput("nope")])
    finally:
        client.close()


def check_infer_forms(client: httpx.Client, numeric_model: Any, fraud_model: Any) -> None:
    clf, X_iris = numeric_model
    pipe, X_fraud = fraud_model
    frame = pd.DataFrame(IRIS_ROWS, columns=X_iris.columns)
    expected = clf.predict(frame).tolist()

    flat = [value for row in IRIS_ROWS for value in row]
    nested = client.post(
        "/v2/models/iris/infer", json={"id": "req-7", "inputs": [tensor("input-0", "FP64", [3, 4], IRIS_ROWS)]}
    )
    assert nested.status_code == 200, nested.text
    body = nested.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "req-7")
    predict = outputs_by_name(body)["predict"]
    assert predict == {"name": "predict", "shape": [3], "datatype": "INT64", "data": expected}
    proba = outputs_by_name(body)["predict_proba"]
    assert (proba["shape"], proba["datatype"], len(proba["data"])) == ([3, 3], "FP64", 9)
    assert np.allclose(np.reshape(proba["data"], (3, 3)), clf.predict_proba(frame))

    by_flat = client.post("/v2/models/iris/infer", json={"inputs": [tensor("input-0", "FP64", [3, 4], flat)]})
    assert by_flat.json()["outputs"] == body["outputs"]
    assert by_flat.json()["id"] == by_flat.headers["x-request-id"]  # no id given: the request id

    columns = [tensor(c, "FP64", [3], [row[j] for row in IRIS_ROWS]) for j, c in enumerate(X_iris.columns)]
    by_columns = client.post("/v2/models/iris/infer", json={"inputs": columns[::-1]})
    assert by_columns.status_code == 200, by_columns.text
    assert outputs_by_name(by_columns.json())["predict"]["data"] == expected
    as_columns = [dict(c, shape=[3, 1]) for c in columns]
    assert client.post("/v2/models/iris/infer", json={"inputs": as_columns}).status_code == 200

    only = client.post(
        "/v2/models/iris/infer",
        json={"inputs": [tensor("input-0", "FP64", [3, 4], flat)], "outputs": [{"name": "predict"}]},
    )
    assert [o["name"] for o in only.json()["outputs"]] == ["predict"]

    sample = X_fraud.head(9)
    for version, served in (("2", "2"), ("production", "1"), ("1", "1")):
        answer = client.post(f"/v2/models/fraud/versions/{version}/infer", json={"inputs": fraud_inputs(sample)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == served
        assert outputs_by_name(answer.json())["predict"]["data"] == pipe.predict(sample).tolist()


def check_datatypes(client: httpx.Client, fraud_model: Any, vector_model: LogisticRegression) -> None:
    rows = [[1, 0, 2], [0, 3, 1]]
    for datatype in [*INT_TYPES, *FLOAT_TYPES, "BOOL"]:
        data = [[bool(v) for v in row] for row in rows] if datatype == "BOOL" else rows
        answer = client.post("/v2/models/vec/infer", json={"inputs": [tensor("input-0", datatype, [2, 3], data)]})
        assert answer.status_code == 200, (datatype, answer.text)
        expected = vector_model.predict(np.asarray(data, dtype=np.float32)).tolist()
        assert outputs_by_name(answer.json())["predict"] == {
            "name": "predict",
            "shape": [2],
            "datatype": "BYTES",
            "data": expected,
        }
    assert_error(
        client.post("/v2/models/vec/infer", json={"inputs": [tensor("input-0", "BYTES", [1, 3], ["a", "b", "c"])]}),
        422,
        "float32",
    )

    pipe, _ = fraud_model
    frame = pd.DataFrame(
        {
            "amount": [12.5, 130.0, 300.25],
            "hour": [1, 13, 23],
            "channel": ["web", "pos", "app"],
            "is_foreign": [False, True, False],
        }
    )
    expected = pipe.predict(frame).tolist()
    for amount_type, hour_type in [*zip(FLOAT_TYPES * 3, INT_TYPES, strict=False), ("FP64", "FP32")]:
        inputs = fraud_inputs(frame)
        inputs[0]["datatype"], inputs[1]["datatype"] = amount_type, hour_type
        answer = client.post("/v2/models/fraud/infer", json={"inputs": inputs})
        assert answer.status_code == 200, (amount_type, hour_type, answer.text)
        assert outputs_by_name(answer.json())["predict"]["data"] == expected


def check_errors(client: httpx.Client) -> None:
    iris = "/v2/models/iris/infer"
    good = tensor("input-0", "FP64", [1, 4], IRIS_ROWS[0])
    cases: list[tuple[str, Any, int, tuple[str, ...]]] = [
        (iris, {"inputs": [dict(good, datatype="FLOAT64")]}, 400, ("unknown or unsupported datatype 'FLOAT64'",)),
        (iris, {"inputs": [dict(good, shape=[2, 4])]}, 400, ("holds 8 values but data has 4",)),
        (iris, {"inputs": [dict(good, data=[1.0, 2.0, 3.0, 4.0, 5.0])]}, 400, ("holds 4 values but data has 5",)),
        (iris, {"inputs": [dict(good, data=[5.1, 3.5, "abc", 0.2])]}, 400, ("'input-0' (FP64): element 2", "'abc'")),
        (iris, {"inputs": [dict(good, data=[5.1, None, 1.4, 0.2])]}, 400, ("element 1 is null",)),
        (iris, {"inputs": [dict(good, name="features")]}, 400, ("unknown input 'features'", "input-0", "sepal_length")),
        (iris, {"inputs": [dict(good, shape=[2, 2])]}, 400, ("must have shape [-1, 4]",)),
        (iris, {"inputs": [dict(good, shape=[0, 4], data=[])]}, 400, ("no rows",)),
        (iris, {"inputs": [good, good]}, 400, ("given twice",)),
        (iris, {"inputs": [good], "outputs": [{"name": "scores"}]}, 400, ("unknown output 'scores'", "predict_proba")),
        (iris, {"inputs": []}, 400, ('"inputs"',)),
        (iris, [good], 400, ("JSON object",)),
        (iris, {"inputs": [dict(good, shape=[1, -4])]}, 400, ("non-negative integers",)),
        (iris, {"inputs": [dict(good, parameters={"binary_data_size": 32})]}, 400, ("either",)),
        (
            "/v2/models/vec/infer",
            {"inputs": [tensor("input-0", "INT8", [1, 3], [1, 300, 2])]},
            400,
            ("element 1 (300) is out of range",),
        ),
        (
            "/v2/models/vec/infer",
            {"inputs": [tensor("input-0", "BOOL", [1, 3], [True, 1, False])]},
            400,
            ("element 1 is number 1",),
        ),
        ("/v2/models/fraud/infer", {"inputs": [tensor("amount", "FP64", [1], [1.0])]}, 400, ("missing input",)),
        ("/v2/models/nope/infer", {"inputs": [good]}, 404, ("'nope' is not served",)),
        ("/v2/models/iris/versions/7/infer", {"inputs": [good]}, 404, ("no version 7",)),
        ("/v2/models/iris/versions/staging/infer", {"inputs": [good]}, 404, ("no alias 'staging'",)),
        ("/v2/models/iris/versions/99999999999999999999/infer", {"inputs": [good]}, 404, ("no version",)),
    ]
    for path, body, status, fragments in cases:
        assert_error(client.post(path, json=body), status, *fragments)
    assert_error(client.post(iris, content=b'{"inputs": [', headers={"content-type": "application/json"}), 400, "JSON")
    assert_error(client.post(iris, content=b""), 400, "empty")
    headers = {"Inference-Header-Content-Length": "500"}
    assert_error(client.post(iris, json={"inputs": [good]}, headers=headers), 400, "Inference-Header-Content-Length")


# ---------------------------------------------------------------------- in process
def test_health_ready_is_503_with_an_empty_body_until_models_load(home: Any) -> None:
    app = create_app(ServeSettings(), shipyard.connect())

    async def probe() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # no lifespan: nothing is loaded
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
            return await client.get("/v2/health/live"), await client.get("/v2/health/ready")

    live, ready = asyncio.run(probe())
    assert (live.status_code, live.content) == (200, b"")
    assert (ready.status_code, ready.content) == (503, b"")


def test_binary_tensor_data_and_nested_json_parse_to_the_same_values() -> None:
    header = (
        b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}},'
        b' {"name": "b", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 13}},'
        b' {"name": "c", "datatype": "BOOL", "shape": [2], "data": [[true], [false]]}]}'
    )
    strings = b"".join(len(s).to_bytes(4, "little") + s for s in (b"web", b"ap"))
    body = header + np.array([1, 2, 3, 4], dtype="<f4").tobytes() + strings
    request = parse_request(body, str(len(header)))
    a, b, c = request.inputs
    assert (a.values.dtype, a.values.tolist()) == (np.float32, [1.0, 2.0, 3.0, 4.0])
    assert b.values.tolist() == ["web", "ap"]
    assert c.values.tolist() == [True, False]
    with pytest.raises(InvalidInput, match="no input claims"):
        parse_request(body + b"x", str(len(header)))
    with pytest.raises(InvalidInput, match="runs past the end"):
        parse_request(body[:-1], str(len(header)))


def test_numeric_columns_map_a_2d_tensor_onto_typed_columns() -> None:
    signature = Signature.infer(pd.DataFrame({"x": [1.5], "n": [2], "flag": [True]}))
    request = parse_request(
        b'{"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 3], "data": [1.5, 2, 1, 0.5, 3, 0]}]}',
        None,
    )
    frame = features(signature, request.inputs)
    assert isinstance(frame, pd.DataFrame)
    validated = signature.validate(frame)
    assert validated["flag"].tolist() == [True, False] and validated["n"].tolist() == [2, 3]


def test_models_without_a_signature_take_one_tensor_or_named_columns() -> None:
    matrix = parse_request(
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}', None
    )
    array = features(None, matrix.inputs)
    assert isinstance(array, np.ndarray) and array.tolist() == [[1, 2], [3, 4]]
    columns = parse_request(
        b'{"inputs": [{"name": "a", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]},'
        b' {"name": "b", "datatype": "FP32", "shape": [2, 1], "data": [[1], [2]]}]}',
        None,
    )
    frame = features(None, columns.inputs)
    assert isinstance(frame, pd.DataFrame) and frame.to_dict("list") == {"a": ["x", "y"], "b": [1.0, 2.0]}
