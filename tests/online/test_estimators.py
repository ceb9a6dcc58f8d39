"""Other learners: a regressor (rolling MAE), a River pipeline (learn_one), and snapshots held by the tolerance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tests.online.conftest import replay, stream

import shipyard
from shipyard.online import FeedbackEvent, Learner, OnlineSettings, OnlineStore


def test_a_regressor_learns_with_a_rolling_mae(home: object) -> None:
    service = shipyard.connect()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = X @ np.array([2.0, -1.0, 0.5]) + 1.0
    service.register(SGDRegressor(random_state=0).fit(X[:50], y[:50]), "price", X=X[:50], y=y[:50], online=True)
    store = OnlineStore(service)
    store.append("price", [FeedbackEvent(r, t) for r, t in zip(X.tolist(), y.tolist(), strict=True)])
    learner = Learner(service, "price", OnlineSettings(batch=50, snapshot_every=200, window=100))
    assert learner.step() == 600
    status = store.status("price")
    assert status.metric_name == "mae" and status.metric is not None and status.metric < 0.2
    assert status.committed_offset == 600
    learner.release()


def test_a_river_pipeline_learns_one_event_at_a_time(home: object) -> None:
    from river import linear_model, preprocessing

    service = shipyard.connect()
    X, y = stream(400)
    frame = pd.DataFrame(X, columns=["a", "b"])
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, target in zip(frame.to_dict("records")[:50], y[:50], strict=True):
        model.learn_one(row, bool(target))
    service.register(model, "river-online", X=frame[:50], y=y[:50].astype(bool), online=True)
    store = OnlineStore(service)
    store.append("river-online", [FeedbackEvent(r, bool(t)) for r, t in
                                  zip(frame.to_dict("records"), y.tolist(), strict=True)])
    learner = Learner(service, "river-online", OnlineSettings(batch=50, snapshot_every=400))
    assert learner.step() == 400
    status = store.status("river-online")
    assert (status.committed_offset, status.last_snapshot_version) == (400, 2)
    assert status.metric is not None and status.metric > 0.8
    served = service.load("river-online@production")
    assert served.version == 2
    assert (served.predict(frame[50:]) == y[50:].astype(bool)).mean() > 0.9
    learner.release()


def test_a_snapshot_worse_than_the_served_one_is_held(home: object) -> None:
    """A learner that chases label noise with a huge step size scores worse than the served model on the same
    events: its snapshots are registered but production stays where it is."""
    service = shipyard.connect()
    X, y = stream(2600)
    noisy = np.where(np.random.default_rng(3).random(600) < 0.3, 1 - y[2000:], y[2000:])
    model = SGDClassifier(learning_rate="constant", eta0=50.0, random_state=0, max_iter=5, tol=None)
    service.register(model.fit(X[:2000], y[:2000]), "held", X=X[:100], y=y[:100], online=True)
    store = OnlineStore(service)
    store.append("held", [FeedbackEvent(r, t) for r, t in zip(X[2000:].tolist(), noisy.tolist(), strict=True)])
    learner = Learner(service, "held", OnlineSettings(batch=10, snapshot_every=200, window=200, tolerance=0.01))
    assert [learner.step(max_events=200) for _ in range(3)] == [200, 200, 200]
    snapshots = [v for v in service.list_versions("held") if v.tags.get("online")]
    assert len(snapshots) == 3
    assert service.resolve("held@production").version == 1
    status = store.status("held")
    assert (status.promoted_version, status.last_snapshot_version) == (1, 4)
    learner.release()


def test_a_pipeline_that_picks_columns_by_name_learns_from_frames(home: object) -> None:
    """A ColumnTransformer selects columns by name, so the learner keeps giving it frames (not float arrays);
    the result still equals a replay with a frame per block."""
    service = shipyard.connect()
    X, y = stream(700)
    frame = pd.DataFrame(X, columns=["a", "b"])
    pick = ColumnTransformer([("scale", StandardScaler(), ["b", "a"])])
    base = make_pipeline(pick, SGDClassifier(random_state=0)).fit(frame[:100], y[:100])
    with pytest.warns(UserWarning, match="columntransformer"):
        service.register(base, "picked", X=frame[:100], y=y[:100], online=True)
    store = OnlineStore(service)
    store.append("picked", [FeedbackEvent(r, int(t)) for r, t in
                            zip(frame[100:].to_dict("records"), y[100:].tolist(), strict=True)])
    learner = Learner(service, "picked", OnlineSettings(batch=100, snapshot_every=600))
    assert learner.step() == 600
    replayed = replay(base, frame[100:], y[100:], 100)
    clf, expected = learner.model.steps[-1][1], replayed.steps[-1][1]
    np.testing.assert_allclose(np.r_[clf.coef_.ravel(), clf.intercept_],
                               np.r_[expected.coef_.ravel(), expected.intercept_], rtol=0, atol=1e-9)
    served = service.load("picked@production")
    assert served.version == 2
    np.testing.assert_array_equal(np.asarray(served.predict(frame)).ravel(), replayed.predict(frame))
    learner.release()
