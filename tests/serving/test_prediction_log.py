"""The prediction log through a real ``shipyard serve``: every answered prediction, shutdown, crash, feedback.

Expected predictions and probabilities come from the scikit-learn pipeline itself, inputs from the rows sent.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from tests.serving.test_feedback import online_model, stream  # noqa: F401  (the fixture: an online model)

from shipyard.client import Client
from shipyard.monitoring.logs import PredictionLog

COLUMNS = ["amount", "hour", "channel", "is_foreign"]


def rows_of(X: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in X.to_dict("records")]


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return str(path)


def v2_inputs(X: pd.DataFrame) -> list[dict[str, Any]]:
    types = {"amount": "FP64", "hour": "INT64", "channel": "BYTES", "is_foreign": "BOOL"}
    return [{"name": c, "datatype": types[c], "shape": [len(X)], "data": X[c].tolist()} for c in X.columns]


def test_every_answered_prediction_is_logged_and_sigterm_loses_none(
    start_server: Callable[..., Any], fraud_model: Any, home: Path, tmp_path: Path
) -> None:
    pipe, X = fraud_model
    # nothing is written before shutdown: what is in the log afterwards was written by the graceful stop
    server = start_server("fraud", "--config", config(tmp_path, "logging:\n  flush_interval_s: 3600\n"))
    http = server.client
    sent: dict[str, tuple[str, int, pd.DataFrame]] = {}  # request id -> (route, version, rows)

    def post(rid: str, route: str, version: int, rows: pd.DataFrame, path: str, body: dict[str, Any]) -> None:
        answer = http.post(path, json=body, headers={"x-request-id": rid})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == rid
        sent[rid] = (route, version, rows)

    post("n1", "native", 1, X.iloc[:1], "/v1/models/fraud/predict", {"instances": rows_of(X.iloc[:1])})
    many = X.iloc[1:8]
    post("n7", "native", 1, many, "/v1/models/fraud/predict", {"inputs": {c: many[c].tolist() for c in COLUMNS}})
    post("n2", "native", 2, X.iloc[8:10], "/v1/models/fraud/versions/2/predict",
         {"instances": X.iloc[8:10].to_numpy().tolist()})  # fmt: skip  (rows of values, a pinned version)
    post("v1", "v2", 1, X.iloc[10:11], "/v2/models/fraud/infer", {"inputs": v2_inputs(X.iloc[10:11])})
    post("v5", "v2", 2, X.iloc[11:16], "/v2/models/fraud/versions/2/infer", {"inputs": v2_inputs(X.iloc[11:16])})
    post("m1", "mlflow", 1, X.iloc[16:17], "/invocations",
         {"dataframe_split": {"columns": COLUMNS, "data": X.iloc[16:17].to_numpy().tolist()}})  # fmt: skip
    post("m4", "mlflow", 1, X.iloc[17:21], "/v1/models/fraud/invocations",
         {"dataframe_records": rows_of(X.iloc[17:21])})  # fmt: skip
    bad = {"instances": [{"amount": "abc"}]}
    refused = http.post("/v1/models/fraud/predict", json=bad, headers={"x-request-id": "bad"})
    assert refused.status_code == 422  # not answered, so not logged

    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its shutdown
    frame = PredictionLog(home / "logs").predictions("fraud")
    assert len(frame) == sum(len(rows) for _, _, rows in sent.values())
    assert frame["request_id"].is_unique
    for rid, (route, version, rows) in sent.items():
        ids = [rid] if len(rows) == 1 else [f"{rid}/{i}" for i in range(len(rows))]
        logged = frame.set_index("request_id").loc[ids]
        assert (logged["route"] == route).all() and (logged["version"] == version).all(), rid
        assert logged["prediction"].tolist() == pipe.predict(rows).tolist(), rid
        np.testing.assert_allclose(np.stack(logged["probabilities"].to_numpy()), pipe.predict_proba(rows))
        for column in COLUMNS:
            assert logged[column].tolist() == rows[column].tolist(), (rid, column)
        assert (logged["latency_ms"] > 0).all()


def test_feedback_labels_join_logged_predictions_by_request_id(
    start_server: Callable[..., Any], fraud_model: Any, home: Path, tmp_path: Path
) -> None:
    pipe, X = fraud_model
    server = start_server("fraud", "--config", config(tmp_path, "logging:\n  flush_interval_s: 0.2\n"))
    http = server.client
    one = http.post("/v1/models/fraud/predict", json={"instances": rows_of(X.iloc[:1])}).json()["request_id"]
    three = http.post("/v1/models/fraud/predict", json={"instances": rows_of(X.iloc[1:4])}).json()["request_id"]
    accepted = http.post("/v1/models/fraud/feedback", json={"request_id": one, "label": 1})
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 1
    labels = [{"request_id": f"{three}/0", "label": 0}, {"request_id": f"{three}/2", "label": 1}]
    assert http.post("/v1/models/fraud/feedback", json={"labels": labels}).status_code == 202
    with Client(server.url) as client:  # the Python client, for a model that keeps no offsets
        correction = client.feedback("fraud", request_id=f"{three}/0", label=1)
    assert (correction.accepted, correction.first_offset, correction.last_offset) == (1, None, None)
    # rows with labels cannot be joined with anything for a model that does not learn online
    rows = http.post("/v1/models/fraud/feedback", json={"instances": rows_of(X.iloc[:1]), "labels": [1]})
    assert rows.status_code == 400 and "request_id" in rows.json()["error"]
    deadline = time.monotonic() + 10  # the predictions are written within the flush interval (0.2 s)
    while time.monotonic() < deadline and len(PredictionLog(home / "logs").predictions("fraud")) < 4:
        time.sleep(0.05)
    # labels are durable before the 202: a crash right after loses none
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    log = PredictionLog(home / "logs")
    assert sorted(log.labels("fraud")["request_id"]) == sorted([one, f"{three}/0", f"{three}/0", f"{three}/2"])
    joined = log.joined("fraud")  # the predictions were flushed (0.2 s) long before the kill
    assert joined["request_id"].tolist() == [one, f"{three}/0", f"{three}/2"]
    assert joined["label"].tolist() == [1, 1, 1]  # the correction of {three}/0 wins
    assert joined["prediction"].tolist() == pipe.predict(X.iloc[[0, 1, 3]]).tolist()


def test_feedback_without_logging_or_online_learning_is_refused(
    start_server: Callable[..., Any], fraud_model: Any, tmp_path: Path
) -> None:
    server = start_server("fraud", "--config", config(tmp_path, "logging:\n  enabled: false\n"))
    answer = server.client.post("/v1/models/fraud/feedback", json={"request_id": "r", "label": 1})
    assert answer.status_code == 409 and "online=True" in answer.json()["error"]


@pytest.mark.slow
def test_kill_9_loses_at_most_the_last_flush_interval(
    start_server: Callable[..., Any], fraud_model: Any, home: Path, tmp_path: Path
) -> None:
    _, X = fraud_model
    interval = 0.5
    yaml = config(tmp_path, f"logging:\n  flush_interval_s: {interval}\n")
    server = start_server("fraud", "--config", yaml)
    acknowledged: list[tuple[str, int, float]] = []  # request id, rows, when the answer arrived
    stop = threading.Event()
    body_one = {"instances": rows_of(X.iloc[:1])}
    body_three = {"instances": rows_of(X.iloc[1:4])}

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                rid, body = f"w{worker}-{i}", body_three if i % 5 == 0 else body_one
                try:
                    answer = client.post("/v1/models/fraud/predict", json=body, headers={"x-request-id": rid})
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code == 200:
                    acknowledged.append((rid, len(body["instances"]), time.time()))

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(4.0)
    killed_at = time.time()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    # restart on the same home: the new writer's files join the old ones, nothing is counted twice
    again = start_server("fraud", "--config", yaml)
    assert again.client.post("/v1/models/fraud/predict", json=body_one, headers={"x-request-id": "after"}).is_success
    assert again.stop(signal.SIGTERM) in (0, -signal.SIGTERM)

    frame = PredictionLog(home / "logs").predictions("fraud")
    assert frame["request_id"].is_unique, frame["request_id"][frame["request_id"].duplicated()].tolist()
    logged = set(frame["request_id"])
    margin = interval + 1.5  # one flush interval, plus the write itself on a busy machine
    old = [(rid, n) for rid, n, at in acknowledged if at < killed_at - margin]
    assert len(old) >= 20, f"only {len(old)} requests before the kill: the load did not run"
    missing = [rid for rid, n in old if not ({rid} if n == 1 else {f"{rid}/{i}" for i in range(n)}) <= logged]
    assert missing == [], f"{len(missing)} of {len(old)} acknowledged requests are not in the log: {missing[:5]}"
    assert "after" in logged
    recent = len(acknowledged) - len(old)
    print(f"kill -9: {len(old)} old requests all logged; {recent} in the last {margin:.1f} s not checked")


def test_every_worker_writes_its_own_files(
    start_server: Callable[..., Any], fraud_model: Any, home: Path, tmp_path: Path
) -> None:
    _, X = fraud_model
    server = start_server("fraud", "--workers", "2", "--config", config(tmp_path, "logging:\n  flush_interval_s: 60\n"))
    ids = []
    for i in range(30):  # a new connection each time, so both workers may get some
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post("/v1/models/fraud/predict", json={"instances": rows_of(X.iloc[i : i + 1])})
            assert answer.status_code == 200
            ids.append(answer.json()["request_id"])
    parent = server.process.pid
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # the workers flush on their graceful stop
    frame = PredictionLog(home / "logs").predictions("fraud")
    assert sorted(frame["request_id"]) == sorted(ids)
    pids = {int(path.name.split(".")[0].split("-")[1]) for path in (home / "logs").rglob("*.parquet")}
    assert pids and parent not in pids  # written by the workers, each under its own pid


@pytest.mark.postgres
def test_labels_of_an_online_model_go_to_its_store_and_to_the_log(
    start_server: Callable[..., Any], online_model: Any, home: Path, tmp_path: Path  # noqa: F811
) -> None:
    import shipyard
    from shipyard.online import OnlineStore

    X, _ = stream(3, seed=5)
    yaml = config(tmp_path, "online:\n  learn: false\nlogging:\n  flush_interval_s: 0.1\n")
    server = start_server("clicks", "--config", yaml)
    http = server.client
    rid = http.post("/v1/models/clicks/predict", json={"instances": rows_of(X)}).json()["request_id"]
    answer = http.post("/v1/models/clicks/feedback", json={"request_id": f"{rid}/1", "label": 1})
    assert answer.status_code == 202, answer.text
    assert answer.json()["first_offset"] == answer.json()["last_offset"] == 1  # the online path as before
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert OnlineStore(shipyard.connect()).status("clicks").last_offset == 1
    joined = PredictionLog(home / "logs").joined("clicks")
    assert joined["request_id"].tolist() == [f"{rid}/1"] and joined["label"].tolist() == [1]
    assert joined[["x0", "x1", "x2"]].to_numpy().tolist() == X.iloc[[1]].to_numpy().tolist()


@pytest.mark.postgres
def test_a_server_logs_to_postgresql(
    start_server: Callable[..., Any], fraud_model: Any, home: Path, tmp_path: Path, postgres_url: str
) -> None:
    pipe, X = fraud_model
    yaml = config(tmp_path, f"logging:\n  backend: postgres\n  postgres_url: {postgres_url}\n  flush_interval_s: 0.2\n")
    server = start_server("fraud", "--config", yaml)
    http = server.client
    one = http.post("/v1/models/fraud/predict", json={"instances": rows_of(X.iloc[:1])}).json()["request_id"]
    many = http.post("/v2/models/fraud/infer", json={"inputs": v2_inputs(X.iloc[1:4])}, headers={"x-request-id": "v"})
    assert many.status_code == 200
    assert http.post("/v1/models/fraud/feedback", json={"request_id": one, "label": 1}).status_code == 202
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    log = PredictionLog(postgres_url=postgres_url)
    frame = log.predictions("fraud")
    assert frame["request_id"].tolist() == [one, "v/0", "v/1", "v/2"]
    assert frame["prediction"].tolist() == pipe.predict(X.iloc[:4]).tolist()
    np.testing.assert_allclose(np.stack(frame["probabilities"].to_numpy()), pipe.predict_proba(X.iloc[:4]))
    assert frame["channel"].tolist() == X["channel"].iloc[:4].tolist()
    assert log.joined("fraud")["request_id"].tolist() == [one]
    assert not (home / "logs").exists()
