"""Request ids are unique across the workers of one server and across worker restarts (issue 15, item 1)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import psutil
from tests.serving.conftest import Server


def _ids(server: Server, rows: list[dict[str, object]], count: int) -> list[str]:
    """``count`` predictions, each on a new connection so that the kernel spreads them over the workers."""
    ids = []
    for _ in range(count):
        answer = httpx.post(f"{server.url}/v1/models/fraud/predict", json={"instances": rows}, timeout=30.0)
        assert answer.status_code == 200, answer.text
        ids.append(answer.headers["x-request-id"])
        assert answer.json()["request_id"] == ids[-1]
    return ids


def _workers(server: Server) -> set[int]:
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def test_request_ids_are_unique_across_workers_and_a_worker_restart(
    start_server: Callable[..., Server], fraud_model: tuple[object, object]
) -> None:
    _, X = fraud_model
    rows = X.head(1).to_dict(orient="records")  # type: ignore[attr-defined]
    server = start_server("fraud", "--workers", "2")
    ids = _ids(server, rows, 30)
    before = _workers(server)
    killed = min(before)
    psutil.Process(killed).send_signal(signal.SIGKILL)  # the arbiter forks a new worker from the same parent
    deadline = time.monotonic() + 20
    while len(_workers(server) - {killed}) < 2 or server.client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, f"no worker replaced pid {killed}:\n{server.log()}"
        time.sleep(0.05)
    ids += _ids(server, rows, 30)
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicated, f"request ids served twice: {duplicated}"
    assert all(len(i) == 32 for i in ids)  # 128 random bits: an id does not reveal others'
