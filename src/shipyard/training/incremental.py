"""Continue training a fitted model on a batch of rows: ``partial_fit``, step by step through a pipeline.

Used by ``shipyard train --incremental`` (one call per chunk of new data) and by online learning.
For a scikit-learn :class:`~sklearn.pipeline.Pipeline` the steps are updated in order: a transformer
with ``partial_fit`` (``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler``...) is partially fitted on
the batch and then transforms it for the next step; a transformer without it stays as it was (it is
*frozen*, and the report lists it); the final estimator must have ``partial_fit``.

>>> import numpy as np
>>> from sklearn.linear_model import SGDClassifier
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
>>> pipe = make_pipeline(StandardScaler(), SGDClassifier(random_state=0)).fit(X[:100], y[:100])
>>> report = partial_fit(pipe, X[100:], y[100:])
>>> report.rows, report.updated, report.frozen
(100, ('standardscaler', 'sgdclassifier'), ())
>>> int(pipe.named_steps["standardscaler"].n_samples_seen_)
200
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.training.errors import NotIncremental


@dataclass(frozen=True)
class PartialFitReport:
    """What one or more :func:`partial_fit` calls did: rows learnt, steps updated, steps left frozen.

    Reports of successive batches add up:

    >>> PartialFitReport(10, ("scaler", "clf"), ()) + PartialFitReport(5, ("scaler", "clf"), ())
    PartialFitReport(rows=15, updated=('scaler', 'clf'), frozen=())
    """

    rows: int
    updated: tuple[str, ...]
    frozen: tuple[str, ...]

    def __add__(self, other: PartialFitReport) -> PartialFitReport:
        return PartialFitReport(
            self.rows + other.rows,
            tuple(dict.fromkeys((*self.updated, *other.updated))),
            tuple(dict.fromkeys((*self.frozen, *other.frozen))),
        )


def final_estimator(model: Any) -> Any:
    """The last step of a (possibly nested) pipeline, or the model itself.

    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> final_estimator(make_pipeline(StandardScaler(), Ridge()))
    Ridge()
    """
    while _is_pipeline(model):
        model = model.steps[-1][1]
    return model


def check_incremental(model: Any) -> None:
    """Raise :class:`NotIncremental`, naming the estimator, unless the model's final estimator has ``partial_fit``.

    >>> from sklearn.ensemble import RandomForestClassifier
    >>> check_incremental(RandomForestClassifier())
    Traceback (most recent call last):
    ...
    shipyard.training.errors.NotIncremental: RandomForestClassifier cannot be trained incrementally ...
    """
    last = final_estimator(model)
    if not callable(getattr(last, "partial_fit", None)):
        where = f" (the last step of the {type(model).__name__})" if last is not model else ""
        raise NotIncremental(type(last).__name__, where)


def partial_fit(model: Any, X: Any, y: Any, classes: Any = None) -> PartialFitReport:
    """Update a fitted ``model`` in place with one batch of rows ``X`` and targets ``y``.

    ``classes`` are passed to a classifier's ``partial_fit``; by default they are the classes the
    model already knows (its ``classes_``), as scikit-learn requires on a first call. Labels outside
    them are an error. Nothing is concatenated or kept: call it once per chunk.
    """
    check_incremental(model)
    rows = len(y)
    if rows == 0:
        return PartialFitReport(0, (), ())
    updated: list[str] = []
    frozen: list[str] = []
    Xt = _update_transformers(model, X, updated, frozen, prefix="") if _is_pipeline(model) else X
    last = final_estimator(model)
    name = _step_path(model) or type(last).__name__.lower()
    _fit_final(last, Xt, y, classes)
    updated.append(name)
    return PartialFitReport(rows, tuple(updated), tuple(frozen))


def _update_transformers(pipe: Any, X: Any, updated: list[str], frozen: list[str], prefix: str) -> Any:
    """Partially fit then apply every step but the last; returns the batch as the last step sees it."""
    Xt = X
    for name, step in pipe.steps[:-1]:
        path = f"{prefix}{name}"
        if _skipped(step):
            continue
        if _is_pipeline(step):
            Xt = _update_transformers(step, Xt, updated, frozen, prefix=f"{path}/")
            last_name, last = step.steps[-1]
            Xt = _update_one(last, Xt, f"{path}/{last_name}", updated, frozen)
            continue
        Xt = _update_one(step, Xt, path, updated, frozen)
    last_name, last = pipe.steps[-1]
    if _is_pipeline(last):
        return _update_transformers(last, Xt, updated, frozen, prefix=f"{prefix}{last_name}/")
    return Xt


def _update_one(step: Any, Xt: Any, path: str, updated: list[str], frozen: list[str]) -> Any:
    if _skipped(step):
        return Xt
    if callable(getattr(step, "partial_fit", None)):
        step.partial_fit(Xt)
        updated.append(path)
    else:
        frozen.append(path)
    return step.transform(Xt)


def _fit_final(estimator: Any, Xt: Any, y: Any, classes: Any) -> None:
    from sklearn.base import is_classifier

    if is_classifier(estimator):
        known = classes if classes is not None else getattr(estimator, "classes_", None)
        if known is not None:
            _check_labels(estimator, y, known)
            estimator.partial_fit(Xt, y, classes=np.asarray(known))
            return
    estimator.partial_fit(Xt, y)


def _check_labels(estimator: Any, y: Any, known: Any) -> None:
    unseen = sorted(set(np.unique(np.asarray(y)).tolist()) - set(np.asarray(known).tolist()), key=str)
    if unseen:
        from shipyard.errors import InvalidInput

        raise InvalidInput(
            f"the new rows have labels {', '.join(map(repr, unseen[:5]))} that {type(estimator).__name__} was not "
            f"trained with (its classes: {', '.join(map(repr, np.asarray(known).tolist()))}); an incremental "
            "update cannot add classes: train the model again with 'shipyard train spec.yaml'"
        )


def _step_path(model: Any) -> str:
    parts: list[str] = []
    while _is_pipeline(model):
        name, model = model.steps[-1]
        parts.append(name)
    return "/".join(parts)


def _skipped(step: Any) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


def _is_pipeline(model: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(model, Pipeline)
