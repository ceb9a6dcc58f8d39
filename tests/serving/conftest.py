"""A real ``shipyard serve`` on 127.0.0.1 for the serving tests, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import shipyard

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server process and an HTTP client bound to it."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once /readyz answers 200; fail with the server's log if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


@pytest.fixture
def start_server(home: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``shipyard serve ARGS`` on a free port and wait until /readyz answers 200."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, wait_ready: bool = True) -> Server:
        port = free_port()
        log_path = tmp_path / f"server-{port}.log"
        handle = log_path.open("w")
        process = subprocess.Popen(
            [SHIPYARD, "serve", *args, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        handle.close()
        server = Server(process, f"http://127.0.0.1:{port}", log_path)
        started.append(server)
        if wait_ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL if server.process.poll() is None else signal.SIGTERM, timeout=10)


def fraud_frame(n: int = 400, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    """A small fraud-like table with numeric, integer, string and boolean columns."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 60.0, n).round(2),
            "hour": rng.integers(0, 24, n),
            "channel": rng.choice(["web", "pos", "app"], n),
            "is_foreign": rng.random(n) < 0.1,
        }
    )
    y = pd.Series(((X["amount"] > 150) | X["is_foreign"]).astype(int), name="is_fraud")
    return X, y


def fraud_pipeline(X: pd.DataFrame, y: pd.Series) -> object:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    return make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["amount", "hour"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
                ("flag", "passthrough", ["is_foreign"]),
            ]
        ),
        LogisticRegression(),
    ).fit(X, y)


@pytest.fixture
def fraud_model(home: Path) -> tuple[object, pd.DataFrame]:
    """``fraud`` registered twice (versions 1 and 2), production on version 1; returns (pipeline, X)."""
    X, y = fraud_frame()
    pipe = fraud_pipeline(X, y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    shipyard.register(pipe, "fraud", X=X, y=y)
    shipyard.set_alias("fraud", "production", 1)
    return pipe, X


@pytest.fixture
def numeric_model(home: Path) -> tuple[object, np.ndarray]:
    """``iris``: an all-numeric DataFrame model (4 float columns, 3 classes), production on version 1."""
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    clf = LogisticRegression(max_iter=500).fit(X, data.target)
    shipyard.register(clf, "iris", X=X, y=data.target)
    shipyard.set_alias("iris", "production", 1)
    return clf, X


@pytest.fixture
def fraud_data() -> tuple[pd.DataFrame, pd.Series]:
    """The fraud-like training table and target, unregistered."""
    return fraud_frame()
