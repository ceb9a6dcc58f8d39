"""Drift, live accuracy, latency and resources through a real ``shipyard serve`` with its prediction log on.

The known-drift scenarios of the issue: a feature shifted by one standard deviation is flagged within 1,000
logged predictions (``shipyard monitor`` exits 1, the gauge is in /metrics, the webhook gets one post and no
second one on the next window); 20 windows of the training distribution raise nothing; a new dominant
category is flagged; live accuracy from feedback labels equals scikit-learn's metrics on the same rows.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from tests.cli.test_cli import run
from tests.monitoring.conftest import (
    INTERVAL_S,
    MODEL,
    WINDOW_ROWS,
    Monitored,
    Webhook,
    frame,
    pipeline,
    records,
    serve_config,
    truth,
)
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app
from shipyard.evaluation.drift import DriftThresholds
from shipyard.monitoring.monitor import monitor, timeseries


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        time.sleep(0.1)
    return value


def drift_of(report: dict[str, Any], feature: str) -> dict[str, Any]:
    return next(d for d in report["drift"] if d["feature"] == feature)


def test_a_shifted_feature_is_flagged_within_1000_predictions(monitored: Monitored, webhook: Webhook) -> None:
    monitored.send(frame(WINDOW_ROWS, seed=1, shift=1.0), rows=50)
    posts = wait_until(lambda: [p for p in webhook.posts if p["feature"] == "amount"], what="a post for amount")
    assert len(posts) == 1
    assert posts[0]["model"] == MODEL and posts[0]["version"] == 1 and posts[0]["verdict"] == "alert"
    assert posts[0]["value"] >= posts[0]["threshold"] == 0.2

    monitored.wait_logged(WINDOW_ROWS)
    result = run(monitored.home, "monitor", MODEL, "--last", str(WINDOW_ROWS), "--json").failed(1)
    report = json.loads(result.out)
    assert report["rows"] == WINDOW_ROWS and report["version"] == 1
    amount = drift_of(report, "amount")
    assert amount["verdict"] == "alert" and amount["test"] == "ks" and amount["samples"] == WINDOW_ROWS
    assert any(a.startswith("amount:") for a in report["alerts"])
    assert drift_of(report, "channel")["verdict"] != "alert"
    # the server's window is the same 1,000 rows: the same PSI
    assert monitored.metric("shipyard_feature_drift_alert", model=MODEL, version="1", feature="amount") == 1.0
    psi = monitored.metric("shipyard_feature_drift_psi", model=MODEL, version="1", feature="amount")
    assert psi == pytest.approx(amount["psi"])

    first_posts = list(webhook.posts)
    assert len({p["feature"] for p in first_posts}) == len(first_posts)  # one post per crossing feature
    monitored.send(frame(WINDOW_ROWS, seed=2, shift=1.0), rows=50)  # the next window, still shifted
    wait_until(
        lambda: monitored.metric("shipyard_feature_drift_psi", model=MODEL, version="1", feature="amount") != psi,
        what="the next window's PSI",
    )
    time.sleep(3 * INTERVAL_S)
    assert webhook.posts == first_posts
    assert monitored.metric("shipyard_feature_drift_alert", model=MODEL, version="1", feature="amount") == 1.0


def test_twenty_windows_of_the_training_distribution_raise_no_alert(monitored: Monitored, webhook: Webhook) -> None:
    runner = CliRunner()
    for window in range(20):
        monitored.send(frame(WINDOW_ROWS, seed=100 + window), rows=250)
        monitored.wait_logged(WINDOW_ROWS * (window + 1))
        result = runner.invoke(app, ["monitor", MODEL, "--last", str(WINDOW_ROWS), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["rows"] == WINDOW_ROWS and report["alerts"] == []
        assert {d["verdict"] for d in report["drift"]} <= {"ok", "warn"}
    time.sleep(3 * INTERVAL_S)
    assert webhook.posts == []
    assert monitored.metric("shipyard_feature_drift_alert", model=MODEL, version="1", feature="amount") == 0.0


def test_a_new_dominant_category_is_flagged(monitored: Monitored, webhook: Webhook) -> None:
    monitored.send(frame(WINDOW_ROWS, seed=3, kiosk=0.6), rows=100)
    monitored.wait_logged(WINDOW_ROWS)
    result = run(monitored.home, "monitor", MODEL, "--window", "1h").failed(1)
    line = next(row for row in result.out.splitlines() if "channel" in row)
    assert "alert" in line and "chi2" in line
    assert "alert: channel:" in result.err
    wait_until(lambda: any(p["feature"] == "channel" for p in webhook.posts), what="a post for channel")
    assert not any(p["feature"] == "amount" for p in webhook.posts)


def test_live_accuracy_from_feedback_labels_equals_scikit_learn(monitored: Monitored) -> None:
    X = frame(600, seed=4)
    y = truth(X, seed=4)
    answers = monitored.send(X, rows=50, prefix="acc")
    predictions = np.concatenate([a["predictions"] for a in answers])
    probabilities = np.concatenate([a["probabilities"] for a in answers])
    assert answers[0]["classes"] == [0, 1]
    labelled = np.array([i % 6 != 0 for i in range(len(X))])  # some rows never get a label
    pairs = [
        {"request_id": f"acc-{i // 50}/{i % 50}", "label": int(y[i])} for i in range(len(X)) if labelled[i]
    ]
    answer = monitored.server.client.post(f"/v1/models/{MODEL}/feedback", json={"labels": pairs})
    assert answer.status_code == 202, answer.text
    monitored.wait_logged(len(X))

    y_true, y_pred, proba = y[labelled], predictions[labelled], probabilities[labelled, 1]
    expected = {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred),
        "recall": recall_score(y_true, y_pred),
        "f1": f1_score(y_true, y_pred),
        "roc_auc": roc_auc_score(y_true, proba),
    }
    report = monitor(shipyard.connect(), monitored.log(), MODEL, last=len(X), thresholds=DriftThresholds())
    [accuracy] = report.accuracy
    assert accuracy["version"] == 1 and accuracy["n"] == labelled.sum()
    for metric, value in expected.items():
        assert accuracy[metric] == pytest.approx(value, abs=1e-12), metric

    for metric, value in expected.items():  # the server's live monitor joins the same labels
        got = wait_until(
            lambda m=metric: monitored.metric("shipyard_live_accuracy", model=MODEL, version="1", metric=m),
            what=f"the live {metric} gauge",
        )
        assert got == pytest.approx(value, abs=1e-9), metric

    series = timeseries(monitored.log(), MODEL, every="1h")
    assert sum(r["count"] for r in series["traffic"]) == len(X)
    assert sum(r["n"] for r in series["accuracy"]) == labelled.sum()


def test_latency_and_resources_are_in_metrics_and_the_report(monitored: Monitored) -> None:
    X = frame(20, seed=5)
    client_ms = []
    for _ in range(30):
        started = time.perf_counter()
        monitored.send(X, rows=20)
        client_ms.append((time.perf_counter() - started) * 1000)
    labels = {"model": MODEL, "version": "1"}
    assert monitored.metric("shipyard_prediction_seconds_count", **labels) == 30
    total = monitored.metric("shipyard_prediction_seconds_sum", **labels)
    assert total is not None and 0 < total * 1000 <= sum(client_ms)
    assert monitored.metric("shipyard_prediction_seconds_bucket", **labels, le="+Inf") == 30

    process = psutil.Process(monitored.server.process.pid)  # one worker: uvicorn runs in the serve process
    pid = {"pid": str(process.pid)}
    cpu = monitored.metric("shipyard_process_cpu_seconds", **pid)
    rss = monitored.metric("shipyard_process_rss_bytes", **pid)
    times, actual_rss = process.cpu_times(), process.memory_info().rss
    assert cpu is not None and 0 < cpu <= times.user + times.system + 0.5
    assert rss is not None and 0.5 * actual_rss < rss < 2 * actual_rss
    memory = monitored.metric("shipyard_model_memory_bytes", **labels)
    assert memory is not None and 0 < memory < rss
    assert monitored.metric("shipyard_prediction_log_dropped_total") == 0

    monitored.wait_logged(600)
    report = monitor(shipyard.connect(), monitored.log(), MODEL, window=None, last=None)
    latency = report.latency[1]
    assert latency["count"] == 30 and report.traffic == {1: 600} and report.rows == 600
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= max(client_ms)
    series = timeseries(monitored.log(), MODEL, every="1min")
    assert sum(r["count"] for r in series["traffic"]) == 600
    assert all(0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in series["latency"])


def test_each_worker_reports_its_cpu_and_memory(
    monitored: Monitored, start_server: Any, tmp_path: Any
) -> None:
    server = start_server(MODEL, "--workers", "2", "--config", str(serve_config(tmp_path / "two.yaml")))
    parent = psutil.Process(server.process.pid)
    workers = wait_until(lambda: {str(p.pid) for p in parent.children()} if len(parent.children()) == 2 else None,
                         what="two workers")

    def reported() -> set[str] | None:
        text = server.client.get("/metrics").text
        pids = {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
                if line.startswith("shipyard_process_rss_bytes{")}
        return pids if pids == workers else None

    wait_until(reported, what=f"the resident memory of workers {sorted(workers)} in /metrics")
    server.stop()


def test_two_workers_post_a_crossing_once(
    monitored: Monitored, webhook: Webhook, start_server: Any, tmp_path: Any
) -> None:
    monitored.server.stop()
    server = start_server(MODEL, "--workers", "2", "--config", str(serve_config(tmp_path / "two.yaml", webhook.url)))
    shifted = frame(4 * WINDOW_ROWS, seed=20, shift=1.0)
    for start in range(0, len(shifted), 50):  # a new connection each time, so both workers get some
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = {"instances": records(shifted.iloc[start : start + 50])}
            assert client.post(f"/v1/models/{MODEL}/predict", json=body).status_code == 200
    wait_until(lambda: any(p["feature"] == "amount" for p in webhook.posts), what="a post for amount")
    time.sleep(4 * INTERVAL_S)
    features = [p["feature"] for p in webhook.posts]
    assert features.count("amount") == 1, features
    server.stop()


def test_rows_the_log_drops_are_counted_in_metrics(monitored: Monitored, start_server: Any, tmp_path: Any) -> None:
    import yaml

    monitored.server.stop()
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({"logging": {"buffer_rows": 30, "flush_interval_s": 5.0}}))
    server = start_server(MODEL, "--config", str(config))
    body = {"instances": records(frame(20, seed=30))}
    for _ in range(5):  # the first request fits the 30-row buffer, the next ones do not until a flush
        assert server.client.post(f"/v1/models/{MODEL}/predict", json=body).status_code == 200
    text = server.client.get("/metrics").text
    dropped = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("shipyard_prediction_log_drop")]
    assert dropped[:1] == [80.0], text
    server.stop()
    logged = len(monitored.log().predictions(MODEL))
    assert logged == 20  # written at shutdown: nothing lost but what was counted


def test_columns_hashed_in_the_log_are_not_checked_for_drift(
    home: Any, tmp_path: Any, webhook: Webhook, start_server: Any
) -> None:
    import yaml

    X = frame(4000, seed=0)
    shipyard.register(pipeline(X, truth(X, seed=0)), MODEL, X=X, y=truth(X, seed=0))
    shipyard.set_alias(MODEL, "production", 1)
    config = tmp_path / "serve.yaml"
    logging = {"flush_interval_s": 0.2, "sensitive": {MODEL: {"channel": "hash"}}}
    monitoring = {"interval_s": INTERVAL_S, "window_rows": WINDOW_ROWS, "webhook_url": webhook.url}
    config.write_text(yaml.safe_dump({"logging": logging, "monitoring": monitoring}))
    server = start_server(MODEL, "--config", str(config))
    monitored = Monitored(None, X, server, home)
    monitored.send(frame(WINDOW_ROWS, seed=5), rows=250)  # the training distribution: nothing drifts
    monitored.wait_logged(WINDOW_ROWS)
    logged = monitored.log().predictions(MODEL)["channel"]
    assert logged.str.fullmatch("[0-9a-f]{64}").all()  # hashed: no value can match the reference's categories

    result = run(home, "monitor", MODEL, "--last", str(WINDOW_ROWS), "--config", str(config), "--json").ok()
    report = json.loads(result.out)
    assert "channel" not in {d["feature"] for d in report["drift"]} and report["alerts"] == []
    assert drift_of(report, "amount")["verdict"] in ("ok", "warn")
    # without the deployment's config the hashed column would be compared, and would alert
    unaware = json.loads(run(home, "monitor", MODEL, "--last", str(WINDOW_ROWS), "--json").failed(1).out)
    assert drift_of(unaware, "channel")["verdict"] == "alert"

    wait_until(
        lambda: monitored.metric("shipyard_feature_drift_psi", model=MODEL, version="1", feature="amount") is not None,
        what="the server's drift gauges",
    )
    assert monitored.metric("shipyard_feature_drift_psi", model=MODEL, version="1", feature="channel") is None
    time.sleep(3 * INTERVAL_S)
    assert webhook.posts == []
