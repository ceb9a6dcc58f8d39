"""Model kinds shipyard can store and load, behind one :class:`Flavor` interface.

>>> from sklearn.linear_model import LinearRegression
>>> FlavorCatalog().for_model(LinearRegression()).name
'sklearn'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

from shipyard.errors import UnsupportedModel
from shipyard.flavors.base import Dumped, Flavor, LoadedModel, class_path

__all__ = ["Dumped", "Flavor", "FlavorCatalog", "LoadedModel"]

# Detection order matters: XGBoost and LightGBM models are also scikit-learn estimators.
BUILTIN_FLAVORS: tuple[str, ...] = (
    "shipyard.flavors.xgboost:XGBoostFlavor",
    "shipyard.flavors.lightgbm:LightGBMFlavor",
    "shipyard.flavors.onnx:OnnxFlavor",
    "shipyard.flavors.river:RiverFlavor",
    "shipyard.flavors.sklearn:SklearnFlavor",
)


class FlavorCatalog:
    """The flavors known to a registry, found by name, by model object or by file ending."""

    def __init__(self, specs: tuple[str, ...] = BUILTIN_FLAVORS) -> None:
        self._specs = specs
        self._flavors: list[Flavor] | None = None

    def __iter__(self) -> Iterator[Flavor]:
        if self._flavors is None:
            flavors = []
            for spec in self._specs:
                module_name, _, class_name = spec.partition(":")
                flavors.append(getattr(importlib.import_module(module_name), class_name)())
            self._flavors = flavors
        return iter(self._flavors)

    @property
    def names(self) -> list[str]:
        """Names of every flavor, in detection order."""
        return [f.name for f in self]

    def get(self, name: str) -> Flavor:
        """The flavor called ``name``."""
        for flavor in self:
            if flavor.name == name:
                return flavor
        raise UnsupportedModel(f"unknown flavor {name!r}; known flavors: {', '.join(self.names)}")

    def for_model(self, model: object) -> Flavor:
        """The flavor that stores ``model``, or :class:`UnsupportedModel` naming the supported kinds."""
        for flavor in self:
            if flavor.handles(model):
                return flavor
        raise UnsupportedModel(
            f"cannot register a {class_path(model)}: shipyard stores scikit-learn estimators and pipelines, "
            "ONNX models, XGBoost, LightGBM and River models"
        )

    def for_file(self, path: Path) -> Flavor:
        """The flavor that reads model files with ``path``'s ending."""
        suffix = "".join(path.suffixes[-1:]).lower()
        for flavor in self:
            if suffix in flavor.suffixes:
                return flavor
        known = sorted({s for f in self for s in f.suffixes})
        raise UnsupportedModel(
            f"cannot tell what kind of model {path.name} holds from its ending {suffix or '(none)'!r}; "
            f"shipyard reads {', '.join(known)} files, and .pkl/.joblib files only with --trust"
        )
