"""The live monitor in process: sliding windows, drift gauges and once-per-crossing webhook alerts.

Everything is real: the reference profile is built from training rows, the windows are Arrow tables shaped
like the prediction logger's, the gauges are the server's Prometheus metrics and the webhook is a local
HTTP server (``webhook`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.monitoring.conftest import Webhook

from shipyard.evaluation.drift import DriftThresholds, drift_report
from shipyard.evaluation.profile import build_profile
from shipyard.monitoring.live import LiveMonitor, SlidingWindow, live_frame
from shipyard.monitoring.webhook import Crossings
from shipyard.serving.metrics import ServerMetrics

MODEL = "fraud"
WINDOW = 1000


def training(n: int, seed: int, *, shift: float = 0.0, kiosk: float = 0.0) -> pd.DataFrame:
    """Rows of the training distribution; ``shift`` moves amount's mean (in stds), ``kiosk`` adds a new channel."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(["web", "pos", "app"], n, p=[0.5, 0.3, 0.2]).astype(object)
    channel[rng.random(n) < kiosk] = "kiosk"
    return pd.DataFrame({"amount": rng.normal(100.0 + 20.0 * shift, 20.0, n), "channel": channel})


def predict(X: pd.DataFrame) -> np.ndarray:
    """A stand-in model whose predictions depend on the channel only (so only the input drifts with amount)."""
    return (X["channel"] == "web").astype(np.int64).to_numpy()


def logged(X: pd.DataFrame, version: int = 1) -> pa.Table:
    """The table the prediction logger hands its listeners for these rows."""
    n = len(X)
    inputs = pa.StructArray.from_arrays(
        [pa.array(X["amount"].to_numpy()), pa.array(X["channel"].tolist())], names=["amount", "channel"]
    )
    return pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
            "model": [MODEL] * n,
            "version": pa.array([version] * n, pa.int32()),
            "route": ["native"] * n,
            "latency_ms": [1.0] * n,
            "input": inputs,
            "prediction": pa.array(predict(X)),
            "probabilities": pa.nulls(n, pa.list_(pa.float64())),
        }
    )


@pytest.fixture
def profile() -> dict[str, Any]:
    X = training(5000, seed=0)
    return build_profile(X, predictions=predict(X).astype(str))


def feed(monitor: LiveMonitor, X: pd.DataFrame, pieces: int = 5) -> None:
    for part in np.array_split(np.arange(len(X)), pieces):
        monitor.listen(MODEL, 1, logged(X.iloc[part]))


def make_monitor(profile: dict[str, Any], metrics: ServerMetrics, url: str | None) -> LiveMonitor:
    return LiveMonitor(
        lambda model, version: profile if (model, version) == (MODEL, 1) else None,
        window_rows=WINDOW,
        webhook_url=url,
        gauges=metrics,
    )


def gauge(metrics: ServerMetrics, name: str, feature: str) -> float | None:
    value = metrics.registry.get_sample_value(name, {"model": MODEL, "version": "1", "feature": feature})
    return None if value is None else float(value)


def test_crossings_fire_on_the_way_over_and_rearm_once_back_under() -> None:
    crossings = Crossings()
    states = [False, True, True, True, None, True, False, False, True, None, False, True]
    fired = [crossings.update("amount", over) for over in states]
    assert fired == [False, True, False, False, False, False, False, False, True, False, False, True]
    assert crossings.update("other", True)  # keys are independent
    crossings.forget("other")  # an undelivered alert fires again on the next window over
    assert crossings.update("other", True)


def test_sliding_window_keeps_the_last_rows() -> None:
    window = SlidingWindow(250)
    for start in range(0, 1000, 100):
        window.append(logged(training(100, seed=start)).set_column(0, "request_id", pa.array(
            [str(i) for i in range(start, start + 100)])))
    table = window.table()
    assert table is not None and table.num_rows == 250
    assert table.column("request_id").to_pylist() == [str(i) for i in range(750, 1000)]
    assert window.appended == 1000


