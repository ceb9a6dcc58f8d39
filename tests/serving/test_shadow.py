"""Shadow deployments in a real server: logged with the primary's request id, never returned, never in the way."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tests.serving.conftest import Server, fraud_frame, fraud_pipeline
from tests.serving.rollout_helpers import (
    ROW,
    SLOW_TYPE,
    metric,
    predict,
    register_slow,
    register_versions,
    slow_module,
    wait_revision,
    wait_until,
)

import shipyard
from shipyard.monitoring.logs import PredictionLog
from shipyard.rollouts import DeploymentSpec, Variant

CONFIG = "monitoring:\n  enabled: false\nlogging:\n  flush_interval_s: 0.2\n"


def _config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "serve.yaml"
    path.write_text(CONFIG + extra)
    return str(path)


def test_shadow_predictions_are_logged_with_the_primary_request_id_and_never_returned(
    home: Path, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    X = register_versions("same", "flipped")
    server = start_server("fraud", "--config", _config(tmp_path))
    state = shipyard.connect().deploy("fraud", DeploymentSpec(kind="shadow", shadow=2))
    assert state.spec is not None and state.spec["variants"] == [{"version": 1, "weight": 100.0}]
    wait_revision(server, state.revision)
    X, y = fraud_frame()
    primary, shadow = fraud_pipeline(X, y), fraud_pipeline(X, (1 - y).rename("is_fraud"))
    rows = X.iloc[:30]
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows.to_dict("records")]

    for number, record in enumerate(records):
        answer = predict(server.client, record, headers={"x-request-id": f"req-{number}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["version"] == 1 and answer.headers["x-shipyard-version"] == "1"  # never the shadow
        assert body["predictions"] == primary.predict(rows.iloc[[number]]).tolist()

    log = PredictionLog(home / "logs")
    wait_until(lambda: (log.predictions("fraud", inputs=False)["route"] == "shadow").sum() >= 30, 15.0, "shadow rows")
    frame = log.predictions("fraud", inputs=False).set_index("request_id")
    shadows = frame[frame["route"] == "shadow"].loc[[f"req-{n}" for n in range(30)]]
    primaries = frame[frame["route"] == "native"].loc[[f"req-{n}" for n in range(30)]]
    assert (shadows["version"] == 2).all() and (primaries["version"] == 1).all()
    assert shadows["prediction"].tolist() == shadow.predict(rows).tolist()  # the shadow's own answers
    assert primaries["prediction"].tolist() == primary.predict(rows).tolist()
    assert (shadows["prediction"] != primaries["prediction"]).all()  # flipped labels: every answer differs
    assert len(log.predictions("fraud", inputs=False, shadow=False)) == 30  # what callers got
    assert metric(server, "shipyard_shadow_dropped_total", model="fraud") in (None, 0.0)


def _p99(latencies: list[float]) -> float:
    return float(np.percentile(np.asarray(latencies), 99))


def _timed(server: Server, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        answer = predict(server.client)
        seconds.append(time.perf_counter() - started)
        assert answer.status_code == 200 and answer.json()["version"] == 1, answer.text
    return seconds


def test_a_shadow_that_sleeps_one_second_does_not_change_primary_latency(
    home: Path, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    register_versions("same")
    folder = slow_module(tmp_path / "modules", 1.0)
    X, y = fraud_frame()
    slow = register_slow(X, y)
    env = {"PYTHONPATH": str(folder), "SHIPYARD_TRUSTED_TYPES": SLOW_TYPE}
    server = start_server("fraud", "--config", _config(tmp_path, "shadow_queue_size: 4\n"), env=env)
    service = shipyard.connect()
    service.deploy("fraud", DeploymentSpec(kind="pin", variants=(Variant(1, 100),)))
    _timed(server, 50)  # warm
    baseline = _timed(server, 400)
    state = service.deploy("fraud", DeploymentSpec(kind="shadow", shadow=slow))
    wait_revision(server, state.revision, timeout=10.0)  # loading the shadow calls it (3 s of warm-up)
    shadowed = _timed(server, 400)

    base, with_shadow = _p99(baseline), _p99(shadowed)
    # a shadow in the request path would add 1 s to every request; the bound leaves room for a busy machine
    assert with_shadow < max(2 * base, base + 0.025), (base, with_shadow)
    assert max(shadowed) < 0.5, max(shadowed)
    dropped = metric(server, "shipyard_shadow_dropped_total", model="fraud")
    assert dropped is not None and dropped > 300, dropped  # 400 copies, a queue of 4, one call a second
    log = PredictionLog(home / "logs")
    wait_until(lambda: (log.predictions("fraud", inputs=False)["route"] == "shadow").any(), 10.0, "a shadow row")
    frame = log.predictions("fraud", inputs=False)
    assert (frame.loc[frame["route"] == "shadow", "version"] == slow).all()
    print(f"primary p99 {base * 1000:.1f} ms without the shadow, {with_shadow * 1000:.1f} ms with it; drops {dropped}")


def test_shadow_sample_copies_about_that_share(home: Path, tmp_path: Path, start_server: Callable[..., Server]) -> None:
    register_versions("same", "same")
    server = start_server("fraud", "--config", _config(tmp_path))
    state = shipyard.connect().deploy("fraud", DeploymentSpec(kind="shadow", shadow=2, sample=0.25))
    wait_revision(server, state.revision)
    for number in range(400):
        assert predict(server.client, ROW, headers={"x-request-id": f"r{number}"}).status_code == 200
    log = PredictionLog(home / "logs")
    wait_until(lambda: len(log.predictions("fraud", inputs=False, shadow=False)) >= 400, 10.0, "primary rows")
    time.sleep(0.5)
    frame = log.predictions("fraud", inputs=False)
    shadows = frame[frame["route"] == "shadow"]
    assert 60 <= len(shadows) <= 140, len(shadows)  # 25% of 400, give or take
    assert set(shadows["request_id"]) <= set(frame.loc[frame["route"] == "native", "request_id"])
    assert isinstance(frame, pd.DataFrame)
