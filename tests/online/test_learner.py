"""The learner in-process: equal to a replay, progressive accuracy through a drift, guardrails, pause/reset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tests.online.conftest import coefficients, replay, stream

import shipyard
from shipyard.online import FeedbackEvent, Learner, OnlineSettings, OnlineStore


def _base(X: np.ndarray, y: np.ndarray) -> object:
    return make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(X, y)


def _feed(store: OnlineStore, name: str, X: np.ndarray | pd.DataFrame, y: np.ndarray) -> None:
    rows = X.to_dict("records") if isinstance(X, pd.DataFrame) else X.tolist()
    for start in range(0, len(y), 500):
        store.append(name, [FeedbackEvent(row, label) for row, label in
                            zip(rows[start:start + 500], y[start:start + 500].tolist(), strict=True)])


def _named(X: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(X, columns=["amount", "hour"])


@pytest.mark.parametrize("named", [False, True], ids=["array", "named-columns"])
def test_learner_equals_an_in_process_replay_and_chains_its_snapshots(
    service: shipyard.ModelService, named: bool
) -> None:
    """With named columns the learner learns from float arrays and the replay from a frame per block."""
    X0, y0 = stream(200, seed=0)
    if named:
        X0 = _named(X0)
    base = _base(X0, y0)
    service.register(base, "fraud-online", X=X0, y=y0, online=True)
    store = OnlineStore(service)
    X, y = stream(1000)
    if named:
        X = _named(X)
    _feed(store, "fraud-online", X, y)
    learner = Learner(service, "fraud-online", OnlineSettings(snapshot_every=300, batch=100))
    applied = [learner.step(max_events=300) for _ in range(4)]
    assert applied == [300, 300, 300, 100]
    learner.snapshot()
    replayed = replay(base, X, y, 100)
    expected = coefficients(replayed)
    np.testing.assert_allclose(coefficients(learner.model), expected, rtol=0, atol=1e-9)
    served = service.load("fraud-online@production")
    np.testing.assert_allclose(coefficients(served.raw), expected, rtol=0, atol=1e-9)
    snapshots = sorted((v for v in service.list_versions("fraud-online") if v.tags.get("online")),
                       key=lambda v: v.version)
    assert [v.lineage["online"]["offset"] for v in snapshots] == [300, 600, 900, 1000]
    assert [v.parent_version for v in snapshots] == [1, 2, 3, 4]
    status = store.status("fraud-online")
    assert (status.committed_offset, status.pending, status.last_snapshot_version) == (1000, 0, 5)
    assert status.metric is not None and status.metric > 0.8
    if named:  # every snapshot keeps its column names and serves frames (a warning would fail the test)
        for mv in snapshots:
            model = service.load(f"fraud-online:{mv.version}").raw
            assert model.feature_names_in_.tolist() == ["amount", "hour"]
        np.testing.assert_array_equal(np.asarray(served.predict(X)).ravel(), replayed.predict(X))
    learner.release()


@pytest.mark.parametrize("named", [False, True], ids=["array", "named-columns"])
def test_progressive_accuracy_recovers_after_drift_and_the_floor_rolls_back(
    service: shipyard.ModelService, named: bool
) -> None:
    X0, y0 = stream(200, seed=0)
    base = _base(_named(X0) if named else X0, y0)
    service.register(base, "drift", X=_named(X0) if named else X0, y=y0, online=True)
    store = OnlineStore(service)
    X, y = stream(3000, drift_at=1500)
    _feed(store, "drift", _named(X) if named else X, y)
    settings = OnlineSettings(snapshot_every=500, batch=50, window=200, floor=0.8)
    learner = Learner(service, "drift", settings)
    seen: list[float] = []
    while learner.step(max_events=100):
        seen.append(learner.metric.value or 0.0)
    assert min(seen[:14]) > 0.85  # before the drift (first 1400 events)
    assert min(seen[15:18]) < 0.8  # right after it, below the floor
    assert seen[-1] > 0.85  # learnt the new concept
    frozen = (base.predict(_named(X[1500:]) if named else X[1500:]) == y[1500:]).mean()
    assert frozen < 0.2
    (alert,) = [a for a in store.alerts("drift") if a.kind == "rollback"]
    assert (alert.from_version, alert.to_version) == (4, 3)  # back to the snapshot before the drop began
    history = [(m.action, m.to_version) for m in service.alias_history("drift", "production")]
    assert ("online-guard", 3) in history
    assert service.resolve("drift@production").version > 4  # a recovered snapshot was promoted again
    learner.release()


def test_pause_resume_and_reset(service: shipyard.ModelService) -> None:
    X0, y0 = stream(200, seed=0)
    service.register(_base(X0, y0), "ops", X=X0, y=y0, online=True)
    store = OnlineStore(service)
    X, y = stream(400)
    _feed(store, "ops", X[:200], y[:200])
    learner = Learner(service, "ops", OnlineSettings(snapshot_every=100, batch=100))
    store.pause("ops")
    assert learner.step() == 0 and store.status("ops").paused
    store.resume("ops")
    assert learner.step() == 200
    assert service.resolve("ops@production").version == 2
    store.reset("ops")
    status = store.status("ops")
    assert (status.promoted_version, status.committed_offset, status.pending) == (1, 200, 0)
    assert service.resolve("ops@production").version == 1
    _feed(store, "ops", X[200:], y[200:])
    assert learner.step() == 200  # reloads the base, learns only what came after the reset
    mv = service.resolve("ops@production")
    assert (mv.parent_version, mv.lineage["online"]["from_offset"]) == (1, 200)
    assert [a.kind for a in store.alerts("ops")] == ["reset"]
    learner.release()


def test_only_the_lease_holder_learns(service: shipyard.ModelService) -> None:
    X0, y0 = stream(200, seed=0)
    service.register(_base(X0, y0), "pair", X=X0, y=y0, online=True)
    store = OnlineStore(service)
    X, y = stream(200)
    _feed(store, "pair", X, y)
    first = Learner(service, "pair", OnlineSettings(batch=100, lease_seconds=30), holder="first")
    second = Learner(service, "pair", OnlineSettings(batch=100, lease_seconds=30), holder="second")
    assert first.step() == 200
    assert second.step() == 0
    assert store.status("pair").lease_holder == "first"
    first.release()
    assert second.step() == 200  # the first never snapshotted: the second replays from the committed offset
    assert second.applied == 200 and store.status("pair").lease_holder == "second"
    second.release()


@pytest.mark.parametrize("bad", [0, -1])
def test_settings_are_checked(bad: int) -> None:
    with pytest.raises(shipyard.errors.InvalidInput, match="batch"):
        OnlineSettings(batch=bad)