def test_a_shifted_feature_alerts_once_per_crossing(profile: dict[str, Any], webhook: Webhook) -> None:
    metrics = ServerMetrics()
    monitor = make_monitor(profile, metrics, webhook.url)
    shifted = training(WINDOW, seed=1, shift=1.0)
    feed(monitor, shifted)
    alerts = monitor.check()
    assert [(a.kind, a.feature) for a in alerts] == [("drift", "amount")]
    posts = webhook.wait_for(1)
    assert len(posts) == 1
    post = posts[0]
    drift = drift_report(profile, live_frame(logged(shifted)), DriftThresholds())
    expected_psi = next(float(d.psi or 0.0) for d in drift if d.feature == "amount")
    assert post["model"] == MODEL and post["version"] == 1 and post["feature"] == "amount"
    assert post["verdict"] == "alert" and post["threshold"] == 0.2
    assert post["value"] == pytest.approx(expected_psi) and expected_psi >= 0.2
    assert datetime.fromisoformat(post["at"]).tzinfo is not None
    assert gauge(metrics, "shipyard_feature_drift_psi", "amount") == pytest.approx(expected_psi)
    assert gauge(metrics, "shipyard_feature_drift_alert", "amount") == 1.0
    assert gauge(metrics, "shipyard_feature_drift_alert", "channel") == 0.0
    assert b'shipyard_feature_drift_psi{feature="amount",model="fraud",version="1"}' in metrics.render()

    feed(monitor, training(WINDOW, seed=2, shift=1.0))  # the next window: still over, no second post
    assert monitor.check() == []
    assert monitor.check() == []  # nothing new: nothing recomputed
    feed(monitor, training(WINDOW, seed=3))  # back to the training distribution: re-armed
    assert monitor.check() == []
    assert gauge(metrics, "shipyard_feature_drift_alert", "amount") == 0.0
    assert len(webhook.posts) == 1
    feed(monitor, training(WINDOW, seed=4, shift=1.0))  # a new crossing: a new post
    assert [a.feature for a in monitor.check()] == ["amount"]
    assert len(webhook.wait_for(2)) == 2


def test_twenty_windows_of_the_training_distribution_raise_no_alert(
    profile: dict[str, Any], webhook: Webhook
) -> None:
    metrics = ServerMetrics()
    monitor = make_monitor(profile, metrics, webhook.url)
    for window in range(20):
        feed(monitor, training(WINDOW, seed=100 + window))
        assert monitor.check() == [], [d for d in monitor.status[(MODEL, 1)].drift if d.verdict == "alert"]
        assert gauge(metrics, "shipyard_feature_drift_alert", "amount") == 0.0
    assert webhook.posts == []
    assert monitor.status[(MODEL, 1)].rows == WINDOW


def test_a_new_dominant_category_alerts(profile: dict[str, Any], webhook: Webhook) -> None:
    monitor = make_monitor(profile, ServerMetrics(), webhook.url)
    feed(monitor, training(WINDOW, seed=5, kiosk=0.6))
    features = {a.feature for a in monitor.check()}
    assert "channel" in features and "amount" not in features
    assert {p["feature"] for p in webhook.wait_for(len(features))} == features


def test_an_undelivered_alert_is_posted_with_the_next_window(profile: dict[str, Any], webhook: Webhook) -> None:
    monitor = make_monitor(profile, ServerMetrics(), webhook.url)
    webhook.status = 500
    feed(monitor, training(WINDOW, seed=6, shift=1.0))
    assert [a.feature for a in monitor.check()] == ["amount"]
    assert webhook.posts == []
    webhook.status = 200
    feed(monitor, training(WINDOW, seed=7, shift=1.0))
    assert [a.feature for a in monitor.check()] == ["amount"]
    assert [p["feature"] for p in webhook.wait_for(1)] == ["amount"]


