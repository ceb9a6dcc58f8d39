"""Drift at the statistics level: known shifts are flagged, unshifted windows are not, numbers match scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from shipyard.errors import InvalidInput
from shipyard.evaluation.drift import DriftThresholds, FeatureDrift, drift_report, feature_drift, psi
from shipyard.evaluation.profile import build_profile

TRAIN_ROWS = 20_000
FEATURES = [f"x{i}" for i in range(10)]


def _training_distribution(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """Ten numeric features of different shapes: normal, skewed, bounded, heavy-tailed, integer-valued."""
    return pd.DataFrame(
        {
            "x0": rng.normal(0.0, 1.0, rows),
            "x1": rng.normal(50.0, 10.0, rows),
            "x2": rng.lognormal(0.0, 1.0, rows),
            "x3": rng.uniform(-1.0, 1.0, rows),
            "x4": rng.exponential(2.0, rows),
            "x5": rng.standard_t(3, rows),
            "x6": rng.gamma(2.0, 1.0, rows),
            "x7": rng.poisson(3.0, rows).astype(np.float64),
            "x8": rng.beta(2.0, 5.0, rows),
            "x9": rng.integers(0, 5, rows).astype(np.float64),
        }
    )


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return _training_distribution(np.random.default_rng(1234), TRAIN_ROWS)


@pytest.fixture(scope="module")
def profile(training: pd.DataFrame) -> dict[str, object]:
    return build_profile(training)


@pytest.mark.parametrize("feature", ["x0", "x1", "x2", "x5", "x7"])
def test_a_feature_shifted_by_one_std_is_an_alert_within_1000_rows(
    training: pd.DataFrame, profile: dict[str, object], feature: str
) -> None:
    live = _training_distribution(np.random.default_rng(7), 1_000)
    live[feature] = live[feature] + training[feature].std()
    report = {d.feature: d for d in drift_report(profile, live)}  # type: ignore[arg-type]
    assert report[feature].verdict == "alert", report[feature]
    assert report[feature].samples == 1_000


def test_twenty_unshifted_windows_of_1000_rows_raise_no_alert(profile: dict[str, object]) -> None:
    verdicts = []
    for seed in range(20):
        live = _training_distribution(np.random.default_rng(seed), 1_000)
        report = drift_report(profile, live)  # type: ignore[arg-type]
        assert [d.feature for d in report] == FEATURES
        verdicts.extend((seed, d.feature, d.verdict) for d in report)
    alerts = [v for v in verdicts if v[2] == "alert"]
    assert alerts == []
    # a p < 0.05 test warns about 5% of the time by design: 200 tests, so far fewer than 30 warnings
    assert sum(v[2] == "warn" for v in verdicts) < 30


def _categorical_profile(rng: np.random.Generator) -> dict[str, object]:
    country = rng.choice(["FR", "DE", "IT", "ES"], size=10_000, p=[0.4, 0.3, 0.2, 0.1])
    return build_profile(pd.DataFrame({"country": country}))


def test_a_new_dominant_category_is_an_alert() -> None:
    rng = np.random.default_rng(3)
    profile = _categorical_profile(rng)
    live = pd.Series(rng.choice(["US", "FR", "DE"], size=1_000, p=[0.6, 0.2, 0.2]))
    drift = feature_drift("country", profile["features"]["country"], live)  # type: ignore[index]
    assert drift.kind == "categorical" and drift.test == "chi2"
    assert drift.verdict == "alert"
    assert drift.bins == ["FR", "DE", "IT", "ES", "other"]
    assert drift.live[-1] == pytest.approx(np.mean(live == "US"))


def test_an_unchanged_categorical_feature_is_ok() -> None:
    rng = np.random.default_rng(4)
    profile = _categorical_profile(rng)
    live = rng.choice(["FR", "DE", "IT", "ES"], size=2_000, p=[0.4, 0.3, 0.2, 0.1])
    drift = feature_drift("country", profile["features"]["country"], live)  # type: ignore[index]
    assert drift.verdict == "ok", drift


def test_too_few_rows_are_insufficient(profile: dict[str, object]) -> None:
    live = _training_distribution(np.random.default_rng(5), 99)
    live["x0"] += 10.0  # a huge shift, but too few rows to say anything
    report = drift_report(profile, live)  # type: ignore[arg-type]
    assert {d.verdict for d in report} == {"insufficient"}
    assert all(d.psi is None and d.p_value is None for d in report)
    lowered = drift_report(profile, live, DriftThresholds(min_samples=50))  # type: ignore[arg-type]
    assert next(d for d in lowered if d.feature == "x0").verdict == "alert"


def test_missing_live_values_are_counted_apart(profile: dict[str, object]) -> None:
    live = _training_distribution(np.random.default_rng(6), 1_000)
    live.loc[:249, "x0"] = np.nan
    drift = next(d for d in drift_report(profile, live) if d.feature == "x0")  # type: ignore[arg-type]
    assert drift.samples == 750 and drift.missing_rate == 0.25
    assert sum(drift.live) == pytest.approx(1.0)


def _psi_by_hand(reference: list[float], live: list[float]) -> float:
    total = 0.0
    for r, lv in zip(reference, live, strict=True):
        r, lv = (r or 1e-4), (lv or 1e-4)
        total += (lv - r) * math.log(lv / r)
    return total


def test_psi_matches_a_straightforward_computation_on_a_small_example() -> None:
    train = pd.DataFrame({"v": [float(i) for i in range(1, 11)] * 10})  # ten values, 10% each
    profile = build_profile(train, bins=10)
    live = pd.Series([1.0] * 50 + [2.0] * 30 + [3.0] * 20 + [42.0] * 20 + [-7.0] * 10)
    drift = feature_drift("v", profile["features"]["v"], live)  # type: ignore[index]
    # one bin per training value; -7 falls in the first (open) bin, 42 in the last
    by_value = {v: float(np.mean(live.clip(1.0, 10.0) == v)) for v in range(1, 11)}
    expected_live = [by_value[v] for v in range(1, 11)]
    assert drift.reference == pytest.approx([0.1] * 10)
    assert drift.live == pytest.approx(expected_live)
    assert drift.psi == pytest.approx(_psi_by_hand([0.1] * 10, expected_live))
    assert psi(np.array([0.25, 0.75, 0.0]), np.array([0.5, 0.25, 0.25])) == pytest.approx(
        _psi_by_hand([0.25, 0.75, 0.0], [0.5, 0.25, 0.25])
    )


def test_ks_p_value_agrees_with_ks_2samp_on_large_samples() -> None:
    rng = np.random.default_rng(11)
    train = rng.normal(0.0, 1.0, 100_000)
    profile = build_profile(pd.DataFrame({"x": train}))
    entry = profile["features"]["x"]
    for shift, live_rows in [(0.03, 20_000), (0.05, 20_000), (0.1, 5_000)]:
        live = rng.normal(shift, 1.0, live_rows)
        ours = feature_drift("x", entry, live)
        theirs = stats.ks_2samp(train, live, method="asymp")
        assert ours.test == "ks"
        assert ours.statistic == pytest.approx(theirs.statistic, abs=0.003)
        assert ours.p_value is not None
        assert abs(math.log10(ours.p_value) - math.log10(theirs.pvalue)) < 1.0, (shift, ours.p_value, theirs.pvalue)


def test_a_million_unshifted_rows_are_not_flagged() -> None:
    rng = np.random.default_rng(12)
    profile = build_profile(pd.DataFrame({"x": rng.normal(size=100_000), "y": rng.lognormal(size=100_000)}))
    live = pd.DataFrame({"x": rng.normal(size=1_000_000), "y": rng.lognormal(size=1_000_000)})
    report = drift_report(profile, live)  # type: ignore[arg-type]
    assert [d.verdict for d in report] != ["alert", "alert"]
    assert all(d.verdict != "alert" for d in report)


def test_prediction_and_probability_drift() -> None:
    rng = np.random.default_rng(13)
    X = pd.DataFrame({"x": rng.normal(size=5_000)})
    p1 = 1.0 / (1.0 + np.exp(-X["x"].to_numpy()))
    proba = np.column_stack([1.0 - p1, p1])
    labels = np.where(p1 > 0.5, "yes", "no")
    profile = build_profile(X, predictions=labels, probabilities=proba, classes=["no", "yes"])
    live_x = rng.normal(1.0, 1.0, 2_000)
    live_p1 = 1.0 / (1.0 + np.exp(-live_x))
    live = pd.DataFrame(
        {
            "x": live_x,
            "prediction": np.where(live_p1 > 0.5, "yes", "no"),
            "probabilities": [[1.0 - p, p] for p in live_p1],
        }
    )
    report = {d.feature: d for d in drift_report(profile, live)}
    assert list(report) == ["x", "prediction", "proba:no", "proba:yes"]
    assert report["prediction"].kind == "categorical"
    assert all(d.verdict == "alert" for d in report.values())
    no_proba = drift_report(profile, live.drop(columns=["probabilities", "x"]))
    assert [d.feature for d in no_proba] == ["prediction"]


def test_to_dict_is_json_safe_and_complete(profile: dict[str, object]) -> None:
    import json

    live = _training_distribution(np.random.default_rng(8), 500)
    drift = drift_report(profile, live)[0]  # type: ignore[arg-type]
    data = json.loads(json.dumps(drift.to_dict()))
    assert FeatureDrift(**data) == drift


def test_an_entry_of_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown kind"):
        feature_drift("x", {"kind": "text"}, [1.0, 2.0])


def test_labels_logged_as_floats_match_integer_training_labels() -> None:
    rng = np.random.default_rng(14)
    labels = rng.integers(0, 3, 5_000)
    entry = build_profile(pd.DataFrame({"x": labels.astype(str)}))["features"]["x"]
    entry_int = build_profile(np.zeros((5_000, 1)), predictions=labels, classes=[0, 1, 2])["prediction"]
    live = rng.integers(0, 3, 1_000)
    as_float = feature_drift("prediction", entry_int, live.astype(np.float64))
    assert as_float.verdict == "ok" and as_float.live[-1] == 0.0  # nothing fell into "other"
    assert feature_drift("x", entry, live).live[-1] == 0.0
    floats = build_profile(np.zeros((5_000, 1)), predictions=labels.astype(np.float64), classes=[0.0, 1.0, 2.0])
    assert feature_drift("prediction", floats["prediction"], live).live[-1] == 0.0
