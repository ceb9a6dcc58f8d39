"""Reference profiles against independent numpy and pandas computations on the same data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import InvalidInput
from shipyard.evaluation.profile import build_profile


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = 5_000
    amount = rng.lognormal(3.0, 1.0, rows)
    amount[rng.uniform(size=rows) < 0.1] = np.nan
    country = rng.choice(["FR", "DE", "IT", "ES", "PT"], size=rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]).astype(object)
    country[:50] = None
    return pd.DataFrame(
        {
            "amount": amount,
            "items": rng.integers(1, 4, rows),
            "country": country,
            "weekend": rng.uniform(size=rows) < 0.3,
        }
    )


def test_numeric_entry_matches_numpy(frame: pd.DataFrame) -> None:
    profile = build_profile(frame)
    entry = profile["features"]["amount"]
    values = frame["amount"].dropna().to_numpy()
    assert profile["format"] == 1 and profile["rows"] == len(frame)
    assert entry["kind"] == "numeric"
    assert entry["mean"] == pytest.approx(np.mean(values))
    assert entry["std"] == pytest.approx(np.std(values))
    assert (entry["min"], entry["max"]) == (values.min(), values.max())
    assert entry["missing_rate"] == pytest.approx(frame["amount"].isna().mean())
    assert entry["quantiles"] == pytest.approx(np.percentile(values, np.arange(101)).tolist())
    expected_edges = np.percentile(values, np.arange(0, 101, 10))
    assert entry["edges"] == pytest.approx(expected_edges.tolist())
    counts, _ = np.histogram(values, bins=expected_edges)  # numpy's last bin includes the maximum, as ours
    assert entry["counts"] == counts.tolist()
    assert sum(entry["counts"]) == len(values)
    assert "discrete" not in entry


def test_few_distinct_numbers_get_one_bin_each(frame: pd.DataFrame) -> None:
    entry = build_profile(frame)["features"]["items"]
    assert entry["discrete"] is True
    assert entry["edges"] == [1.0, 1.5, 2.5, 3.0]
    assert entry["counts"] == [int((frame["items"] == v).sum()) for v in (1, 2, 3)]


def test_categorical_and_bool_entries_match_pandas(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, top_k=3)
    country = profile["features"]["country"]
    shares = frame["country"].value_counts(normalize=True)
    assert country["kind"] == "categorical"
    assert list(country["frequencies"]) == list(shares.index[:3])
    assert country["frequencies"] == pytest.approx(shares.iloc[:3].to_dict())
    assert country["other"] == pytest.approx(shares.iloc[3:].sum())
    assert country["missing_rate"] == pytest.approx(50 / len(frame))
    weekend = profile["features"]["weekend"]
    assert weekend["kind"] == "categorical"
    assert weekend["frequencies"] == pytest.approx(
        {str(k): v for k, v in frame["weekend"].value_counts(normalize=True).items()}
    )


def test_predictions_and_probabilities_are_profiled() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2_000, 3))
    p1 = 1 / (1 + np.exp(-X[:, 0]))
    proba = np.column_stack([1 - p1, p1])
    labels = (p1 > 0.5).astype(np.int64)
    profile = build_profile(X, predictions=labels, probabilities=proba, classes=[0, 1], feature_names=["a", "b", "c"])
    assert list(profile["features"]) == ["a", "b", "c"]
    assert profile["prediction"]["kind"] == "categorical"
    assert profile["prediction"]["frequencies"]["1"] == pytest.approx(labels.mean())
    assert list(profile["probabilities"]) == ["0", "1"]
    assert profile["probabilities"]["1"]["mean"] == pytest.approx(p1.mean())
    regression = build_profile(X, predictions=X[:, 1] * 2.0)
    assert regression["prediction"]["kind"] == "numeric"
    assert regression["prediction"]["mean"] == pytest.approx(np.mean(X[:, 1] * 2.0))
    assert list(build_profile(X)["features"]) == ["f0", "f1", "f2"]


def test_profile_is_json_safe_even_for_empty_and_constant_columns() -> None:
    frame = pd.DataFrame({"empty": [np.nan] * 4, "constant": [2.0] * 4, "text": [None] * 4})
    profile = build_profile(frame)
    assert json.loads(json.dumps(profile, allow_nan=False)) == profile
    assert profile["features"]["empty"]["missing_rate"] == 1.0
    assert profile["features"]["constant"]["edges"] == [2.0, 2.0]
    assert profile["features"]["constant"]["counts"] == [4]


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="2 feature names given for an array with 3 columns"):
        build_profile(np.zeros((4, 3)), feature_names=["a", "b"])
    with pytest.raises(InvalidInput, match="3 classes given for probabilities with 2 columns"):
        build_profile(np.zeros((4, 1)), probabilities=np.zeros((4, 2)), classes=[0, 1, 2])
    with pytest.raises(InvalidInput, match="bins and top_k must be at least 1"):
        build_profile(np.zeros((4, 1)), bins=0)
