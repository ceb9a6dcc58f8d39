"""Fixtures of the monitoring tests: a webhook receiver, and a model served with logging and the live monitor."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.serving.conftest import start_server  # noqa: F401  (the fixture: a real `shipyard serve`)


@dataclass
class Webhook:
    """The URL to post to and the JSON bodies received so far."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` posts arrived; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.posts)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook receiver on 127.0.0.1 (its own thread), stopped after the test."""
    received: list[dict[str, Any]] = []
    hook = Webhook("", received)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if hook.status < 300:
                received.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# ---------------------------------------------------------------------- a monitored model behind a real server
MODEL = "shift"
FLUSH_S = 0.2
INTERVAL_S = 0.5
WINDOW_ROWS = 1000


def frame(n: int, seed: int, *, shift: float = 0.0, kiosk: float = 0.0) -> pd.DataFrame:
    """Rows of the training distribution; ``shift`` moves amount's mean by that many stds, ``kiosk`` is the
    share of rows given a channel never seen in training."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(["web", "pos", "app"], n, p=[0.5, 0.3, 0.2]).astype(object)
    channel[rng.random(n) < kiosk] = "kiosk"
    return pd.DataFrame(
        {
            "amount": np.round(rng.normal(100.0 + 20.0 * shift, 20.0, n), 3),
            "hour": rng.integers(0, 24, n),
            "channel": channel,
        }
    )


def truth(X: pd.DataFrame, seed: int) -> np.ndarray:
    """Labels: a rule of amount and channel with 10% of them flipped."""
    rng = np.random.default_rng(seed)
    rule = (X["amount"] > 110) | ((X["channel"] == "app") & (X["hour"] > 18))
    return (rule.to_numpy() ^ (rng.random(len(X)) < 0.1)).astype(int)


def pipeline(X: pd.DataFrame, y: np.ndarray) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["amount", "hour"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
            ]
        ),
        LogisticRegression(),
    ).fit(X, y)


def records(X: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in X.to_dict("records")]


def serve_config(path: Path, webhook_url: str | None = None, **monitoring: Any) -> Path:
    """A serve.yaml that flushes the log quickly and checks a 1,000-row window every half second."""
    import yaml

    section = {"interval_s": INTERVAL_S, "window_rows": WINDOW_ROWS, **monitoring}
    if webhook_url:
        section["webhook_url"] = webhook_url
    path.write_text(yaml.safe_dump({"logging": {"flush_interval_s": FLUSH_S}, "monitoring": section}))
    return path


@dataclass
class Monitored:
    """The registered model (with its training rows) and the server that serves it."""

    model: Any
    X: pd.DataFrame
    server: Any
    home: Path

    def send(self, X: pd.DataFrame, rows: int = 100, prefix: str | None = None) -> list[dict[str, Any]]:
        """Predict ``X`` in requests of ``rows`` rows (request ids ``<prefix>-<i>`` if given); the answers."""
        answers = []
        for i, start in enumerate(range(0, len(X), rows)):
            headers = {"x-request-id": f"{prefix}-{i}"} if prefix else {}
            body = {"instances": records(X.iloc[start : start + rows])}
            answer = self.server.client.post(f"/v1/models/{MODEL}/predict", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        return answers

    def log(self) -> Any:
        from shipyard.monitoring.logs import PredictionLog

        return PredictionLog(self.home / "logs")

    def wait_logged(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` predictions of the model are in the log files."""
        deadline = time.monotonic() + timeout
        while (logged := len(self.log().predictions(MODEL))) < count:
            assert time.monotonic() < deadline, f"{logged} of {count} predictions logged after {timeout} s"
            time.sleep(FLUSH_S)

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of ``/metrics`` (labels given exactly), or None."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.server.client.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None


@pytest.fixture
def monitored(home: Path, tmp_path: Path, webhook: Webhook, request: pytest.FixtureRequest) -> Monitored:
    """``shift`` registered with its training rows (so with a profile), served with logging and the monitor."""
    import shipyard

    X = frame(4000, seed=0)
    model = pipeline(X, truth(X, seed=0))
    shipyard.register(model, MODEL, X=X, y=truth(X, seed=0))
    shipyard.set_alias(MODEL, "production", 1)
    start: Callable[..., Any] = request.getfixturevalue("start_server")
    server = start(MODEL, "--config", str(serve_config(tmp_path / "serve.yaml", webhook.url)))
    return Monitored(model, X, server, home)
