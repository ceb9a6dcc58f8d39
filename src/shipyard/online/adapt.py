"""What online learning needs from an estimator: can it learn, what it predicts, and one learning step.

scikit-learn models learn with :func:`shipyard.training.incremental.partial_fit` (a pipeline step by step);
River models with ``learn_one`` per event.

>>> from sklearn.linear_model import SGDClassifier
>>> from sklearn.preprocessing import StandardScaler
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.decomposition import PCA
>>> pipe = make_pipeline(StandardScaler(), PCA(1), SGDClassifier()).fit([[0, 1], [1, 0], [2, 2]], [0, 1, 1])
>>> info = describe(pipe)
>>> info.task, info.classes, info.frozen
('classification', [0, 1], ('pca',))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.training.incremental import _is_pipeline, check_incremental, final_estimator, partial_fit


@dataclass(frozen=True)
class Learnable:
    """How a model learns online: its task (classification, regression, clustering), classes, frozen steps."""

    task: str
    classes: list[Any] | None
    frozen: tuple[str, ...]
    river: bool

    @property
    def metric(self) -> str | None:
        """The progressive metric: ``accuracy``, ``mae`` or ``None``."""
        return {"classification": "accuracy", "regression": "mae"}.get(self.task)


def is_river(model: Any) -> bool:
    """Whether ``model`` is a River estimator or pipeline (it has ``learn_one``)."""
    return callable(getattr(model, "learn_one", None)) and type(model).__module__.startswith("river")


def describe(model: Any) -> Learnable:
    """Check that ``model`` can learn online and say how; refuses others, by estimator name."""
    if is_river(model):
        from river import base

        last = model
        while hasattr(last, "steps"):
            last = list(last.steps.values())[-1]
        task = "classification" if isinstance(last, base.Classifier) else (
            "regression" if isinstance(last, base.Regressor) else "clustering")
        return Learnable(task, None, (), True)
    if callable(getattr(model, "learn_one", None)):
        return Learnable("regression", None, (), True)
    check_incremental(model)  # NotIncremental names the estimator that cannot learn
    from sklearn.base import is_classifier, is_regressor

    last = final_estimator(model)
    if is_classifier(last):
        known = getattr(last, "classes_", None)
        if known is None:
            raise InvalidInput(
                f"{type(last).__name__} is not fitted; fit it on a first batch before registering it online"
            )
        return Learnable("classification", np.asarray(known).tolist(), _frozen(model), False)
    return Learnable("regression" if is_regressor(last) else "clustering", None, _frozen(model), False)


def _frozen(model: Any, prefix: str = "") -> tuple[str, ...]:
    if not _is_pipeline(model):
        return ()
    out: list[str] = []
    for name, step in model.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        if _is_pipeline(step):
            out.extend(_frozen(step, f"{prefix}{name}/"))
            if not callable(getattr(step.steps[-1][1], "partial_fit", None)):
                out.append(f"{prefix}{name}/{step.steps[-1][0]}")
        elif not callable(getattr(step, "partial_fit", None)):
            out.append(f"{prefix}{name}")
    return tuple(out)


def predict(model: Any, info: Learnable, X: Any, rows: list[Any]) -> list[Any]:
    """Predictions of ``model`` for a block: ``X`` as validated for scikit-learn, ``rows`` (dicts) for River."""
    if info.river:
        return [model.predict_one(r) for r in rows]
    return list(np.asarray(model.predict(X)).tolist())


def scores(info: Learnable, predicted: list[Any], labels: list[Any]) -> list[float]:
    """Per-event progressive scores: 1/0 correct (classification), absolute error (regression)."""
    if info.task == "classification":
        return [1.0 if p == y else 0.0 for p, y in zip(predicted, labels, strict=True)]
    if info.task == "regression":
        return [abs(float(p) - float(y)) for p, y in zip(predicted, labels, strict=True)]
    return []


def learn(model: Any, info: Learnable, X: Any, rows: list[Any], labels: list[Any]) -> None:
    """Update ``model`` in place with one block of events."""
    if info.river:
        for r, y in zip(rows, labels, strict=True):
            model.learn_one(r, y)
        return
    y = None if info.task == "clustering" else np.asarray(labels)
    partial_fit(model, X, y if y is not None else np.zeros(len(labels)), classes=info.classes)


@dataclass(frozen=True)
class FeatureNames:
    """The column names (``feature_names_in_``) taken off a scikit-learn model so it learns from float arrays.

    A model fitted on a DataFrame records its columns and warns when it is later given a plain array. The
    learner's events were validated against the signature, whose columns are those very names in that order,
    so on its private copy of the model it takes the names off (:func:`take_feature_names`) and passes each
    block as one float array, skipping pandas and scikit-learn's per-call column checks; the names go back
    (:meth:`restored`) while a snapshot is written, so every registered version keeps them.

    >>> import pandas as pd
    >>> from sklearn.linear_model import SGDRegressor
    >>> model = SGDRegressor().fit(pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 0.0]}), [0.0, 1.0])
    >>> names = take_feature_names(model, ["a", "b"])
    >>> hasattr(model, "feature_names_in_"), model.predict([[1.0, 0.0]]).shape
    (False, (1,))
    >>> with names.restored():
    ...     model.feature_names_in_.tolist()
    ['a', 'b']
    >>> hasattr(model, "feature_names_in_")
    False
    """

    owner: Any
    names: Any

    @contextmanager
    def restored(self) -> Iterator[None]:
        """The names put back for the duration of the block (the model is the learner's own: one thread)."""
        self.owner.feature_names_in_ = self.names
        try:
            yield
        finally:
            del self.owner.feature_names_in_

    def put_back(self) -> None:
        """Put the names back for good."""
        self.owner.feature_names_in_ = self.names


def take_feature_names(model: Any, columns: Sequence[str]) -> FeatureNames | None:
    """Take the column names off ``model`` if it can learn and predict from float arrays in ``columns`` order
    instead of frames, and return them; ``None`` (the model untouched) if it cannot.

    It can when the first step was fitted on exactly ``columns`` and no step picks columns by name: a
    ``ColumnTransformer``, ``FeatureUnion`` or ``FunctionTransformer``, a later step fitted on named columns
    (``set_output(transform="pandas")``), or a step that is not a scikit-learn estimator keep the frames.
    """
    from sklearn.base import BaseEstimator
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion
    from sklearn.preprocessing import FunctionTransformer

    steps = _leaves(model)
    if not steps or any(
        not isinstance(s, BaseEstimator) or isinstance(s, ColumnTransformer | FeatureUnion | FunctionTransformer)
        for s in steps
    ):
        return None
    first = steps[0]
    names = vars(first).get("feature_names_in_")
    if names is None or [str(n) for n in names] != list(columns):
        return None
    if any("feature_names_in_" in vars(s) for s in steps[1:]):
        return None
    del first.feature_names_in_
    return FeatureNames(first, names)


def _leaves(model: Any) -> list[Any]:
    """The steps of a (possibly nested) pipeline in order, skipping ``None`` and ``"passthrough"``."""
    if not _is_pipeline(model):
        return [model]
    out: list[Any] = []
    for _, step in model.steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        out.extend(_leaves(step))
    return out
