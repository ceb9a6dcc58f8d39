"""Helpers of the rollout tests: models that agree, disagree or sleep, load loops, waiting for a revision."""

from __future__ import annotations

import re
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from tests.serving.conftest import Server, fraud_frame, fraud_pipeline

import shipyard

ROW = {"amount": 12.5, "hour": 3, "channel": "web", "is_foreign": False}
SLOW_MODULE = "shipyard_test_slowstep"
SLOW_TYPE = f"{SLOW_MODULE}.pause"
BROKEN_TYPE = f"{SLOW_MODULE}.broken"
TRUSTED = f"{SLOW_TYPE},{BROKEN_TYPE}"


def register_versions(*labels: str) -> pd.DataFrame:
    """Register ``fraud`` versions 1, 2, ... trained on the true labels (``"same"``) or flipped ones (``"flipped"``).

    Production points at version 1. Returns the training frame.
    """
    X, y = fraud_frame()
    for kind in labels:
        target = y if kind == "same" else (1 - y).rename("is_fraud")
        shipyard.register(fraud_pipeline(X, target), "fraud", X=X, y=y)
    shipyard.set_alias("fraud", "production", 1)
    return X


def slow_module(folder: Path, seconds: float) -> Path:
    """Write an importable module whose ``pause(X)`` sleeps ``seconds`` and returns ``X``, and whose ``broken(X)``
    raises ``ValueError`` for rows with ``hour`` >= 12 (a model that fails on half the traffic); returns its folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SLOW_MODULE}.py").write_text(
        textwrap.dedent(
            f"""
            import time


            def pause(X):
                time.sleep({seconds})
                return X


            def broken(X):
                if (X["hour"] >= 12).any():
                    raise ValueError("broken on purpose")
                return X
            """
        )
    )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def register_slow(X: pd.DataFrame, y: pd.Series) -> int:
    """Register a ``fraud`` version whose every model call sleeps (a trusted FunctionTransformer step)."""
    import importlib

    module = importlib.import_module(SLOW_MODULE)
    inner = fraud_pipeline(X, y)
    slow = make_pipeline(FunctionTransformer(module.pause), inner)
    return shipyard.register(slow, "fraud", X=X, y=y, trusted_types=[SLOW_TYPE]).version


def register_broken(X: pd.DataFrame, y: pd.Series) -> int:
    """Register a ``fraud`` version that fails (``ValueError``) on every row with ``hour`` >= 12."""
    import importlib

    module = importlib.import_module(SLOW_MODULE)
    broken = make_pipeline(FunctionTransformer(module.broken), fraud_pipeline(X, y))
    return shipyard.register(
        broken, "fraud", X=X[X["hour"] < 12], y=y[X["hour"] < 12], trusted_types=[BROKEN_TYPE]
    ).version


def metric(server: Server, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample of ``server`` (``None`` when absent)."""
    text = server.client.get("/metrics").text
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if selector else "") + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def wait_revision(server: Server, revision: int, *, timeout: float = 2.0, model: str = "fraud") -> float:
    """Wait until ``server`` routes by deployment ``revision``; returns the seconds it took (fails past ``timeout``)."""
    started = time.monotonic()
    while True:
        seen = metric(server, "shipyard_deployment_revision", model=model)
        if seen is not None and seen >= revision:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{server.url} still at deployment revision {seen} after {timeout} s, not {revision}")
        time.sleep(0.02)


def predict(client: httpx.Client, row: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    return client.post("/v1/models/fraud/predict", json={"instances": [row or ROW]}, **kwargs)


_VERSION = re.compile(rb"x-shipyard-version: (\d+)\r\n.*?\r\n\r\n.*?\"version\":(\d+)", re.DOTALL)


def versions_of(url: str, requests: int, *, threads: int = 16, pipeline: int = 50) -> Counter[int]:
    """Send ``requests`` one-row predictions on ``threads`` connections; count the versions that answered.

    Requests are pipelined (HTTP/1.1, ``pipeline`` at a time per connection) from raw sockets: a Python
    HTTP client would spend more CPU per request than the server. Every answer must be a 200 whose
    ``X-Shipyard-Version`` header and body name the same version.
    """
    import socket
    from urllib.parse import urlsplit

    import orjson

    parts = urlsplit(url)
    body = orjson.dumps({"instances": [ROW]})
    request = (
        b"POST /v1/models/fraud/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    counts: Counter[int] = Counter()
    lock = threading.Lock()
    failures: list[str] = []

    def work(n: int) -> None:
        local: Counter[int] = Counter()
        with socket.create_connection((parts.hostname, parts.port), timeout=30.0) as sock:
            buffer = b""
            while n > 0:
                batch = min(pipeline, n)
                sock.sendall(request * batch)
                answered = 0
                while answered < batch:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        failures.append("the server closed the connection")
                        return
                    buffer += chunk
                    while True:  # a complete answer: head, then a chunked body ending in 0\r\n\r\n
                        head_end = buffer.find(b"\r\n\r\n")
                        end = buffer.find(b"\r\n0\r\n\r\n", head_end) if head_end >= 0 else -1
                        if end < 0:
                            break
                        answer, buffer = buffer[: end + 7], buffer[end + 7 :]
                        answered += 1
                        found = _VERSION.search(answer)
                        if not answer.startswith(b"HTTP/1.1 200") or found is None or found[1] != found[2]:
                            failures.append(answer[:300].decode(errors="replace"))
                            continue
                        local[int(found[1])] += 1
                n -= batch
        with lock:
            counts.update(local)

    share = [requests // threads + (1 if i < requests % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=work, args=(n,)) for n in share]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures, failures[:3]
    return counts


@dataclass
class LoadLoop:
    """One-row predictions in background threads until stopped; counts answers per version and every failure."""

    url: str
    threads: int = 2
    pause_s: float = 0.0
    versions: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                sent = time.monotonic()
                try:
                    answer = predict(client)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                seconds = time.perf_counter() - started
                with self._lock:
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                    else:
                        version = int(answer.headers["x-shipyard-version"])
                        self.versions[version] += 1
                        self.timeline.append((sent, version))
                        self.latencies.append(seconds)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def __enter__(self) -> LoadLoop:
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def since(self, moment: float) -> Counter[int]:
        """Versions that answered the requests sent after ``moment`` (a ``time.monotonic()`` value)."""
        with self._lock:
            return Counter(version for at, version in self.timeline if at >= moment)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(step)
