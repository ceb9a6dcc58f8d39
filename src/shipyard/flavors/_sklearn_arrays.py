"""Scoring scikit-learn models on plain arrays once shipyard has checked the columns itself.

scikit-learn validates every call again: with a pandas DataFrame that costs about half a millisecond per
call (feature-name checks, dtype inspection through narwhals) whatever the number of rows, tens of times
the arithmetic of a linear model. Shipyard's signature has already checked the names, the order and the
types of the columns, so a numeric frame can be handed over as the 2-d array it wraps.

The fitted estimator remembers the column names it was trained on and warns when it gets an array. The
*array twin* is a shallow copy of the estimator (and of each pipeline step) without those names: it shares
every fitted array with the original, costs no memory, and gives the same numbers. Only estimators known to
treat columns by position get a twin; anything that selects columns by name (``ColumnTransformer``), runs
user code (``FunctionTransformer``), outputs frames (``set_output``) or holds sub-estimators fitted on named
columns keeps the DataFrame path.

>>> import pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
>>> model = LogisticRegression().fit(X, [0, 0, 1, 1])
>>> twin = array_twin(model)
>>> bool((twin.predict_proba(X.to_numpy()) == model.predict_proba(X)).all())
True
>>> hasattr(model, "feature_names_in_"), hasattr(twin, "feature_names_in_")
(True, False)
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["array_twin", "numeric_block"]

_NAMED_ATTRIBUTES = ("feature_names_in_",)


def _holds_named_estimators(estimator: Any, depth: int = 3) -> bool:
    """Whether an object fitted inside ``estimator`` (an estimator, a list of them, a calibrator holding one,
    up to ``depth`` levels down) knows column names: it would warn, or fail, when given an array."""
    if depth == 0:
        return False
    for value in vars(estimator).values():
        items: list[Any] = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, dict):
            items = list(value.values())
        if isinstance(value, np.ndarray):
            items = list(value.ravel()[:1]) if value.dtype == object else []  # e.g. boosted trees: one tells
        for item in items[:64]:
            if not hasattr(item, "__dict__") or isinstance(item, type):
                continue
            if hasattr(item, "feature_names_in_") or _holds_named_estimators(item, depth - 1):
                return True
    return False


def _positional(estimator: Any) -> bool:
    """Whether ``estimator`` treats its input columns by position only (so an array scores like the frame)."""
    module = type(estimator).__module__
    if not module.startswith("sklearn.") or module.startswith(("sklearn.compose", "sklearn.pipeline")):
        return False
    if type(estimator).__name__ == "FunctionTransformer":
        return False
    output = getattr(estimator, "_sklearn_output_config", None) or {}
    if output.get("transform", "default") != "default":
        return False
    return not _holds_named_estimators(estimator)


def array_twin(estimator: Any) -> Any | None:
    """A shallow copy of ``estimator`` that takes plain 2-d arrays in training column order, or ``None`` when
    it must keep getting DataFrames (see the module's docstring)."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        steps = []
        for name, step in estimator.steps:
            if step is None or step == "passthrough":
                steps.append((name, step))
                continue
            twin = array_twin(step)
            if twin is None:
                return None
            steps.append((name, twin))
        pipeline = copy.copy(estimator)
        pipeline.steps = steps
        return pipeline
    if not _positional(estimator):
        return None
    twin = copy.copy(estimator)
    for attribute in _NAMED_ATTRIBUTES:
        twin.__dict__.pop(attribute, None)
    return twin


def numeric_block(features: Any, names: list[Any] | None) -> np.ndarray[Any, Any] | None:
    """The numeric 2-d array a DataFrame wraps, when its columns are exactly ``names`` (the estimator's
    training columns, in order, or any columns when ``names`` is ``None``); else ``None``.

    >>> import pandas as pd
    >>> numeric_block(pd.DataFrame({"a": [1.0], "b": [2.0]}), ["a", "b"]).tolist()
    [[1.0, 2.0]]
    >>> numeric_block(pd.DataFrame({"b": [1.0], "a": [2.0]}), ["a", "b"]) is None
    True
    """
    import pandas as pd

    if not isinstance(features, pd.DataFrame):
        return None
    if names is not None and features.columns.tolist() != names:
        return None
    block = features.to_numpy()
    if block.dtype.kind not in "fiu":  # mixed kinds (strings, booleans) give objects: the frame path decides
        return None
    return block