def test_versions_without_a_profile_are_skipped(profile: dict[str, Any]) -> None:
    metrics = ServerMetrics()
    monitor = make_monitor(profile, metrics, None)
    monitor.listen(MODEL, 2, logged(training(WINDOW, seed=8, shift=3.0), version=2))
    assert monitor.check() == []
    assert (MODEL, 2) not in monitor.status


def test_the_thread_checks_every_interval(profile: dict[str, Any], webhook: Webhook) -> None:
    monitor = LiveMonitor(lambda m, v: profile, interval_s=0.1, window_rows=WINDOW, webhook_url=webhook.url)
    monitor.start()
    try:
        feed(monitor, training(WINDOW, seed=9, shift=1.0))
        assert [p["feature"] for p in webhook.wait_for(1, timeout=10)] == ["amount"]
    finally:
        monitor.stop()
    assert len(webhook.posts) == 1


def test_workers_share_crossings(tmp_path: Any) -> None:
    from shipyard.monitoring.webhook import SharedCrossings

    first, second = SharedCrossings(tmp_path / "crossings"), SharedCrossings(tmp_path / "crossings")
    key = ("drift", MODEL, 1, "amount")
    assert first.update(key, True) and not second.update(key, True)  # one of them posts
    assert not first.update(key, True) and second.is_over(key)
    assert not second.update(key, None) and first.is_over(key)  # too few values: no change
    assert not second.update(key, False) and not first.is_over(key)  # re-armed for both
    assert second.update(key, True) and not first.update(key, True)
    second.forget(key)  # its post failed: the next window over posts again
    assert first.update(key, True)
    first.clear()
    assert not second.is_over(key)


def test_live_accuracy_gauges_and_an_alert_below_the_floor(
    profile: dict[str, Any], webhook: Webhook, tmp_path: Any
) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.predlog import PredictionLogger
    from shipyard.serving.settings import LogSettings

    logger = PredictionLogger(LogSettings(flush_interval_s=0.05), home=tmp_path)
    metrics = ServerMetrics()
    monitor = LiveMonitor(
        lambda m, v: profile, window_rows=WINDOW, webhook_url=webhook.url, gauges=metrics,
        log=PredictionLog(logger.root), accuracy_alert_below=0.8,
    )
    logger.add_listener(monitor.listen)  # as the server wires it
    logger.start()
    X = training(400, seed=10)
    predicted = predict(X)
    rng = np.random.default_rng(10)
    truth = np.where(rng.random(len(X)) < 0.7, predicted, 1 - predicted)  # about 70% right: under the floor
    for i in range(len(X)):
        logger.record(MODEL, 1, "native", f"q{i}", [X.iloc[i].to_dict()], list(X.columns), predicted[i : i + 1], None,
                      0.001)
    logger.close()
    labelled = [i for i in range(len(X)) if i % 4]
    feedback = PredictionLogger(LogSettings(), home=tmp_path)  # the feedback route's writer
    feedback.record_labels(MODEL, [(f"q{i}", int(truth[i])) for i in labelled])
    feedback.close()

    alerts = monitor.check()
    expected = accuracy_score(truth[labelled], predicted[labelled])
    assert [(a.kind, a.metric) for a in alerts] == [("accuracy", "accuracy")]
    assert alerts[0].value == pytest.approx(expected) and alerts[0].threshold == 0.8
    [post] = webhook.wait_for(1)
    assert post["metric"] == "accuracy" and post["value"] == pytest.approx(expected) and "feature" not in post
    labels = {"model": MODEL, "version": "1"}
    value = metrics.registry.get_sample_value("shipyard_live_accuracy", {**labels, "metric": "accuracy"})
    assert value == pytest.approx(expected)
    f1 = metrics.registry.get_sample_value("shipyard_live_accuracy", {**labels, "metric": "f1"})
    assert f1 == pytest.approx(f1_score(truth[labelled], predicted[labelled]))
    assert metrics.registry.get_sample_value("shipyard_live_accuracy", {**labels, "metric": "n"}) == len(labelled)
    assert monitor.check() == []  # still under the floor: no second alert
    assert len(webhook.posts) == 1
