"""scikit-learn estimators and pipelines, stored with skops and loaded with an explicit trusted-types list."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput, UntrustedArtifact, UntrustedTypes
from shipyard.flavors._sklearn_arrays import array_twin, numeric_block
from shipyard.flavors._sklearn_checks import check_loaded, file_reading_vectorizers
from shipyard.flavors.base import Dumped, Features, Flavor, LoadedModel, class_paths
from shipyard.flavors.trust import declared_untrusted, untrusted

# Classifiers whose predict() is by definition classes_[argmax(predict_proba())], so one call gives both.
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "ExtraTreesClassifier",
        "GaussianNB",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "LogisticRegression",
        "LogisticRegressionCV",
        "RandomForestClassifier",
    }
)


class SklearnModel(LoadedModel):
    """A loaded scikit-learn estimator or pipeline."""

    flavor = "sklearn"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        classes = getattr(model, "classes_", None)
        self._argmax_classes = (
            np.asarray(classes)
            if type(final).__name__ in _ARGMAX_CLASSIFIERS and classes is not None and np.ndim(classes) == 1
            else None
        )
        self._twin: Any | None = None
        self._names: list[Any] | None = None
        self._twin_built = False

    @property
    def takes_arrays(self) -> bool:
        """Whether plain arrays in training column order score exactly as frames do (no names needed)."""
        self._build_twin()
        return self._twin is not None

    def _build_twin(self) -> None:
        if not self._twin_built:
            self._twin = array_twin(self.model)
            names = getattr(self.model, "feature_names_in_", None)
            self._names = None if names is None else list(names)
            self._twin_built = True

    def _scorer(self, features: Features) -> tuple[Any, Features]:
        """The estimator to call and what to give it: the array twin and the frame's numeric block when the
        frame allows it (see :mod:`shipyard.flavors._sklearn_arrays`), else the model and the features."""
        self._build_twin()
        if self._twin is None:
            return self.model, features
        if isinstance(features, np.ndarray):
            return self._twin, features
        block = numeric_block(features, self._names)
        if block is None:
            if hasattr(features, "columns") and features.columns.tolist() == self._names:
                self._twin = None  # the signature's columns are not all numeric: frames every time
            return self.model, features
        return self._twin, block

    def _call(self, method: str, features: Features) -> np.ndarray[Any, Any]:
        """``model.<method>(features)`` the cheapest safe way: on the array twin where it applies, and with
        scikit-learn's finiteness check skipped when the array was just checked to be finite (a missing
        value still reaches scikit-learn's own check, which rejects or handles it as the model does)."""
        model, given = self._scorer(features)
        twin = model is self._twin and isinstance(given, np.ndarray) and given.dtype.kind == "f"
        if twin and bool(np.isfinite(given).all()):
            import sklearn

            with sklearn.config_context(assume_finite=True):
                return np.asarray(getattr(model, method)(given))
        return np.asarray(getattr(model, method)(given))

    def predict_with_proba(self, features: Features) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
        if self._argmax_classes is None:
            return super().predict_with_proba(features)
        proba = self._call("predict_proba", features)
        return self._argmax_classes[np.argmax(proba, axis=1)], proba

    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        return self._call("predict", features)

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
        return self._call("predict_proba", features)

    def partial_fit(self, features: Features, targets: Any) -> None:
        if not self.has_partial_fit:
            super().partial_fit(features, targets)
            return
        classes = getattr(self.model, "classes_", None)
        if classes is not None:
            self.model.partial_fit(features, targets, classes=classes)
        else:
            self.model.partial_fit(features, targets)
        self._twin_built = False  # fitting rebinds the fitted arrays: the twin is rebuilt from the new ones


class SklearnFlavor(Flavor):
    """Stores scikit-learn objects with skops; only trusted types are ever rebuilt.

    >>> from sklearn.linear_model import LinearRegression
    >>> flavor = SklearnFlavor()
    >>> data = flavor.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])).data
    >>> flavor.load(data, {}).predict(np.array([[2.0]])).round(3).tolist()
    [4.0]
    """

    name = "sklearn"
    suffixes = (".skops",)
    modules = ("scikit-learn", "skops", "numpy", "scipy", "pandas")
    extra = "sklearn"

    def handles(self, model: object) -> bool:
        return any(path.startswith("sklearn.") for path in class_paths(model))

    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        """Serialise with skops, refusing a model that holds any type outside the trusted names.

        Two checks, both before anything of the model runs: first the estimator's classes and the callables
        in its parameters (a custom transformer, ``FunctionTransformer(func=os.system)``), before skops'
        serialiser touches them; then skops' audit of the bytes themselves, the same audit every load
        repeats (:mod:`shipyard.flavors.trust`).
        """
        refused = declared_untrusted(model, trusted_types)
        if refused:
            raise UntrustedTypes(refused, "the model")
        readers = file_reading_vectorizers(model)
        if readers:
            raise UntrustedArtifact(
                f"the model holds {', '.join(readers)}, which reads the files its input names, so a request "
                "could read files of the server; use input='content' (the default) and pass the text itself"
            )
        sio = self._import("skops.io", "skops")
        data: bytes = sio.dumps(model)
        refused = untrusted(sio.get_untrusted_types(data=data), trusted_types)
        if refused:
            raise UntrustedTypes(refused, "the model")
        return Dumped(data=data)

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
        """Audit the bytes with skops and rebuild them only if every type in them is trusted."""
        return SklearnModel(self._read(data, trusted_types, "the stored model"))

    def read_file(self, path: Path, *, trusted_types: Sequence[str] = ()) -> Any:
        return self._read(path.read_bytes(), trusted_types, f"the file {path.name}")

    def _read(self, data: bytes, trusted_types: Sequence[str], where: str) -> Any:
        self.check_format(data)
        sio = self._import("skops.io", "skops")
        try:
            types = sio.get_untrusted_types(data=data)
        except Exception as exc:  # skops raises many kinds on damaged files
            raise InvalidInput(f"cannot read {where} as a skops file: {exc}") from None
        refused = untrusted(types, trusted_types)
        if refused:
            raise UntrustedTypes(refused, where)
        try:
            model = sio.loads(data, trusted=types)
        except Exception as exc:
            raise InvalidInput(f"cannot read {where} as a skops file: {exc}") from None
        check_loaded(model, where)
        return model
