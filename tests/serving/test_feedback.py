"""Feedback and online learning through a real ``shipyard serve``: durable 202s, refusals, auth, learners."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier

import shipyard
from shipyard.client import Client
from shipyard.training.incremental import partial_fit

OnlineStore = pytest.importorskip("shipyard.online").OnlineStore

COLUMNS = ["x0", "x1", "x2"]
BATCH = 100


def stream(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose label is a linear rule of three numeric columns."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)).round(6), columns=COLUMNS)
    y = (X["x0"] + 0.5 * X["x1"] - X["x2"] > 0).astype(int).to_numpy()
    return X, y


def records(X: pd.DataFrame) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in X.to_dict("records")]


@pytest.fixture
def online_model(home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> SGDClassifier:
    """``clicks``: an online SGD classifier (shuffle off: the same events give the same model), on PostgreSQL."""
    monkeypatch.setenv("SHIPYARD_REGISTRY_URL", postgres_url)
    X, y = stream(200, seed=1)
    clf = SGDClassifier(shuffle=False, random_state=0).fit(X, y)
    shipyard.register(clf, "clicks", X=X, y=y, online=True)
    shipyard.set_alias("clicks", "production", 1)
    return clf


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return str(path)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_feedback_by_request_id_and_by_rows_is_durable(
    start_server: Callable[..., Any], online_model: Any, fraud_model: Any, tmp_path: Path
) -> None:
    service = shipyard.connect()
    _, predict_key = service.create_key("app", ["predict"])
    _, feedback_key = service.create_key("labeller", ["feedback"])
    yaml = "online:\n  learn: false\n"
    server = start_server("clicks", "fraud", "--auth", "--config", config(tmp_path, yaml))
    http = server.client
    X, y = stream(6, seed=2)
    rows = records(X)

    one = http.post("/v1/models/clicks/predict", json={"instances": rows[:1]}, headers=bearer(predict_key))
    assert one.status_code == 200
    two = http.post("/v1/models/clicks/predict", json={"instances": rows[1:3]}, headers=bearer(predict_key))
    assert two.status_code == 200

    # a predict-only key may not send feedback; a feedback key may
    body = {"request_id": one.json()["request_id"], "label": int(y[0])}
    refused = http.post("/v1/models/clicks/feedback", json=body, headers=bearer(predict_key))
    assert refused.status_code == 403 and "'feedback'" in refused.json()["error"]
    with Client(server.url, api_key=feedback_key) as client:
        first = client.feedback("clicks", request_id=one.json()["request_id"], label=int(y[0]))
        assert first.accepted == 1 and first.first_offset == first.last_offset
        rid = two.json()["request_id"]
        pairs = client.feedback("clicks", labels=[(f"{rid}/0", int(y[1])), (f"{rid}/1", int(y[2]))])
        assert pairs.accepted == 2 and pairs.first_offset == first.last_offset + 1
        batch = client.feedback("clicks", rows=X.iloc[3:], labels=y[3:].tolist())
        assert batch.accepted == 3
        assert (batch.first_offset, batch.last_offset) == (pairs.last_offset + 1, pairs.last_offset + 3)

    # durable before the answer: kill the server at once, the events are all in the store
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    status = OnlineStore(service).status("clicks")
    assert status.last_offset == batch.last_offset == 6


def test_feedback_refusals(
    start_server: Callable[..., Any], online_model: Any, fraud_model: Any, tmp_path: Path
) -> None:
    yaml = (
        "max_rows: 50\nonline:\n  learn: false\n  feedback_events_per_second: 1\n  feedback_burst: 40\n"
        "  record_interval_ms: 600000\n"  # predictions are written only at shutdown (or on a request-id label)
        "logging:\n  enabled: false\n"  # without the prediction log, a model that is not online takes no feedback
    )
    server = start_server("clicks", "fraud", "--config", config(tmp_path, yaml))
    http = server.client
    X, y = stream(4, seed=3)
    rows = records(X)

    def refused(model: str, body: Any, status: int, *words: str) -> dict[str, Any]:
        answer = http.post(f"/v1/models/{model}/feedback", json=body)
        assert answer.status_code == status, answer.text
        message = answer.json()["error"]
        for word in words:
            assert word in message, message
        return dict(answer.json())

    refused("fraud", {"request_id": "r", "label": 1}, 409, "online=True")
    refused("nope", {"request_id": "r", "label": 1}, 404, "nope")
    refused("clicks", {"request_id": "never-predicted", "label": 1}, 404, "never-predicted")
    refused("clicks", {"request_id": "r"}, 400, '"label"')
    refused("clicks", {"labels": []}, 400, "request_id")
    refused("clicks", {"instances": rows[:2], "labels": [1]}, 400, "2 rows but 1 labels")
    refused("clicks", {"instances": rows[:1], "labels": [7]}, 400, "7", "classes")
    refused("clicks", {"instances": [{"x0": 1.0}], "labels": [1]}, 422, "x1")
    refused("clicks", {"instances": rows[:1] * 51, "labels": [1] * 51}, 413, "limit is 50")
    assert http.post("/v1/models/clicks/feedback", content=b"{not json").status_code == 400

    # the rate limit: a burst of 40 events, then 1 a second
    ok = http.post("/v1/models/clicks/feedback", json={"instances": rows[:2], "labels": y[:2].tolist()})
    assert ok.status_code == 202, ok.text
    limited = http.post("/v1/models/clicks/feedback", json={"instances": rows * 10, "labels": y.tolist() * 10})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "feedback_events_per_second" in limited.json()["error"]
    metrics = http.get("/metrics").text
    assert 'shipyard_online_events_total{model="clicks"} 2.0' in metrics

    # predictions held for the join are written when the server stops
    rid = http.post("/v1/models/clicks/predict", json={"instances": rows[:1]}).json()["request_id"]
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its shutdown
    joined = OnlineStore(shipyard.connect()).join("clicks", [(rid, 1)])
    assert [(e.features, e.label, e.request_id) for e in joined] == [(rows[0], 1, rid)]


def test_two_workers_learn_once_and_serve_the_snapshot(
    start_server: Callable[..., Any], online_model: SGDClassifier, tmp_path: Path
) -> None:
    pytest.importorskip("shipyard.online.learner")
    yaml = (
        "reload_interval_s: 0.2\nonline:\n  status_interval_s: 0.2\n  learner:\n    snapshot_every: 400\n"
        f"    snapshot_seconds: 60\n    batch: {BATCH}\n    lease_seconds: 2\n    poll_seconds: 0.1\n"
        "    tolerance: 1.0\n"
    )
    server = start_server("clicks", "--workers", "2", "--config", config(tmp_path, yaml))
    X, y = stream(400, seed=4)
    with Client(server.url) as client:
        for start in range(0, len(X), BATCH):
            client.feedback("clicks", rows=X.iloc[start : start + BATCH], labels=y[start : start + BATCH].tolist())

    service = shipyard.connect()
    store = OnlineStore(service)
    deadline = time.monotonic() + 30
    while (status := store.status("clicks")).committed_offset < len(X):
        assert time.monotonic() < deadline, f"the learner did not catch up: {status}"
        time.sleep(0.2)
    snapshot = status.last_snapshot_version
    # one learner learnt: one snapshot of the 400 events, no duplicate from a second learner
    versions = sorted(v.version for v in service.list_versions("clicks"))
    assert versions == [1, 2] and snapshot == 2

    # every worker serves the snapshot within seconds (new connections land on either worker)
    deadline = time.monotonic() + 10
    served: set[int] = set()
    while served != {snapshot}:
        assert time.monotonic() < deadline, f"workers still serve {served}"
        served = set()
        for _ in range(12):
            with Client(server.url) as fresh:
                served.add(fresh.infer("clicks", records(X.head(1))).version)

    # the HTTP stream gives the model of the same events replayed in-process, block by block
    replay = shipyard.load("clicks:1").loaded.model
    for start in range(0, len(X), BATCH):
        partial_fit(replay, X.iloc[start : start + BATCH], y[start : start + BATCH])
    learnt = shipyard.load(f"clicks:{snapshot}").loaded.model
    np.testing.assert_allclose(learnt.coef_, replay.coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(learnt.intercept_, replay.intercept_, rtol=0, atol=1e-9)
    deadline = time.monotonic() + 10
    while 'shipyard_online_pending_events{model="clicks"} 0.0' not in (metrics := server.client.get("/metrics").text):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
    assert 'shipyard_online_events_total{model="clicks"} 400.0' in metrics
    assert 'shipyard_online_rolling_metric{metric="accuracy",model="clicks"}' in metrics


def test_concurrent_feedback_is_coalesced_and_refusals_stay_per_request(home: Path) -> None:
    from shipyard.errors import InvalidInput
    from shipyard.online import FeedbackEvent
    from shipyard.serving.online import Appender

    X, y = stream(50, seed=5)
    shipyard.register(SGDClassifier(shuffle=False, random_state=0).fit(X, y), "clicks", X=X, y=y, online=True)
    service = shipyard.connect()
    rows = records(X)
    good = [[FeedbackEvent(rows[i], int(y[i])) for i in range(start, start + 3)] for start in (0, 3, 6, 9)]
    bad = [FeedbackEvent(rows[0], 7)]

    async def send(*batches: list[Any]) -> list[Any]:
        appender = Appender(OnlineStore(service), "clicks", max_events=1_000)
        return list(await asyncio.gather(*(appender.append(b) for b in batches), return_exceptions=True))

    # one commit for all three (they arrive while none runs), each request its own slice of the offsets
    assert asyncio.run(send(good[0], good[1], good[2])) == [(1, 3), (4, 6), (7, 9)]
    # a refused request in a coalesced commit: the others are committed on their own
    answers = asyncio.run(send(good[0], good[1], bad, good[2], good[3]))
    assert isinstance(answers[2], InvalidInput) and "7" in str(answers[2])
    offsets = [answer for i, answer in enumerate(answers) if i != 2]
    assert sorted(offsets) == [(10, 12), (13, 15), (16, 18), (19, 21)]
    stored = OnlineStore(service).events("clicks", 0, 100)
    by_offset = {offset: (features, label) for offset, features, label in stored}
    for events, (first, _) in zip([good[0], good[1], good[2], good[3]], offsets, strict=True):
        for i, event in enumerate(events):
            assert by_offset[first + i] == (event.features, event.label)


@pytest.mark.parametrize("backend", ["parquet", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_labels_of_a_logged_model_are_accepted_only_for_logged_request_ids(
    start_server: Callable[..., Any],
    fraud_model: Any,
    home: Path,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """A model that does not learn online: a label joins its logged prediction, or is refused with 404."""
    from shipyard.monitoring.logs import PredictionLog

    _, X = fraud_model
    yaml = "logging:\n  flush_interval_s: 0.2\n"
    log = PredictionLog(home / "logs")
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        yaml += f"  backend: postgres\n  postgres_url: {url}\n"
        log = PredictionLog(postgres_url=url)
    server = start_server("fraud", "--config", config(tmp_path, yaml))
    http = server.client
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in X.head(2).to_dict("records")]
    one = http.post("/v1/models/fraud/predict", json={"instances": rows[:1]}).json()["request_id"]
    two = http.post("/v1/models/fraud/predict", json={"instances": rows}).json()["request_id"]

    unknown = http.post("/v1/models/fraud/feedback", json={"request_id": "7f3c-never-served", "label": 1})
    assert unknown.status_code == 404, unknown.text
    assert "'7f3c-never-served'" in unknown.json()["error"] and "prediction log" in unknown.json()["error"]
    mixed = [{"request_id": one, "label": 1}, {"request_id": f"{two}/5", "label": 0}]
    refused = http.post("/v1/models/fraud/feedback", json={"labels": mixed})
    assert refused.status_code == 404 and f"'{two}/5'" in refused.json()["error"]
    assert f"'{one}'" not in refused.json()["error"]  # only the unknown id is named

    known = [mixed[0], {"request_id": f"{two}/1", "label": 0}]
    accepted = http.post("/v1/models/fraud/feedback", json={"labels": known})
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 2, accepted.text
    # a refused request wrote nothing: only the accepted labels are in the log
    assert sorted(log.labels("fraud")["request_id"]) == sorted([one, f"{two}/1"])


def test_a_label_sent_to_another_worker_than_its_prediction_is_accepted(
    start_server: Callable[..., Any], fraud_model: Any, tmp_path: Path
) -> None:
    """Each request on a new connection: the kernel spreads them over both workers, so some labels reach a worker
    that did not make (and has not written) the prediction; they are looked up again after its flush interval."""
    import httpx

    _, X = fraud_model
    yaml = config(tmp_path, "logging:\n  flush_interval_s: 0.2\n")
    server = start_server("fraud", "--workers", "2", "--config", yaml)
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in X.iloc[0].to_dict().items()}
    for _ in range(8):
        answer = httpx.post(f"{server.url}/v1/models/fraud/predict", json={"instances": [row]}, timeout=30)
        body = {"request_id": answer.json()["request_id"], "label": 1}
        label = httpx.post(f"{server.url}/v1/models/fraud/feedback", json=body, timeout=30)
        assert label.status_code == 202, label.text
