"""Live accuracy: scikit-learn's metrics over logged predictions joined with the labels that came back.

>>> classification_metrics([0, 1, 1, 0], [0, 1, 0, 0])["accuracy"]
0.75
>>> regression_metrics([1.0, 2.0], [1.5, 2.5])
{'mae': 0.5, 'rmse': 0.5, 'n': 2}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput

TASKS = ("classification", "regression")


def classification_metrics(
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Sequence[Any] | np.ndarray | pd.Series,
    probabilities: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and (with ``probabilities``) ROC AUC, plus the row count ``n``.

    Binary problems (two classes) score the positive class ``classes[-1]``; more classes use macro averages.
    ``classes`` defaults to the sorted labels seen in ``y_true`` and ``y_pred``; ``probabilities`` has one
    column per class in ``classes`` order. ROC AUC is left out unless every class occurs in ``y_true``.
    Labels that arrived as strings are compared with numeric predictions by their string form.

    >>> m = classification_metrics(["a", "b", "b"], ["a", "b", "a"], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    >>> m["recall"], m["roc_auc"], m["n"]
    (0.5, 1.0, 3)
    """
    from sklearn import metrics

    truth, pred, labels = _aligned_labels(y_true, y_pred, classes)
    n = len(truth)
    if n == 0:
        return {"n": 0}
    binary = len(labels) == 2
    average = "binary" if binary else "macro"
    extra: dict[str, Any] = {"pos_label": labels[-1]} if binary else {"labels": labels}
    result: dict[str, float] = {
        "accuracy": float(metrics.accuracy_score(truth, pred)),
        "precision": float(metrics.precision_score(truth, pred, average=average, zero_division=0, **extra)),
        "recall": float(metrics.recall_score(truth, pred, average=average, zero_division=0, **extra)),
        "f1": float(metrics.f1_score(truth, pred, average=average, zero_division=0, **extra)),
    }
    if probabilities is not None:
        proba = np.asarray(probabilities, dtype=np.float64)
        if proba.ndim != 2 or proba.shape != (n, len(labels)):
            raise InvalidInput(
                f"probabilities must have shape (rows, classes) = ({n}, {len(labels)}), got {proba.shape}"
            )
        present = set(truth.tolist())
        usable = ~np.isnan(proba).any(axis=1)
        if len(labels) >= 2 and all(label in present for label in labels) and usable.all():
            if binary:
                result["roc_auc"] = float(metrics.roc_auc_score(truth == labels[-1], proba[:, -1]))
            else:
                result["roc_auc"] = float(
                    metrics.roc_auc_score(truth, proba, multi_class="ovr", average="macro", labels=labels)
                )
    result["n"] = n
    return result


def regression_metrics(
    y_true: Sequence[Any] | np.ndarray | pd.Series, y_pred: Sequence[Any] | np.ndarray | pd.Series
) -> dict[str, float]:
    """Mean absolute error, root mean squared error and the row count ``n``."""
    from sklearn import metrics

    truth = _numbers(y_true, "labels")
    pred = _numbers(y_pred, "predictions")
    if len(truth) != len(pred):
        raise InvalidInput(f"{len(truth)} labels for {len(pred)} predictions; give one label per prediction")
    if len(truth) == 0:
        return {"n": 0}
    return {
        "mae": float(metrics.mean_absolute_error(truth, pred)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(truth, pred))),
        "n": len(truth),
    }


def live_accuracy(
    joined: pd.DataFrame,
    *,
    task: str,
    classes: Sequence[Any] | None = None,
    every: str | None = None,
) -> list[dict[str, Any]]:
    """Metrics per version (and per time bucket of ``every``, a pandas offset alias such as ``"1h"``).

    ``joined`` has the columns ``version``, ``ts``, ``prediction``, ``label`` and optionally ``probabilities``
    (a list of floats per row, in ``classes`` order). Each result is ``{"version", "window_start", "n", ...}``
    with ``window_start`` an ISO timestamp, or ``None`` without ``every``.

    >>> frame = pd.DataFrame({"version": [1, 1, 2], "ts": pd.to_datetime(["2026-01-01"] * 3, utc=True),
    ...                       "prediction": [1.0, 2.0, 3.0], "label": [1.0, 3.0, 3.0]})
    >>> [(r["version"], r["mae"]) for r in live_accuracy(frame, task="regression")]
    [(1, 0.5), (2, 0.0)]
    """
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    missing = [c for c in ("version", "ts", "prediction", "label") if c not in joined.columns]
    if missing:
        raise InvalidInput(f"the joined frame lacks the column(s) {', '.join(missing)}")
    if joined.empty:
        return []
    frame = joined
    keys: list[str] = ["version"]
    if every is not None:
        try:
            window = pd.to_datetime(frame["ts"], utc=True).dt.floor(every)
        except ValueError as exc:
            raise InvalidInput(
                f"invalid time bucket {every!r}: use a pandas offset alias such as '1h' or '10min'"
            ) from exc
        frame = frame.assign(_window=window)
        keys.append("_window")
    results: list[dict[str, Any]] = []
    for key, group in frame.groupby(keys, sort=True):
        values: tuple[Any, ...] = key if isinstance(key, tuple) else (key,)
        version = int(values[0])
        start = pd.Timestamp(values[1]).isoformat() if every is not None else None
        if task == "classification":
            proba = None
            if "probabilities" in group.columns and classes is not None:
                proba = _stack_probabilities(group["probabilities"], len(classes))
            metrics = classification_metrics(group["label"], group["prediction"], proba, classes)
        else:
            metrics = regression_metrics(group["label"], group["prediction"])
        n = metrics.pop("n")
        results.append({"version": version, "window_start": start, "n": int(n), **metrics})
    return results


def _aligned_labels(
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Sequence[Any] | np.ndarray | pd.Series,
    classes: Sequence[Any] | None,
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    truth = np.asarray(list(y_true) if not isinstance(y_true, (np.ndarray, pd.Series)) else y_true)
    pred = np.asarray(list(y_pred) if not isinstance(y_pred, (np.ndarray, pd.Series)) else y_pred)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise InvalidInput(f"{truth.shape} labels for {pred.shape} predictions; give one label per prediction")
    numeric = all(a.dtype.kind in "biuf" for a in (truth, pred)) and (
        classes is None or all(isinstance(c, (bool, int, float, np.number)) for c in classes)
    )
    if not numeric:
        truth = truth.astype(str)
        pred = pred.astype(str)
        labels = [str(c) for c in classes] if classes is not None else sorted(set(truth) | set(pred))
    else:
        labels = list(classes) if classes is not None else sorted(set(truth.tolist()) | set(pred.tolist()))
    return truth, pred, labels


def _numbers(values: Sequence[Any] | np.ndarray | pd.Series, what: str) -> np.ndarray:
    try:
        return np.asarray(list(values) if not isinstance(values, (np.ndarray, pd.Series)) else values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"regression {what} must be numbers: {exc}") from exc


def _stack_probabilities(column: pd.Series, width: int) -> np.ndarray | None:
    rows = column.tolist()
    if any(row is None or len(row) != width for row in rows):
        return None
    return np.asarray([np.asarray(row, dtype=np.float64) for row in rows]).reshape(len(rows), width)
