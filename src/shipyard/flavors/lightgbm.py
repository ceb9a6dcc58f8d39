"""LightGBM boosters and scikit-learn wrappers, stored as LightGBM's text model format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.flavors.base import Dumped, Features, Flavor, LoadedModel, class_paths

_MAGIC = b"tree\n"  # first line of every LightGBM text model


def _objective(text: str) -> str | None:
    """The objective recorded in a model string's header (``objective=binary sigmoid:1`` -> ``binary``)."""
    for line in text.splitlines():
        if line.startswith("Tree="):
            break
        if line.startswith("objective="):
            value = line.partition("=")[2].split()
            return value[0] if value else None
    return None


class LightGBMModel(LoadedModel):
    """A LightGBM Booster that answers like the scikit-learn wrapper it was saved from."""

    flavor = "lightgbm"

    def __init__(self, booster: Any, meta: dict[str, Any]) -> None:
        super().__init__(booster)
        classes = meta.get("classes")
        self._classes: list[Any] | None = None if classes is None else list(classes)
        self._feature_names: list[str] = list(booster.feature_name())

    def _input(self, features: Features) -> Features:
        """A frame with the training columns in training order (kept as a frame for categorical columns)."""
        if isinstance(features, pd.DataFrame):
            if set(self._feature_names) <= set(features.columns):
                return features[self._feature_names]
            return features
        return np.asarray(features)

    def _probabilities(self, features: Features) -> np.ndarray[Any, Any]:
        result = np.asarray(self.model.predict(self._input(features)))
        if result.ndim == 1:  # binary objectives give P(class 1) only
            result = np.vstack((1.0 - result, result)).transpose()
        return result

    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        if self._classes is None:
            return np.asarray(self.model.predict(self._input(features)))
        index = np.argmax(self._probabilities(features), axis=1)
        return np.asarray(np.asarray(self._classes)[index])

    @property
    def has_predict_proba(self) -> bool:
        return self._classes is not None

    @property
    def classes(self) -> list[Any] | None:
        return None if self._classes is None else list(self._classes)

    def predict_proba(self, features: Features) -> np.ndarray[Any, Any]:
        if not self.has_predict_proba:
            return super().predict_proba(features)
        return self._probabilities(features)


class LightGBMFlavor(Flavor):
    """Stores LightGBM models as their text model string; classifiers keep their class labels in the metadata.

    >>> from lightgbm import LGBMClassifier
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]] * 5)
    >>> y = ["no", "no", "yes", "yes"] * 5
    >>> model = LGBMClassifier(n_estimators=2, min_child_samples=1, verbose=-1).fit(X, y)
    >>> flavor = LightGBMFlavor()
    >>> dumped = flavor.dump(model)
    >>> dumped.meta
    {'kind': 'LGBMClassifier', 'objective': 'binary', 'classes': ['no', 'yes']}
    >>> flavor.load(dumped.data, dumped.meta).predict(np.array([[0.0], [3.0]])).tolist()
    ['no', 'yes']
    """

    name = "lightgbm"
    suffixes = (".lgb",)  # read_file also takes .txt files, but only if they start like a LightGBM model
    modules = ("lightgbm",)
    extra = "lightgbm"

    def handles(self, model: object) -> bool:
        return any(path.startswith("lightgbm.") for path in class_paths(model))

    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        lightgbm = self._import("lightgbm")
        kind = type(model).__name__
        if isinstance(model, lightgbm.Booster):
            booster = model
        else:
            fitted = getattr(model, "__sklearn_is_fitted__", None)
            if fitted is not None and not fitted():
                raise InvalidInput(f"this {kind} is not fitted yet; call fit before registering it")
            booster = model.booster_
        text: str = booster.model_to_string()
        meta: dict[str, Any] = {"kind": kind, "objective": _objective(text)}
        classes = getattr(model, "classes_", None) if hasattr(model, "predict_proba") else None
        if classes is not None:
            meta["classes"] = np.asarray(classes).tolist()
        return Dumped(data=text.encode("utf-8"), meta=meta)

    def check_format(self, data: bytes) -> None:
        if not data.startswith(_MAGIC):
            raise self._mismatch("not a LightGBM text model")

    def _booster(self, data: bytes) -> Any:
        self.check_format(data)
        lightgbm = self._import("lightgbm")
        try:
            return lightgbm.Booster(model_str=data.decode("utf-8"))
        except (UnicodeDecodeError, lightgbm.basic.LightGBMError):
            raise self._mismatch("LightGBM cannot read it") from None

    def load(self, data: bytes, meta: dict[str, Any], *, trusted_types: Sequence[str] = ()) -> LightGBMModel:
        return LightGBMModel(self._booster(data), meta)

    def read_file(self, path: Path, *, trusted_types: Sequence[str] = ()) -> Any:
        data = path.read_bytes()
        if path.suffix.lower() == ".txt" and not data.startswith(_MAGIC):
            raise InvalidInput(f"{path.name} is not a LightGBM model file: it does not start with 'tree'")
        return self._booster(data)
