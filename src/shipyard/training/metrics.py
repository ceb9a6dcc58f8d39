"""Metrics by scikit-learn name, which way is better, and scoring a model on a holdout.

A metric is any scikit-learn scorer name (``accuracy``, ``f1_macro``, ``roc_auc``, ``neg_log_loss``,
``r2``...) or a :mod:`sklearn.metrics` function name (``accuracy_score``, ``log_loss``,
``mean_squared_error``...). Losses written by their function name are reported as they are (lower is
better); scorer names keep scikit-learn's convention (greater is better).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.training.errors import InvalidSpec

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.scoring import Model

TOLERANCE = 1e-12
"""Differences smaller than this count as equal when comparing two versions."""


@dataclass(frozen=True)
class Metric:
    """A named metric: the scikit-learn scorer computing it and which direction is better.

    >>> m = resolve_metric("log_loss")
    >>> m.scorer_name, m.greater_is_better
    ('neg_log_loss', False)
    >>> m.better(0.30, 0.35), m.better(0.35, 0.35), m.better(0.40, 0.35)
    (True, True, False)
    """

    name: str
    scorer_name: str
    greater_is_better: bool

    def score(self, estimator: Any, X: Any, y: Any) -> float:
        """The metric of a fitted ``estimator`` on ``X``/``y``."""
        from sklearn.metrics import get_scorer

        value = float(get_scorer(self.scorer_name)(estimator, X, y))
        return value if self.greater_is_better or self.name == self.scorer_name else -value

    def better(self, new: float, old: float) -> bool:
        """Whether ``new`` is at least as good as ``old``."""
        if self.greater_is_better:
            return new >= old - TOLERANCE
        return new <= old + TOLERANCE


def resolve_metric(name: str) -> Metric:
    """The :class:`Metric` called ``name``, or an :class:`InvalidSpec` suggesting close names.

    >>> resolve_metric("accuracy_score")
    Metric(name='accuracy_score', scorer_name='accuracy', greater_is_better=True)
    >>> resolve_metric("acuracy")
    Traceback (most recent call last):
    ...
    shipyard.training.errors.InvalidSpec: metrics: unknown metric 'acuracy' (did you mean accuracy...?); ...
    """
    from sklearn.metrics import get_scorer_names

    known = set(get_scorer_names())
    if name in known:
        return Metric(name, name, True)
    stem = name.removesuffix("_score")
    if stem in known:
        return Metric(name, stem, True)
    for candidate in (f"neg_{name}", f"neg_{name.removesuffix('_loss')}", f"neg_{stem}"):
        if candidate in known:
            return Metric(name, candidate, False)
    close = difflib.get_close_matches(name, sorted(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InvalidSpec(
        f"metrics: unknown metric {name!r}{hint}; use a scikit-learn scorer name such as accuracy, f1, roc_auc, "
        "r2 or neg_mean_squared_error, or a sklearn.metrics function name such as log_loss"
    )


def resolve_metrics(names: Sequence[str], estimator: Any) -> list[Metric]:
    """The spec's metrics; none given means ``accuracy`` for a classifier and ``r2`` otherwise.

    >>> from sklearn.linear_model import Ridge
    >>> [m.name for m in resolve_metrics([], Ridge())]
    ['r2']
    """
    if names:
        return [resolve_metric(n) for n in names]
    from sklearn.base import is_classifier

    return [resolve_metric("accuracy" if is_classifier(estimator) else "r2")]


def evaluate(estimator: Any, X: Any, y: Any, metrics: Sequence[Metric]) -> dict[str, float]:
    """Every metric of a fitted scikit-learn style ``estimator`` on the holdout ``X``/``y``.

    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> evaluate(clf, [[0.2], [2.8]], [0, 1], [resolve_metric("accuracy")])
    {'accuracy': 1.0}
    """
    scores: dict[str, float] = {}
    for metric in metrics:
        try:
            value = metric.score(estimator, X, y)
        except (ValueError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidSpec(f"metrics: {metric.name} cannot be computed on the holdout: {first}") from None
        if not math.isfinite(value):
            raise InvalidSpec(f"metrics: {metric.name} is {value} on the holdout; choose another metric")
        scores[metric.name] = value
    return scores


def evaluate_version(model: Model, X: pd.DataFrame, y: Any, metrics: Sequence[Metric]) -> dict[str, float]:
    """The metrics of a registered version, loaded with :func:`shipyard.load`, on the same holdout.

    The holdout goes through the version's signature, so a version trained on other columns (or stored
    by another flavor) is scored on exactly the inputs it declares.
    """
    raw = model.raw
    if model.flavor == "sklearn" and callable(getattr(raw, "predict", None)):
        return evaluate(raw, model.prepare(X, allow_extra=True), y, metrics)
    wrapper = _RegisteredProbabilisticEstimator if model.has_predict_proba else _RegisteredEstimator
    return evaluate(wrapper(model), X, y, metrics)


class _RegisteredEstimator:
    """A loaded :class:`~shipyard.scoring.Model` dressed as a fitted scikit-learn estimator for scorers."""

    def __init__(self, model: Model) -> None:
        from sklearn.utils import Tags, TargetTags

        self.model = model
        self.classes_ = np.asarray(model.classes) if model.classes is not None else None
        kind = "classifier" if self.classes_ is not None else "regressor"
        self._tags = Tags(estimator_type=kind, target_tags=TargetTags(required=True))

    def __sklearn_tags__(self) -> Any:
        return self._tags

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def predict(self, X: Any) -> np.ndarray[Any, Any]:
        return self.model.predict(X, allow_extra=True)


class _RegisteredProbabilisticEstimator(_RegisteredEstimator):
    """The same, for a model that gives class probabilities (scorers look for ``predict_proba`` by name)."""

    def predict_proba(self, X: Any) -> np.ndarray[Any, Any]:
        return self.model.predict_proba(X, allow_extra=True)
