"""Live accuracy equals scikit-learn's metrics on the same rows, per version and per time bucket."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from shipyard.errors import InvalidInput
from shipyard.evaluation.accuracy import classification_metrics, live_accuracy, regression_metrics

START = pd.Timestamp("2026-11-01T00:00:00Z")


def _joined_binary(rng: np.random.Generator, rows: int = 3_000) -> pd.DataFrame:
    p1 = rng.uniform(size=rows)
    label = (rng.uniform(size=rows) < p1).astype(np.int64)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(rows)],
            "version": rng.choice([3, 4], size=rows),
            "ts": START + pd.to_timedelta(rng.uniform(0, 3 * 3600, rows), unit="s"),
            "prediction": (p1 > 0.5).astype(np.int64),
            "probabilities": [[1.0 - p, p] for p in p1],
            "label": label,
        }
    )


def _sklearn_binary(rows: pd.DataFrame) -> dict[str, float]:
    proba = np.array(rows["probabilities"].tolist())
    y, pred = rows["label"].to_numpy(), rows["prediction"].to_numpy()
    return {
        "accuracy": metrics.accuracy_score(y, pred),
        "precision": metrics.precision_score(y, pred),
        "recall": metrics.recall_score(y, pred),
        "f1": metrics.f1_score(y, pred),
        "roc_auc": metrics.roc_auc_score(y, proba[:, 1]),
    }


def _assert_metrics(ours: dict[str, Any], expected: dict[str, float], n: int) -> None:
    assert ours["n"] == n
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-12), name


def test_binary_metrics_per_version_equal_sklearn() -> None:
    joined = _joined_binary(np.random.default_rng(0))
    results = live_accuracy(joined, task="classification", classes=[0, 1])
    assert [r["version"] for r in results] == [3, 4]
    for result in results:
        rows = joined[joined["version"] == result["version"]]
        assert result["window_start"] is None
        _assert_metrics(result, _sklearn_binary(rows), len(rows))


def test_binary_metrics_per_hour_equal_sklearn() -> None:
    joined = _joined_binary(np.random.default_rng(1))
    results = live_accuracy(joined, task="classification", classes=[0, 1], every="1h")
    assert len(results) == 6  # two versions x three hours
    hours = joined["ts"].dt.floor("1h")
    for result in results:
        start = pd.Timestamp(result["window_start"])
        rows = joined[(joined["version"] == result["version"]) & (hours == start)]
        _assert_metrics(result, _sklearn_binary(rows), len(rows))
    assert sum(r["n"] for r in results) == len(joined)


def test_multiclass_metrics_are_macro_averages_equal_to_sklearn() -> None:
    rng = np.random.default_rng(2)
    classes = ["cat", "dog", "eel"]
    scores = rng.dirichlet([1.0, 1.0, 1.0], size=900)
    truth = np.array([rng.choice(classes, p=s) for s in scores])
    pred = np.array(classes)[scores.argmax(axis=1)]
    ours = classification_metrics(truth, pred, scores, classes)
    expected = {
        "accuracy": metrics.accuracy_score(truth, pred),
        "precision": metrics.precision_score(truth, pred, average="macro"),
        "recall": metrics.recall_score(truth, pred, average="macro"),
        "f1": metrics.f1_score(truth, pred, average="macro"),
        "roc_auc": metrics.roc_auc_score(truth, scores, multi_class="ovr", labels=classes),
    }
    _assert_metrics(ours, expected, 900)


def test_string_labels_match_numeric_predictions_and_roc_auc_needs_both_classes() -> None:
    ours = classification_metrics(["1", "0", "1", "1"], np.array([1, 0, 0, 1]), classes=[0, 1])
    assert ours["accuracy"] == 0.75 and ours["recall"] == pytest.approx(2 / 3)
    one_class = classification_metrics([1, 1, 1], [1, 0, 1], np.array([[0.1, 0.9], [0.6, 0.4], [0.2, 0.8]]), [0, 1])
    assert "roc_auc" not in one_class
    assert one_class["precision"] == 1.0


def test_regression_metrics_per_version_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    rows = 2_000
    label = rng.normal(10.0, 3.0, rows)
    joined = pd.DataFrame(
        {
            "version": rng.choice([1, 2, 5], size=rows),
            "ts": START + pd.to_timedelta(rng.uniform(0, 1800, rows), unit="s"),
            "prediction": label + rng.normal(0.0, 1.0, rows),
            "label": label,
        }
    )
    results = live_accuracy(joined, task="regression", every="10min")
    assert len(results) == 9
    for result in results:
        start = pd.Timestamp(result["window_start"])
        rows_in = joined[(joined["version"] == result["version"]) & (joined["ts"].dt.floor("10min") == start)]
        expected = {
            "mae": metrics.mean_absolute_error(rows_in["label"], rows_in["prediction"]),
            "rmse": float(np.sqrt(metrics.mean_squared_error(rows_in["label"], rows_in["prediction"]))),
        }
        _assert_metrics(result, expected, len(rows_in))
    assert regression_metrics([], []) == {"n": 0}


def test_bad_input_is_refused_with_a_clear_error() -> None:
    joined = _joined_binary(np.random.default_rng(4), 10)
    with pytest.raises(InvalidInput, match="unknown task 'ranking'"):
        live_accuracy(joined, task="ranking")
    with pytest.raises(InvalidInput, match="lacks the column"):
        live_accuracy(joined.drop(columns=["label"]), task="classification")
    with pytest.raises(InvalidInput, match="invalid time bucket 'soon'"):
        live_accuracy(joined, task="classification", every="soon")
    with pytest.raises(InvalidInput, match="must be numbers"):
        regression_metrics(["a"], [1.0])
    with pytest.raises(InvalidInput, match="one label per prediction"):
        classification_metrics([1, 0], [1])
    assert live_accuracy(joined.iloc[:0], task="classification") == []
