"""River online-learning models, stored as a restricted pickle behind a shipyard header and able to keep learning.

The pickle may only rebuild reviewed names (see :mod:`shipyard.flavors.river_pickle`): River's own classes
and functions, the NumPy and standard-library names River uses, and pure functions such as ``math.log1p``.
Anything else (``os.system``, ``eval``, a lambda, a custom class) is refused at register, before the model
is called, and again on every load of the bytes, unless the user trusts that exact name.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.flavors.base import Dumped, Features, Flavor, LoadedModel, class_paths
from shipyard.flavors.river_pickle import check_model, restricted_loads

MAGIC = b"SHIPYARD-RIVER\x00v1\n"
"""Header in front of every River artifact, so that foreign bytes are refused before unpickling."""

_PIPELINE = "river.compose.pipeline.Pipeline"


def _is_pipeline(model: Any) -> bool:
    return _PIPELINE in class_paths(model)


def _final(model: Any) -> Any:
    """The estimator at the end of (possibly nested) River pipelines: it decides what the model can do."""
    while _is_pipeline(model):
        model = list(model.steps.values())[-1]
    return model


def _batch_capable(model: Any, method: str) -> bool:
    """Whether ``model.<method>`` works on a whole frame, including every transformer of a pipeline."""
    if not _is_pipeline(model):
        return hasattr(model, method)
    steps = list(model.steps.values())
    for step in steps[:-1]:
        parts = list(step.transformers.values()) if hasattr(step, "transformers") else [step]
        if not all(hasattr(p, "transform_many") and hasattr(p, "learn_many") for p in parts):
            return False
    return _batch_capable(steps[-1], method)


def _sorted(values: Iterable[Any]) -> list[Any]:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _rows(features: Features) -> list[dict[Any, Any]]:
    """One River feature dict per row: column names for frames, column positions for arrays."""
    if isinstance(features, pd.DataFrame):
        return [dict(row) for row in features.to_dict("records")]
    array = np.asarray(features)
    if array.ndim != 2:
        raise InvalidInput(f"River models take a 2-D array of rows, got an array with {array.ndim} dimension(s)")
    return [dict(enumerate(row)) for row in array.tolist()]


class RiverModel(LoadedModel):
    """A River model scored row by row (or by mini-batch when it supports frames) and updated in place."""

    flavor = "river"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._seen: set[Any] = set()

    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        if isinstance(features, pd.DataFrame) and _batch_capable(self.model, "predict_many"):
            return np.asarray(self.model.predict_many(features))
        return np.asarray([self.model.predict_one(row) for row in _rows(features)])

    @property
    def has_predict_proba(self) -> bool:
        return hasattr(_final(self.model), "predict_proba_one")

    @property
    def has_partial_fit(self) -> bool:
        return hasattr(_final(self.model), "learn_one")

    def _known_classes(self) -> list[Any]:
        final = _final(self.model)
        exposed = getattr(final, "classes", None)
        if isinstance(exposed, (set, frozenset, list, tuple)) and exposed:
            return list(exposed)
        if getattr(final, "_multiclass", None) is False:  # binary River classifiers answer False / True
            return [False, True]
        return []

    @property
    def classes(self) -> list[Any] | None:
        if not self.has_predict_proba:
            return None
        known = set(self._known_classes()) | self._seen
        return _sorted(known) if known else None

    def predict_proba(self, features: Features) -> np.ndarray[Any, Any]:
        if not self.has_predict_proba:
            return super().predict_proba(features)
        if isinstance(features, pd.DataFrame) and _batch_capable(self.model, "predict_proba_many"):
            frame = self.model.predict_proba_many(features)
            self._seen.update(frame.columns)
            columns = _sorted(set(self._known_classes()) | self._seen)
            return np.asarray(frame.reindex(columns=columns, fill_value=0.0), dtype=np.float64)
        probabilities = [self.model.predict_proba_one(row) for row in _rows(features)]
        for row in probabilities:
            self._seen.update(row)
        columns = _sorted(set(self._known_classes()) | self._seen)
        result = np.array([[row.get(c, 0.0) for c in columns] for row in probabilities], dtype=np.float64)
        return result.reshape(len(probabilities), len(columns))

    def partial_fit(self, features: Features, targets: Sequence[Any] | np.ndarray[Any, Any]) -> None:
        if not self.has_partial_fit:
            super().partial_fit(features, targets)
            return
        labels = np.asarray(targets).tolist() if not isinstance(targets, pd.Series) else targets.tolist()
        if not isinstance(labels, list) or len(labels) != len(features):
            raise InvalidInput(f"got {len(features)} rows of features but {np.size(targets)} targets")
        if isinstance(features, pd.DataFrame) and _batch_capable(self.model, "learn_many"):
            self.model.learn_many(features, pd.Series(labels, index=features.index))
            return
        for row, label in zip(_rows(features), labels, strict=True):
            self.model.learn_one(row, label)


class RiverFlavor(Flavor):
    """Stores River models as a pickle behind a fixed shipyard header, rebuilt only from reviewed names.

    :meth:`dump` refuses a model holding anything outside the reviewed names (a custom class, ``os.system``,
    ``eval``, a lambda) before serialising it, and reads its own bytes back with the restricted unpickler so
    that nothing is stored that could not be loaded. :meth:`load` uses that restricted unpickler on every
    load, so bytes changed on disk cannot import or call anything else either; ``trusted_types`` admits
    extra exact names. River models are never read from user files (``read_file`` refuses).

    >>> from river import linear_model
    >>> model = linear_model.LinearRegression()
    >>> model.learn_one({"x": 1.0}, 2.0)
    >>> flavor = RiverFlavor()
    >>> dumped = flavor.dump(model)
    >>> dumped.data.startswith(MAGIC)
    True
    >>> loaded = flavor.load(dumped.data, dumped.meta)
    >>> loaded.predict(pd.DataFrame({"x": [1.0]})).tolist() == [model.predict_one({"x": 1.0})]
    True
    """

    name = "river"
    suffixes = ()  # River models are pickles, and pickle files are never registered from disk
    modules = ("river",)
    extra = "river"

    def handles(self, model: object) -> bool:
        return any(path.startswith("river.") for path in class_paths(model))

    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        """Check the model object, pickle it, and read the bytes back with the restricted unpickler.

        Nothing on the model is called before the check; a refused name raises
        :class:`~shipyard.errors.UntrustedTypes` naming it and where it sits.
        """
        check_model(model, trusted_types)
        try:
            data = pickle.dumps(model, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise InvalidInput(f"cannot store this River model, it does not pickle: {exc}") from None
        restricted_loads(data, trusted_types, where="the model")
        return Dumped(data=MAGIC + data, meta={"kind": type(model).__name__})

    def check_format(self, data: bytes) -> None:
        if not data.startswith(MAGIC):
            raise self._mismatch("no shipyard River header")

    def load(self, data: bytes, meta: dict[str, Any], *, trusted_types: Sequence[str] = ()) -> RiverModel:
        self.check_format(data)
        self._import("river")
        return RiverModel(restricted_loads(data[len(MAGIC) :], trusted_types))
