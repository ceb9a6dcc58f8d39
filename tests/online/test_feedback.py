"""The feedback log: registration with online=True, validation, joining labels to predictions, offsets."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import shipyard
from shipyard.errors import InvalidInput, NotOnline, SchemaError, UnknownRequestIds
from shipyard.online import FeedbackEvent, OnlineStore
from shipyard.training.errors import NotIncremental


def _frame(n: int = 50, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"amount": rng.normal(size=n), "hour": rng.normal(size=n)})
    return X, (X["amount"] > 0).astype(int).to_numpy()


def _register(service: shipyard.ModelService, name: str = "fraud-online", *, missing_allowed: bool = False) -> None:
    X, y = _frame()
    model = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(X, y)
    declared = X.copy()
    if missing_allowed:  # the signature lets every column be missing (the model was fitted without)
        declared.iloc[0] = np.nan
    service.register(model, name, X=declared, y=y, online=True)


def test_online_registration_points_production_at_the_base(service: shipyard.ModelService) -> None:
    _register(service)
    store = OnlineStore(service)
    assert store.is_online("fraud-online")
    assert service.resolve("fraud-online@production").version == 1
    status = store.status("fraud-online")
    assert (status.base_version, status.last_offset, status.pending, status.metric_name) == (1, 0, 0, "accuracy")
    assert not status.paused and status.alerts == 0


def test_an_estimator_that_cannot_learn_online_is_refused_by_name(service: shipyard.ModelService) -> None:
    X, y = _frame()
    with pytest.raises(NotIncremental, match="RandomForestClassifier"):
        service.register(RandomForestClassifier(n_estimators=2).fit(X, y), "forest", X=X, y=y, online=True)
    assert service.list_models() == []


def test_frozen_pipeline_steps_are_named_at_registration(service: shipyard.ModelService) -> None:
    X, y = _frame()
    model = make_pipeline(StandardScaler(), PCA(1), SGDClassifier(random_state=0)).fit(X, y)
    with pytest.warns(UserWarning, match="frozen as fitted: pca"):
        service.register(model, "pca-online", X=X, y=y, online=True)
    assert OnlineStore(service).status("pca-online").frozen_steps == ("pca",)


def test_append_validates_labels_and_rows_and_writes_nothing_on_error(service: shipyard.ModelService) -> None:
    _register(service)
    store = OnlineStore(service)
    good = {"amount": 1.0, "hour": 2.0}
    with pytest.raises(InvalidInput, match=r"event 1 has label 3.*classes are 0, 1"):
        store.append("fraud-online", [FeedbackEvent(good, 1), FeedbackEvent(good, 3)])
    with pytest.raises(InvalidInput, match="event 0 has label '1'"):
        store.append("fraud-online", [FeedbackEvent(good, "1")])
    with pytest.raises(SchemaError, match="missing column 'hour'"):
        store.append("fraud-online", [FeedbackEvent({"amount": 1.0}, 1)])
    with pytest.raises(SchemaError, match="amount"):
        store.append("fraud-online", [FeedbackEvent({"amount": "lots", "hour": 1.0}, 1)])
    assert store.status("fraud-online").last_offset == 0
    assert store.append("fraud-online", [FeedbackEvent(good, np.int64(1))] * 3) == (1, 3)
    assert store.append("fraud-online", [FeedbackEvent(good, 0)]) == (4, 4)
    assert [(o, y) for o, _, y in store.events("fraud-online", 2, 10)] == [(3, 1), (4, 0)]


def test_regressor_labels_must_be_finite_numbers(service: shipyard.ModelService) -> None:
    X, y = _frame()
    service.register(SGDRegressor(random_state=0).fit(X, y.astype(float)), "price", X=X, y=y.astype(float),
                     online=True)
    store = OnlineStore(service)
    with pytest.raises(InvalidInput, match="finite number"):
        store.append("price", [FeedbackEvent({"amount": 1.0, "hour": 2.0}, float("nan"))])
    assert store.append("price", [FeedbackEvent({"amount": 1.0, "hour": 2.0}, 2.5)]) == (1, 1)


def test_labels_join_recorded_predictions_and_unknown_ids_are_named(service: shipyard.ModelService) -> None:
    _register(service)
    store = OnlineStore(service)
    store.record_predictions("fraud-online", 1, [("a", {"amount": 1.0, "hour": 0.0}),
                                                  ("b", {"amount": -1.0, "hour": 0.5})])
    store.record_predictions("fraud-online", 1, [("a", {"amount": 9.0, "hour": 9.0})])  # first row kept
    events = store.join("fraud-online", [("b", 0), ("a", 1)])
    assert events == [FeedbackEvent({"amount": -1.0, "hour": 0.5}, 0, "b"),
                      FeedbackEvent({"amount": 1.0, "hour": 0.0}, 1, "a")]
    with pytest.raises(UnknownRequestIds, match="'nope', 'gone'") as info:
        store.join("fraud-online", [("a", 1), ("nope", 0), ("gone", 1)])
    assert info.value.status == 404
    assert store.append("fraud-online", events) == (1, 2)


def test_a_model_without_online_learning_is_not_online(service: shipyard.ModelService) -> None:
    X, y = _frame()
    service.register(SGDClassifier(random_state=0).fit(X, y), "plain", X=X, y=y)
    store = OnlineStore(service)
    assert not store.is_online("plain")
    with pytest.raises(NotOnline, match="online=True"):
        store.append("plain", [FeedbackEvent({"amount": 1.0, "hour": 2.0}, 1)])


def test_concurrent_appends_get_distinct_gap_free_offsets(service: shipyard.ModelService) -> None:
    _register(service)
    store = OnlineStore(service)
    ranges: list[tuple[int, int]] = []

    def write() -> None:
        for _ in range(5):
            ranges.append(store.append("fraud-online", [FeedbackEvent({"amount": 1.0, "hour": 2.0}, 1)] * 4))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    covered = sorted(o for first, last in ranges for o in range(first, last + 1))
    assert covered == list(range(1, 81))
    assert [o for o, _, _ in store.events("fraud-online", 0, 1000)] == covered


def test_events_round_trip_exactly_and_the_learner_sees_what_validation_gives(
    service: shipyard.ModelService,
) -> None:
    from shipyard.online.learner import _numeric_frame
    from shipyard.signature import Signature

    _register(service, "roundtrip", missing_allowed=True)
    _register(service, "strict")
    store = OnlineStore(service)
    with pytest.raises(SchemaError, match="column 'amount' row 0 is missing; the model was trained without"):
        store.append("strict", [FeedbackEvent({"amount": None, "hour": 1.0}, 0)])
    rows: list[dict[str, float]] = [
        {"amount": 0.1, "hour": 3}, {"hour": -2.5, "amount": 1e-300}, {"amount": 7, "hour": 1.0},
    ]
    weird: list[dict[str, object]] = [{"amount": np.float32(0.5), "hour": np.int64(2)}]
    if service.store.dialect == "sqlite":  # PostgreSQL's json refuses NaN and Infinity
        weird += [{"amount": float("inf"), "hour": 1.0}, {"amount": float("nan"), "hour": None}]
    events = [FeedbackEvent(r, i % 2) for i, r in enumerate(rows + weird)]
    assert store.append("roundtrip", events) == (1, len(events))
    got = store.events("roundtrip", 0, 10)
    assert [o for o, _, _ in got] == list(range(1, len(events) + 1))
    assert [y for _, _, y in got] == [i % 2 for i in range(len(events))]
    assert [f for _, f, _ in got[:3]] == rows
    assert got[3][1] == {"amount": 0.5, "hour": 2}
    if len(got) > 4:
        assert got[4][1]["amount"] == float("inf") and np.isnan(got[5][1]["amount"]) and got[5][1]["hour"] is None
    with pytest.raises(SchemaError):
        store.append("roundtrip", [FeedbackEvent({"amount": 1.0, "hour": True}, 0)])
    with pytest.raises(SchemaError):
        store.append("roundtrip", [FeedbackEvent({"amount": 1.0, "hour": 2.0, "x": 1}, 0)])
    signature = Signature.from_dict(service.resolve("roundtrip@production").signature)
    for block in (rows, [list(r.values()) for r in rows[:1]] + [[1, 2]]):
        frame = _numeric_frame(signature, block)
        assert frame is not None
        pd.testing.assert_frame_equal(frame, signature.validate(block))
    assert _numeric_frame(signature, [{"amount": None, "hour": 1.0}]) is None
