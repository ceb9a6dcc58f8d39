"""Drift: how far live values have moved from a version's reference profile, feature by feature.

Each feature (and the prediction and each class probability) gets the population stability index (PSI) over the
reference bins and a test: Kolmogorov-Smirnov for continuous numbers (one-sample, against the reference CDF
interpolated from the profile's 101 percentiles), chi-squared for categories and for numbers with point masses
(over the reference categories plus "other", or the reference bins). The verdict combines both:

- fewer than ``min_samples`` live values: ``insufficient``;
- PSI >= ``psi_alert``: ``alert``;
- PSI >= ``psi_warn``: ``alert`` if p < ``p_value`` else ``warn``;
- otherwise ``warn`` if p < ``p_value`` else ``ok``.

The reference is itself a sample (the profile's ``rows``), so p-values are those of the two-sample tests: the KS
p-value uses the effective size ``n * m / (n + m)`` as ``scipy.stats.ks_2samp`` does, and the chi-squared counts
are weighted by ``m / (n + m)``. Without this a large live window would flag the sampling noise of the
reference itself.

>>> import numpy as np, pandas as pd
>>> from shipyard.evaluation.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile(pd.DataFrame({"x": rng.normal(size=5000)}))
>>> feature_drift("x", profile["features"]["x"], rng.normal(size=1000)).verdict
'ok'
>>> feature_drift("x", profile["features"]["x"], rng.normal(1.0, size=1000)).verdict
'alert'
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.evaluation.profile import is_categorical
from shipyard.evaluation.thresholds import DEFAULT_THRESHOLDS, DriftThresholds

__all__ = [
    "DriftThresholds",
    "FeatureDrift",
    "drift_report",
    "drift_sentence",
    "drift_threshold",
    "feature_drift",
    "format_psi",
    "psi",
    "verdict",
]

PSI_EPSILON = 1e-4
OTHER = "other"


PSI_DIGITS = 3
"""Every surface shows a PSI rounded to this many decimals (:func:`format_psi`)."""


def format_psi(value: float | None) -> str:
    """A PSI as every surface shows it.

    >>> format_psi(0.12449), format_psi(None)
    ('0.124', '-')
    """
    return "-" if value is None else f"{value:.{PSI_DIGITS}f}"


def drift_threshold(drift: FeatureDrift, thresholds: DriftThresholds) -> float:
    """The PSI threshold behind a verdict: ``psi_alert`` when the PSI reached it, else ``psi_warn`` (an alert
    there needs a significant test too)."""
    if drift.psi is not None and drift.psi >= thresholds.psi_alert:
        return thresholds.psi_alert
    return thresholds.psi_warn


def drift_sentence(drift: FeatureDrift, thresholds: DriftThresholds) -> str:
    """Why a feature's verdict is what it is, in one line, the same on every surface.

    >>> d = FeatureDrift("channel", "categorical", 800, 0.1245, "chi2", 30.0, 0.001, 0.0, "alert", [], [], [])
    >>> print(drift_sentence(d, DriftThresholds()))
    channel: alert: PSI 0.124 >= warn threshold 0.1 and chi2 p-value 0.001 < 0.05 (alert at PSI 0.2 alone), 800 values
    """
    p_value = "-" if drift.p_value is None else f"{drift.p_value:.3g}"
    psi_text = format_psi(drift.psi)
    head = f"{drift.feature}: {drift.verdict}: "
    if drift.verdict == "insufficient":
        return f"{head}{drift.samples} values, fewer than {thresholds.min_samples}"
    significant = drift.p_value is not None and drift.p_value < thresholds.p_value
    test = f"{drift.test} p-value {p_value} {'<' if significant else '>='} {thresholds.p_value:g}"
    if drift.psi is not None and drift.psi >= thresholds.psi_alert:
        why = f"PSI {psi_text} >= alert threshold {thresholds.psi_alert:g}, {test}"
    elif drift.psi is not None and drift.psi >= thresholds.psi_warn:
        why = (
            f"PSI {psi_text} >= warn threshold {thresholds.psi_warn:g} and {test} "
            f"(alert at PSI {thresholds.psi_alert:g} alone)"
        )
    else:
        why = f"PSI {psi_text} < warn threshold {thresholds.psi_warn:g}, {test}"
    return f"{head}{why}, {drift.samples} values"


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature, the prediction (``"prediction"``) or a class probability (``"proba:<class>"``)."""

    feature: str
    kind: str
    samples: int
    psi: float | None
    test: str
    statistic: float | None
    p_value: float | None
    missing_rate: float
    verdict: str
    bins: list[str]
    reference: list[float]
    live: list[float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        return asdict(self)


def psi(reference: np.ndarray, live: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two distributions over the same bins (fractions; empty bins count ``epsilon``).

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])), 4)
    0.8789
    """
    ref = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    cur = np.maximum(np.asarray(live, dtype=np.float64), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def verdict(psi_value: float | None, p_value: float | None, samples: int, thresholds: DriftThresholds) -> str:
    """The verdict for a PSI and a p-value (``None``: not computed) over ``samples`` live values.

    >>> verdict(0.15, 0.01, 500, DriftThresholds()), verdict(0.15, 0.5, 500, DriftThresholds())
    ('alert', 'warn')
    """
    if samples < thresholds.min_samples:
        return "insufficient"
    significant = p_value is not None and p_value < thresholds.p_value
    if psi_value is not None and psi_value >= thresholds.psi_alert:
        return "alert"
    if psi_value is not None and psi_value >= thresholds.psi_warn:
        return "alert" if significant else "warn"
    return "warn" if significant else "ok"


def feature_drift(
    name: str,
    entry: dict[str, Any],
    live: pd.Series | np.ndarray | Sequence[Any],
    thresholds: DriftThresholds = DEFAULT_THRESHOLDS,
) -> FeatureDrift:
    """Compare the live values of one feature with its profile ``entry``."""
    series = (
        live
        if isinstance(live, pd.Series)
        else pd.Series(np.asarray(live, dtype=object) if not isinstance(live, np.ndarray) else live)
    )
    if is_categorical(entry):
        return _categorical_drift(name, entry, series, thresholds)
    if entry.get("kind") != "numeric":
        raise InvalidInput(
            f"profile entry of {name!r} has unknown kind {entry.get('kind')!r}; expected a profile "
            "built by shipyard.evaluation.profile.build_profile"
        )
    return _numeric_drift(name, entry, series, thresholds)


def drift_report(
    profile: dict[str, Any], live: pd.DataFrame, thresholds: DriftThresholds = DEFAULT_THRESHOLDS
) -> list[FeatureDrift]:
    """Drift of every profiled feature present in ``live``, then of ``prediction`` and ``probabilities``.

    ``live`` has one column per input feature, a ``prediction`` column and optionally a ``probabilities`` column
    (a list of floats per row, in the order of ``profile["probabilities"]``). Missing columns are skipped.
    """
    results: list[FeatureDrift] = []
    for name, entry in profile.get("features", {}).items():
        if name in live.columns:
            results.append(feature_drift(name, entry, live[name], thresholds))
    if "prediction" in profile and "prediction" in live.columns:
        results.append(feature_drift("prediction", profile["prediction"], live["prediction"], thresholds))
    classes = list(profile.get("probabilities", {}))
    if classes and "probabilities" in live.columns:
        matrix = _probability_matrix(live["probabilities"], len(classes))
        for i, label in enumerate(classes):
            entry = profile["probabilities"][label]
            results.append(feature_drift(f"proba:{label}", entry, matrix[:, i], thresholds))
    return results


def _numeric_drift(name: str, entry: dict[str, Any], live: pd.Series, thresholds: DriftThresholds) -> FeatureDrift:

    if pd.api.types.is_numeric_dtype(live.dtype) and not pd.api.types.is_bool_dtype(live.dtype):
        data = live.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        data = pd.to_numeric(live, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = data[np.isfinite(data)]
    total = len(data)
    missing_rate = float((total - len(values)) / total) if total else 0.0
    edges = np.asarray(entry.get("edges", []), dtype=np.float64)
    counts = np.asarray(entry.get("counts", []), dtype=np.float64)
    discrete = bool(entry.get("discrete", False))
    test = "chi2" if discrete else "ks"
    labels = _interval_labels(edges)
    if len(edges) < 2 or counts.sum() == 0:
        return FeatureDrift(
            name, "numeric", len(values), None, test, None, None, missing_rate, "insufficient", labels, [], []
        )
    reference_rows = int(counts.sum())
    reference = counts / counts.sum()
    quantiles = np.asarray(entry.get("quantiles", []), dtype=np.float64)
    grid = _Grid(values, edges[1:-1] if discrete else np.concatenate([edges[1:-1], quantiles]))
    live_counts = np.diff(np.concatenate([[0], grid.below(edges[1:-1]), [len(values)]])).astype(np.float64)
    current = live_counts / len(values) if len(values) else np.zeros_like(live_counts)
    psi_value: float | None = None
    statistic: float | None = None
    p: float | None = None
    if len(values) >= thresholds.min_samples:
        psi_value = psi(reference, current)
        if discrete:
            statistic, p = _chi_squared(live_counts, reference, reference_rows)
        else:
            statistic, p = _kolmogorov_smirnov(grid, quantiles, reference_rows)
    return FeatureDrift(
        feature=name,
        kind="numeric",
        samples=len(values),
        psi=psi_value,
        test=test,
        statistic=statistic,
        p_value=p,
        missing_rate=missing_rate,
        verdict=verdict(psi_value, p, len(values), thresholds),
        bins=labels,
        reference=[float(r) for r in reference],
        live=[float(c) for c in current],
    )


def _categorical_drift(name: str, entry: dict[str, Any], live: pd.Series, thresholds: DriftThresholds) -> FeatureDrift:
    frequencies: dict[str, float] = dict(entry.get("frequencies", {}))
    keys = list(frequencies)
    position = {key: i for i, key in enumerate(keys)}
    live_counts = np.zeros(len(keys) + 1, dtype=np.float64)
    observed = live.value_counts(dropna=True)
    for value, count in observed.items():
        live_counts[_position(position, value, len(keys))] += int(count)
    samples = int(live_counts.sum())
    total = len(live)
    missing_rate = float((total - samples) / total) if total else 0.0
    reference = np.array([*frequencies.values(), float(entry.get("other", 0.0))], dtype=np.float64)
    reference_rows = int(entry["count"]) if entry.get("count") else None
    if reference.sum() > 0:
        reference = reference / reference.sum()
    current = live_counts / samples if samples else np.zeros_like(live_counts)
    psi_value: float | None = None
    statistic: float | None = None
    p: float | None = None
    if samples >= thresholds.min_samples and reference.sum() > 0:
        psi_value = psi(reference, current)
        statistic, p = _chi_squared(live_counts, reference, reference_rows)
    return FeatureDrift(
        feature=name,
        kind="categorical",
        samples=samples,
        psi=psi_value,
        test="chi2",
        statistic=statistic,
        p_value=p,
        missing_rate=missing_rate,
        verdict=verdict(psi_value, p, samples, thresholds),
        bins=[*keys, OTHER],
        reference=[float(r) for r in reference],
        live=[float(c) for c in current],
    )


class _Grid:
    """Live values counted against a few fixed points in one pass (one binary search per value, no sort)."""

    def __init__(self, values: np.ndarray, points: np.ndarray) -> None:
        self.points = np.unique(points)
        self.n = len(values)
        index = np.searchsorted(self.points, values, side="right")  # how many points are <= each value
        self._below = np.cumsum(np.bincount(index, minlength=len(self.points) + 1))  # [j]: values < points[j]
        hit = index > 0
        hit[hit] = values[hit] == self.points[index[hit] - 1]
        self._equal = np.bincount(index[hit] - 1, minlength=len(self.points))  # [j]: values == points[j]

    def below(self, points: np.ndarray) -> np.ndarray:
        """How many values are < each of ``points`` (which must be among the grid's points)."""
        return np.asarray(self._below[np.searchsorted(self.points, points)])

    def at_most(self, points: np.ndarray) -> np.ndarray:
        """How many values are <= each of ``points`` (which must be among the grid's points)."""
        position = np.searchsorted(self.points, points)
        return np.asarray(self._below[position] + self._equal[position])


def _kolmogorov_smirnov(grid: _Grid, quantiles: np.ndarray, reference_rows: int) -> tuple[float, float]:
    """One-sample KS of live values against the reference CDF, known at its 101 percentiles.

    The reference CDF is exact only at the percentiles (``F(q_k) = k / 100``); between them, and above all in
    the tail percentiles that span the training extremes, any interpolation is off by up to a few thousandths,
    which a window of a million rows would flag as drift. So the statistic is the largest distance between the
    live empirical CDF and ``k / 100`` over the percentiles (both one-sided limits), and the p-value is
    ``scipy.stats.kstwo`` at the effective two-sample size, as ``scipy.stats.ks_2samp`` uses.
    """
    from scipy import stats

    levels = np.linspace(0.0, 1.0, len(quantiles))
    before = grid.below(quantiles) / grid.n
    at = grid.at_most(quantiles) / grid.n
    statistic = float(max(np.max(np.abs(at - levels)), np.max(np.abs(before - levels))))
    size = grid.n * reference_rows / (grid.n + reference_rows)
    return statistic, float(stats.kstwo.sf(statistic, max(1, round(size))))


def _position(position: dict[str, int], value: Any, other: int) -> int:
    """The reference bin of a live value: by ``str(value)``, else as the other numeric type (a label logged as
    ``1.0`` matches the training label ``1`` and the other way round), else "other"."""
    key = str(value)
    if key in position:
        return position[key]
    if isinstance(value, (bool, np.bool_)):
        return other
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return position.get(str(int(value)), other)
    if isinstance(value, (int, np.integer)):
        return position.get(str(float(value)), other)
    return other


def _chi_squared(live_counts: np.ndarray, reference: np.ndarray, reference_rows: int | None) -> tuple[float, float]:
    """Chi-squared of live counts against reference fractions, weighted as the two-sample test of homogeneity."""
    from scipy import stats

    n = float(live_counts.sum())
    expected_share = np.maximum(reference, PSI_EPSILON)
    expected_share = expected_share / expected_share.sum()
    weight = 1.0 if reference_rows is None else reference_rows / (n + reference_rows)
    if len(live_counts) < 2:
        return 0.0, 1.0
    result = stats.chisquare(live_counts * weight, expected_share * n * weight)
    return float(result.statistic), float(result.pvalue)


def _interval_labels(edges: np.ndarray) -> list[str]:
    if len(edges) < 2:
        return []
    inner = [f"{e:.4g}" for e in edges[1:-1]]
    bounds = ["-inf", *inner, "+inf"]
    return [f"[{low}, {high})" for low, high in itertools.pairwise(bounds)]


def _probability_matrix(column: pd.Series, width: int) -> np.ndarray:
    """Rows x classes from a column of lists (``None``: a row without probabilities, all NaN)."""
    import pyarrow as pa

    array = pa.array(column.to_numpy(dtype=object), from_pandas=True)
    if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
        raise InvalidInput(f"the probabilities column must hold lists of floats, got {array.type}")
    matrix = np.full((len(column), width), np.nan)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    lengths = array.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    good = valid & (lengths == width)
    if good.any():
        flat = array.filter(pa.array(good)).flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        matrix[good] = flat.reshape(-1, width)
    return matrix
