"""Server life: hot reload when an alias moves, graceful shutdown, several workers, readiness."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

import shipyard


def _rows(X: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in X.head(n).to_dict("records")]


def test_alias_move_switches_version_under_load_without_failed_requests(
    start_server: Callable[..., Any], fraud_model: Any
) -> None:
    _, X = fraud_model
    server = start_server("fraud")
    body = {"instances": _rows(X, 3)}
    seen: list[tuple[float, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                answer = client.post("/v1/models/fraud/predict", json=body)
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    seen.append((time.monotonic(), answer.json()["version"]))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        moved_at = time.monotonic()
        shipyard.set_alias("fraud", "production", 2)  # from this process, straight into the registry
        deadline = moved_at + 15
        while time.monotonic() < deadline and not any(v == 2 for _, v in seen):
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert failures == []
    switched = min(t for t, v in seen if v == 2)
    assert switched - moved_at < 2.5, f"switch took {switched - moved_at:.2f} s"
    assert all(v == 2 for t, v in seen if t > switched + 0.2)  # no flapping back
    assert server.client.get("/v1/models").json()["models"][0]["version"] == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_requests(
    start_server: Callable[..., Any], fraud_model: Any, workers: int
) -> None:
    import json

    pipe, X = fraud_model
    server = start_server("fraud", "--workers", str(workers))
    body = json.dumps({"instances": _rows(X, 200)}).encode()
    half_sent = threading.Event()
    result: dict[str, Any] = {}

    def slow_body() -> Any:  # the client is still uploading when the signal comes
        yield body[: len(body) // 2]
        half_sent.set()
        time.sleep(1.5)
        yield body[len(body) // 2 :]

    def slow_request() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            result["answer"] = client.post(
                "/v1/models/fraud/predict", content=slow_body(), headers={"content-type": "application/json"}
            )

    thread = threading.Thread(target=slow_request)
    thread.start()
    assert half_sent.wait(timeout=30)
    time.sleep(0.2)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=60)
    # uvicorn finishes the request, then re-raises SIGTERM so the exit status says how it stopped
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    answer = result["answer"]
    assert answer.status_code == 200
    assert answer.json()["predictions"] == pipe.predict(X.head(200)).tolist()


def test_two_workers_share_one_port(start_server: Callable[..., Any], fraud_model: Any) -> None:
    pipe, X = fraud_model
    server = start_server("fraud", "--workers", "2")
    for _ in range(20):  # a new connection each time, so both workers get some
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post("/v1/models/fraud/predict", json={"instances": _rows(X, 5)})
            assert answer.status_code == 200
            assert answer.json()["predictions"] == pipe.predict(X.head(5)).tolist()
    metrics = server.client.get("/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("shipyard_requests_total{") and 'status="200"' in line and "predict" in line
    )
    assert counted == 20  # every worker's requests, whichever worker answers /metrics
    assert "shipyard_loaded_models 2.0" in metrics  # one model in each of the two live workers
    assert server.stop(signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM)


def test_a_killed_worker_is_replaced_and_serves_the_current_version(
    start_server: Callable[..., Any], fraud_model: Any
) -> None:
    import psutil

    pipe, X = fraud_model
    server = start_server("fraud", "--workers", "2")
    deadline = time.monotonic() + 30
    while len(workers := psutil.Process(server.process.pid).children()) < 2:  # forked one after the other
        assert time.monotonic() < deadline, "the second worker did not start within 30 s"
        time.sleep(0.1)
    workers[0].kill()  # SIGKILL: no chance to clean up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = {p.pid for p in psutil.Process(server.process.pid).children()}
        if len(live) == 2 and workers[0].pid not in live:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the arbiter did not replace the killed worker within 30 s")
    for _ in range(20):  # new connections, so the replacement answers some of them
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post("/v1/models/fraud/predict", json={"instances": _rows(X, 3)})
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == pipe.predict(X.head(3)).tolist()
    deadline = time.monotonic() + 10
    while "shipyard_loaded_models 2.0" not in server.client.get("/metrics").text:  # the dead one is not counted
        assert time.monotonic() < deadline, server.client.get("/metrics").text
        time.sleep(0.2)


def test_workers_stop_when_the_parent_is_killed(start_server: Callable[..., Any], fraud_model: Any) -> None:
    import psutil

    server = start_server("fraud", "--workers", "2")
    deadline = time.monotonic() + 30
    while len(workers := psutil.Process(server.process.pid).children()) < 2:
        assert time.monotonic() < deadline, "the second worker did not start within 30 s"
        time.sleep(0.1)
    server.process.kill()
    server.process.wait(timeout=10)
    _, alive = psutil.wait_procs(workers, timeout=30)
    for orphan in alive:  # never leave them running, even when the assertion below fails
        orphan.kill()
    assert not alive, f"workers {[p.pid for p in alive]} outlived their parent"


def test_serve_refuses_unknown_refs_and_empty_registry(home: Any, fraud_model: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    shipyard_cmd = str(Path(sys.executable).parent / "shipyard")
    unknown = subprocess.run([shipyard_cmd, "serve", "nope"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "error: model 'nope' is not registered; run 'shipyard models list' to see the registered models"
    ]
    shipyard.delete_alias("fraud", "production")
    empty = subprocess.run([shipyard_cmd, "serve"], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1
    assert "no model has a production alias" in empty.stderr
