"""XGBoost boosters and scikit-learn wrappers, stored in XGBoost's own UBJSON model format."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.flavors.base import Dumped, Features, Flavor, LoadedModel, class_paths

# wrapper classes the flavor rebuilds by name; anything else is loaded as a plain Booster
_KINDS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor", "Booster")
_ESTIMATOR_TYPES = {"classifier": "XGBClassifier", "regressor": "XGBRegressor", "ranker": "XGBRanker"}
# a UBJSON document is an object whose first key length starts with an integer type marker
_UBJSON_KEY_MARKERS = b"iUIlL"


def _ordered(features: Features, feature_names: list[str] | None) -> Features:
    """Put a frame's columns in training order when it has every training column."""
    if isinstance(features, pd.DataFrame) and feature_names and set(feature_names) <= set(features.columns):
        return features[feature_names]
    return features


class XGBoostModel(LoadedModel):
    """A loaded XGBoost scikit-learn wrapper or raw Booster."""

    flavor = "xgboost"

    def __init__(self, model: Any, meta: dict[str, Any], xgboost: Any) -> None:
        super().__init__(model)
        self._meta = meta
        self._xgboost = xgboost

    @property
    def _is_booster(self) -> bool:
        return bool(self._meta.get("kind") == "Booster")

    @property
    def _feature_names(self) -> list[str] | None:
        names = self._meta.get("feature_names")
        return list(names) if names else None

    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        features = _ordered(features, self._feature_names)
        if not self._is_booster:
            return np.asarray(self.model.predict(features))
        if isinstance(features, pd.DataFrame):
            matrix = self._xgboost.DMatrix(features)
        else:
            matrix = self._xgboost.DMatrix(np.asarray(features), feature_names=self.model.feature_names)
        return np.asarray(self.model.predict(matrix))

    @property
    def has_predict_proba(self) -> bool:
        return not self._is_booster and hasattr(self.model, "predict_proba")

    @property
    def classes(self) -> list[Any] | None:
        classes = self._meta.get("classes")
        if classes is not None:
            return list(classes)
        found = getattr(self.model, "classes_", None) if self.has_predict_proba else None
        return None if found is None else list(np.asarray(found).tolist())

    def predict_proba(self, features: Features) -> np.ndarray[Any, Any]:
        if not self.has_predict_proba:
            return super().predict_proba(features)
        return np.asarray(self.model.predict_proba(_ordered(features, self._feature_names)))


class XGBoostFlavor(Flavor):
    """Stores XGBoost models as native UBJSON bytes and rebuilds the same wrapper class on load.

    >>> from xgboost import XGBRegressor
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> model = XGBRegressor(n_estimators=2, max_depth=1).fit(X, [0.0, 0.0, 1.0, 1.0])
    >>> flavor = XGBoostFlavor()
    >>> dumped = flavor.dump(model)
    >>> dumped.meta["kind"]
    'XGBRegressor'
    >>> bool(np.array_equal(flavor.load(dumped.data, dumped.meta).predict(X), model.predict(X)))
    True
    """

    name = "xgboost"
    suffixes = (".ubj",)  # not ".json": too many other things are JSON files
    modules = ("xgboost", "xgboost-cpu")
    extra = "xgboost"

    def handles(self, model: object) -> bool:
        return any(path.startswith("xgboost.") for path in class_paths(model))

    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        xgboost = self._import("xgboost")
        kind = type(model).__name__
        if isinstance(model, xgboost.Booster):
            booster = model
            data = bytes(model.save_raw("ubj"))
        else:
            fitted = getattr(model, "__sklearn_is_fitted__", None)
            if fitted is not None and not fitted():
                raise InvalidInput(f"this {kind} is not fitted yet; call fit before registering it")
            booster = model.get_booster()
            # save_model also records the estimator type, which read_file uses to pick the wrapper class
            with tempfile.TemporaryDirectory(prefix="shipyard-xgb-") as tmp:
                path = Path(tmp) / "model.ubj"
                model.save_model(path)
                data = path.read_bytes()
        meta: dict[str, Any] = {"kind": kind if kind in _KINDS else "Booster"}
        classes = getattr(model, "classes_", None) if hasattr(model, "predict_proba") else None
        if classes is not None:
            meta["classes"] = np.asarray(classes).tolist()
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            names = booster.feature_names
        meta["feature_names"] = None if names is None else [str(n) for n in names]
        return Dumped(data=data, meta=meta)

    def check_format(self, data: bytes) -> None:
        if data.startswith(b"PK"):
            raise self._mismatch("a zip file, as skops writes")
        if not data.startswith(b"{"):
            raise self._mismatch("not an XGBoost UBJSON model")
        if data[1:2] == b'"' or data[1:2].isspace():
            raise self._mismatch("a JSON document, not UBJSON")
        if len(data) < 2 or data[1] not in _UBJSON_KEY_MARKERS:
            raise self._mismatch("not an XGBoost UBJSON model")

    def _booster(self, data: bytes) -> Any:
        xgboost = self._import("xgboost")
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgboost.core.XGBoostError:
            raise self._mismatch("XGBoost cannot read it") from None
        return booster

    def _wrapper(self, kind: str, data: bytes) -> Any:
        xgboost = self._import("xgboost")
        model = getattr(xgboost, kind)()
        try:
            model.load_model(bytearray(data))
        except (xgboost.core.XGBoostError, TypeError):  # TypeError: the file holds another estimator type
            raise self._mismatch(f"XGBoost cannot read it as an {kind}") from None
        return model

    def load(self, data: bytes, meta: dict[str, Any], *, trusted_types: Sequence[str] = ()) -> XGBoostModel:
        self.check_format(data)
        xgboost = self._import("xgboost")
        kind = str(meta.get("kind", "Booster"))
        if kind not in _KINDS:
            kind = "Booster"
        model = self._booster(data) if kind == "Booster" else self._wrapper(kind, data)
        return XGBoostModel(model, {**meta, "kind": kind}, xgboost)

    def read_file(self, path: Path, *, trusted_types: Sequence[str] = ()) -> Any:
        data = path.read_bytes()
        self.check_format(data)
        booster = self._booster(data)
        recorded = booster.attr("scikit_learn")
        if recorded:
            try:
                estimator_type = json.loads(recorded).get("_estimator_type")
            except (ValueError, AttributeError):
                estimator_type = None
            if estimator_type in _ESTIMATOR_TYPES:
                return self._wrapper(_ESTIMATOR_TYPES[estimator_type], data)
        return booster
