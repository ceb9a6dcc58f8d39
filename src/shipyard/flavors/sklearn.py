"""scikit-learn estimators and pipelines, stored with skops and loaded with an explicit trusted-types list."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput, UntrustedTypes
from shipyard.flavors.base import Dumped, Features, Flavor, LoadedModel, class_paths
from shipyard.flavors.trust import untrusted


class SklearnModel(LoadedModel):
    """A loaded scikit-learn estimator or pipeline."""

    flavor = "sklearn"

    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        return np.asarray(self.model.predict(features))

    @property
    def has_predict_proba(self) -> bool:
        return hasattr(self.model, "predict_proba")

    @property
    def has_partial_fit(self) -> bool:
        return hasattr(self.model, "partial_fit")

    @property
    def classes(self) -> list[Any] | None:
        classes = getattr(self.model, "classes_", None)
        return None if classes is None else list(np.asarray(classes).tolist())

    def predict_proba(self, features: Features) -> np.ndarray[Any, Any]:
        if not self.has_predict_proba:
            return super().predict_proba(features)
        return np.asarray(self.model.predict_proba(features))

    def partial_fit(self, features: Features, targets: Any) -> None:
        if not self.has_partial_fit:
            super().partial_fit(features, targets)
            return
        classes = getattr(self.model, "classes_", None)
        if classes is not None:
            self.model.partial_fit(features, targets, classes=classes)
        else:
            self.model.partial_fit(features, targets)


class SklearnFlavor(Flavor):
    """Stores scikit-learn objects with skops; only trusted types are ever rebuilt.

    >>> from sklearn.linear_model import LinearRegression
    >>> flavor = SklearnFlavor()
    >>> data = flavor.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])).data
    >>> flavor.load(data, flavor.inspect(data)).predict(np.array([[2.0]])).round(3).tolist()
    [4.0]
    """

    name = "sklearn"
    suffixes = (".skops",)
    modules = ("scikit-learn", "skops", "numpy", "scipy", "pandas")
    extra = "sklearn"

    def handles(self, model: object) -> bool:
        return any(path.startswith("sklearn.") for path in class_paths(model))

    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        sio = self._import("skops.io", "skops")
        return Dumped(data=sio.dumps(model))

    def inspect(self, data: bytes, *, trusted_types: Sequence[str] = ()) -> dict[str, Any]:
        """Record the types skops must be told to trust, refusing any outside the trusted list."""
        sio = self._import("skops.io", "skops")
        types = sorted(sio.get_untrusted_types(data=data))
        refused = untrusted(types, trusted_types)
        if refused:
            raise UntrustedTypes(refused, "the model")
        return {"types": types}

    def check_format(self, data: bytes) -> None:
        if not data.startswith(b"PK\x03\x04"):
            raise self._mismatch("not a skops zip file")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "schema.json" not in archive.namelist():
                    raise self._mismatch("a zip file without a skops schema")
        except zipfile.BadZipFile:
            raise self._mismatch("a damaged zip file") from None

    def load(self, data: bytes, meta: dict[str, Any], *, trusted_types: Sequence[str] = ()) -> SklearnModel:
        self.check_format(data)
        sio = self._import("skops.io", "skops")
        exceptions = self._import("skops.io.exceptions", "skops")
        recorded = list(meta.get("types", []))
        refused = untrusted(recorded, trusted_types)
        if refused:
            raise UntrustedTypes(refused, "the stored model")
        try:
            model = sio.loads(data, trusted=recorded)
        except exceptions.UntrustedTypesFoundException:
            found = sio.get_untrusted_types(data=data)
            raise UntrustedTypes(untrusted(found, trusted_types) or found, "the stored model") from None
        return SklearnModel(model)

    def read_file(self, path: Path, *, trusted_types: Sequence[str] = ()) -> Any:
        sio = self._import("skops.io", "skops")
        data = path.read_bytes()
        self.check_format(data)
        types = sio.get_untrusted_types(data=data)
        refused = untrusted(types, trusted_types)
        if refused:
            raise UntrustedTypes(refused, f"the file {path.name}")
        try:
            return sio.loads(data, trusted=types)
        except Exception as exc:  # skops raises many kinds on damaged files
            raise InvalidInput(f"cannot read {path.name} as a skops file: {exc}") from None
