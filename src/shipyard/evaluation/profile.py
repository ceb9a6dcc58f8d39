"""Reference profiles: what a model version saw in training, stored with the version to compare live data against.

A profile is JSON-safe. Per numeric feature it keeps quantile bin edges and the training rows per bin, the 101
percentiles (for the Kolmogorov-Smirnov test), mean, std, min, max and the missing rate; per categorical feature
(strings, categories, booleans) the frequencies of the ``top_k`` most frequent values and of all the others. The
model's predictions and class probabilities on the same rows are profiled the same way.

>>> import pandas as pd
>>> profile = build_profile(pd.DataFrame({"amount": [1.0, 2.0, 3.0, None], "country": ["FR", "FR", "DE", "FR"]}))
>>> profile["rows"], profile["features"]["amount"]["mean"], profile["features"]["amount"]["missing_rate"]
(4, 2.0, 0.25)
>>> profile["features"]["country"]["frequencies"]
{'FR': 0.75, 'DE': 0.25}

Numeric bins: ``edges`` are the deduplicated quantiles of the values (or, for a feature with at most ``bins``
distinct values, one bin per value with edges half-way between them); bin ``i`` holds ``edges[i] <= x <
edges[i + 1]``, the last bin includes its upper edge, and when live data is binned the first and last bins are
open to -inf and +inf (:func:`bin_index`). A feature whose percentiles repeat a value (a point mass, e.g. integer
codes or many zeros) is marked ``"discrete": true``: drift uses the chi-squared test over its bins rather than
the Kolmogorov-Smirnov test, which assumes a continuous distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.flavors.base import LoadedModel
    from shipyard.signature import Signature

PROFILE_FORMAT = 1
QUANTILE_LEVELS = 101
MAX_PROFILE_ROWS = 100_000
SAMPLE_SEED = 0


def build_profile(
    X: pd.DataFrame | np.ndarray,
    *,
    predictions: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    bins: int = 10,
    top_k: int = 20,
) -> dict[str, Any]:
    """Profile the rows ``X`` (and the model's ``predictions`` and ``probabilities`` on them).

    ``predictions`` is categorical (labels as strings) when ``classes`` or ``probabilities`` are given or the
    predictions are not numbers, numeric otherwise. ``probabilities`` has one column per class, in ``classes``
    order (default ``0..k-1``).

    >>> import numpy as np
    >>> p = build_profile(np.array([[0.5], [1.5]]), predictions=np.array([1, 0]),
    ...                   probabilities=np.array([[0.2, 0.8], [0.9, 0.1]]), classes=[0, 1])
    >>> sorted(p["features"]), p["prediction"]["kind"], sorted(p["probabilities"])
    (['f0'], 'categorical', ['0', '1'])
    """
    if bins < 1 or top_k < 1:
        raise InvalidInput(f"bins and top_k must be at least 1, got bins={bins}, top_k={top_k}")
    frame = _as_frame(X, feature_names)
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "rows": len(frame),
        "features": {str(name): profile_column(frame[name], bins=bins, top_k=top_k) for name in frame.columns},
    }
    if predictions is not None:
        pred = np.asarray(predictions)
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.ndim != 1:
            raise InvalidInput(f"predictions must be one value per row, got an array of shape {pred.shape}")
        categorical = classes is not None or probabilities is not None or not _is_number_dtype(pred.dtype)
        series = pd.Series(pred)
        profile["prediction"] = (
            _categorical_entry(series, top_k=top_k) if categorical else _numeric_entry(series, bins=bins)
        )
    if probabilities is not None:
        proba = np.asarray(probabilities, dtype=np.float64)
        if proba.ndim != 2:
            raise InvalidInput(f"probabilities must be a 2-D array (rows x classes), got shape {proba.shape}")
        labels = list(classes) if classes is not None else list(range(proba.shape[1]))
        if len(labels) != proba.shape[1]:
            raise InvalidInput(f"{len(labels)} classes given for probabilities with {proba.shape[1]} columns")
        profile["probabilities"] = {
            str(label): _numeric_entry(pd.Series(proba[:, i]), bins=bins) for i, label in enumerate(labels)
        }
    return profile


def profile_model(
    loaded: LoadedModel,
    X: Any,
    signature: Signature | None = None,
    *,
    max_rows: int = MAX_PROFILE_ROWS,
    seed: int = SAMPLE_SEED,
) -> dict[str, Any]:
    """The profile of ``X`` (at most ``max_rows`` rows, sampled with ``seed``) and of ``loaded``'s predictions on it.

    ``X`` is anything :meth:`Signature.validate` accepts (a DataFrame, records, a dict of columns, an array);
    it is shaped by ``signature`` when given, so the profile names the model's own input columns.

    >>> from sklearn.linear_model import LogisticRegression
    >>> from shipyard.flavors.sklearn import SklearnModel
    >>> X = pd.DataFrame({"amount": [0.0, 1.0, 2.0, 3.0]})
    >>> p = profile_model(SklearnModel(LogisticRegression().fit(X, [0, 0, 1, 1])), X)
    >>> p["rows"], p["prediction"]["frequencies"], sorted(p["probabilities"])
    (4, {'0': 0.5, '1': 0.5}, ['0', '1'])
    """
    rows = _sample_rows(X, max_rows, seed)
    if signature is not None:
        features: pd.DataFrame | np.ndarray = signature.validate(rows, allow_extra=True)
        names = signature.column_names or None
    else:
        features = rows if isinstance(rows, (pd.DataFrame, np.ndarray)) else pd.DataFrame(rows)
        names = None
    predictions, probabilities = loaded.predict_with_proba(features)
    classes = loaded.classes
    if probabilities is not None and (classes is None or len(classes) != np.shape(probabilities)[1]):
        probabilities = None
    return build_profile(
        features,
        predictions=np.asarray(predictions),
        probabilities=probabilities,
        classes=classes,
        feature_names=names if isinstance(features, np.ndarray) else None,
    )


def _sample_rows(X: Any, max_rows: int, seed: int) -> Any:
    """At most ``max_rows`` rows of ``X``, a uniform sample drawn with ``seed`` (in their original order)."""
    if isinstance(X, Mapping):
        X = pd.DataFrame(dict(X))
    elif isinstance(X, list) and X and isinstance(X[0], Mapping):
        X = pd.DataFrame(X)
    elif not isinstance(X, (pd.DataFrame, np.ndarray)):
        X = np.asarray(X)
    if len(X) <= max_rows:
        return X
    keep = np.sort(np.random.default_rng(seed).choice(len(X), size=max_rows, replace=False))
    return X.iloc[keep] if isinstance(X, pd.DataFrame) else X[keep]


def profile_column(values: pd.Series, *, bins: int = 10, top_k: int = 20) -> dict[str, Any]:
    """The profile entry of one column: numeric for numbers, categorical for anything else (booleans included).

    >>> profile_column(pd.Series([True, False, True]))["frequencies"]
    {'True': 0.6666666666666666, 'False': 0.3333333333333333}
    """
    if _is_number_dtype(values.dtype):
        return _numeric_entry(values, bins=bins)
    return _categorical_entry(values, top_k=top_k)


def is_categorical(entry: dict[str, Any]) -> bool:
    """Whether a profile entry describes a categorical column."""
    return bool(entry.get("kind") == "categorical")


def bin_index(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each value for the given edges, the first and last bins open to -inf and +inf.

    >>> bin_index([0.0, 1.0, 2.0], np.array([-5.0, 0.0, 0.99, 1.0, 2.0, 7.0])).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    return np.searchsorted(inner, values, side="right")


def _as_frame(X: pd.DataFrame | np.ndarray, feature_names: Sequence[str] | None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise InvalidInput(f"X must be a DataFrame or a 2-D array, got an array of shape {array.shape}")
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise InvalidInput(f"{len(names)} feature names given for an array with {array.shape[1]} columns")
    return pd.DataFrame({name: array[:, i] for i, name in enumerate(names)})


def _is_number_dtype(dtype: Any) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _float(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _numeric_entry(values: pd.Series, *, bins: int) -> dict[str, Any]:
    if _is_number_dtype(values.dtype):
        data = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ordered = np.sort(data[np.isfinite(data)])  # one sort gives the quantiles, the distinct values and the counts
    total, present = len(data), len(ordered)
    missing_rate = float((total - present) / total) if total else 0.0
    entry: dict[str, Any] = {"kind": "numeric"}
    if present == 0:
        entry.update(edges=[], counts=[], quantiles=[], mean=None, std=None, min=None, max=None)
        entry["missing_rate"] = missing_rate
        return entry
    # the 101 percentiles for the KS test and the bins + 1 quantile edges, in one call
    both = np.quantile(
        ordered, np.concatenate([np.linspace(0.0, 1.0, QUANTILE_LEVELS), np.linspace(0.0, 1.0, bins + 1)])
    )
    quantiles = both[:QUANTILE_LEVELS]
    changes = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    few = len(changes) < bins  # at most ``bins`` distinct values: one bin each
    if few:
        distinct = ordered[np.concatenate([[0], changes])]
        middles = (distinct[:-1] + distinct[1:]) / 2.0
        edges = np.concatenate([[distinct[0]], middles, [distinct[-1]]]) if len(distinct) > 1 else distinct[[0, 0]]
    else:
        edges = np.unique(both[QUANTILE_LEVELS:])
    positions = np.searchsorted(ordered, edges[1:-1], side="left")  # values below each inner edge
    counts = np.diff(np.concatenate([[0], positions, [present]]))
    entry.update(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        quantiles=[float(q) for q in quantiles],
        mean=_float(ordered.mean()),
        std=_float(ordered.std()),
        min=float(ordered[0]),
        max=float(ordered[-1]),
        missing_rate=missing_rate,
    )
    if few or bool(np.any(np.diff(quantiles) == 0)):
        entry["discrete"] = True
    return entry


def _categorical_entry(values: pd.Series, *, top_k: int) -> dict[str, Any]:
    total = len(values)
    counts = values.value_counts(dropna=True)
    by_key: dict[str, int] = {}
    for value, count in counts.items():
        key = str(value)
        by_key[key] = by_key.get(key, 0) + int(count)
    present = sum(by_key.values())
    ranked = sorted(by_key.items(), key=lambda item: (-item[1], item[0]))
    top = ranked[:top_k]
    rest = sum(count for _, count in ranked[top_k:])
    return {
        "kind": "categorical",
        "frequencies": {key: count / present for key, count in top},
        "other": rest / present if present else 0.0,
        "count": present,
        "missing_rate": float((total - present) / total) if total else 0.0,
    }
