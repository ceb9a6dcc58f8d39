"""The one shape every model kind shares.

A :class:`Flavor` turns a model object into bytes (``dump``) and bytes back into a
:class:`LoadedModel` (``load``). The registry stores the bytes as one artifact file, records its
SHA-256 and the flavor's small metadata dict, and hands both back on load. A flavor refuses bytes
that another flavor wrote (``check_format``), and imports its library only when first used.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from shipyard.errors import FlavorMismatch, InvalidInput, MissingDependency

Features = pd.DataFrame | np.ndarray[Any, Any]


@dataclass(frozen=True)
class Dumped:
    """What a flavor makes of a model: the artifact bytes and metadata needed to load them again."""

    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)


class LoadedModel(ABC):
    """A model ready to score features that already match its signature.

    ``predict`` always exists; ``predict_proba`` and ``partial_fit`` only where the model has them
    (``has_predict_proba`` / ``has_partial_fit`` tell).
    """

    flavor: ClassVar[str]

    def __init__(self, model: Any) -> None:
        self.model = model

    @abstractmethod
    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        """One prediction per row."""

    @property
    def has_predict_proba(self) -> bool:
        """Whether :meth:`predict_proba` is available."""
        return False

    @property
    def has_partial_fit(self) -> bool:
        """Whether :meth:`partial_fit` is available."""
        return False

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in the column order of :meth:`predict_proba`, for classifiers."""
        return None

    def predict_proba(self, features: Features) -> np.ndarray[Any, Any]:
        """Class probabilities, one row per input row and one column per class."""
        raise InvalidInput(f"this {self.flavor} model does not give probabilities; use predict instead")

    def predict_with_proba(self, features: Features) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
        """Predictions and (where the model has them) probabilities of the same rows, in as few calls as the
        model allows."""
        proba = self.predict_proba(features) if self.has_predict_proba else None
        return self.predict(features), proba

    def partial_fit(self, features: Features, targets: Sequence[Any] | np.ndarray[Any, Any]) -> None:
        """Update the model in place with a batch of labelled rows."""
        raise InvalidInput(f"this {self.flavor} model cannot learn incrementally")


class Flavor(ABC):
    """How one model kind is recognised, stored and loaded.

    Subclasses set ``name`` (stored with the version), ``suffixes`` (file endings it can register from)
    and ``modules`` (the libraries whose versions are recorded at registration).
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    modules: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""

    @abstractmethod
    def handles(self, model: object) -> bool:
        """Whether ``model`` is an object this flavor stores. Must not import heavy libraries."""

    @abstractmethod
    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        """Serialise ``model`` to artifact bytes."""

    @abstractmethod
    def check_format(self, data: bytes) -> None:
        """Raise :class:`FlavorMismatch` unless ``data`` looks like this flavor's artifact."""

    @abstractmethod
    def load(self, data: bytes, meta: dict[str, Any], *, trusted_types: Sequence[str] = ()) -> LoadedModel:
        """Build a loaded model from artifact bytes whose hash the registry has already checked."""

    def read_file(self, path: Path, *, trusted_types: Sequence[str] = ()) -> Any:
        """Read a model file the user registers by path, refusing unsafe content."""
        raise InvalidInput(f"the {self.name} flavor cannot register models from files")

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries this flavor depends on, recorded with each version."""
        return dict(_installed_versions(self.modules))

    # helpers for subclasses
    def _import(self, module: str, package: str | None = None) -> ModuleType:
        try:
            return importlib.import_module(module)
        except ImportError:
            raise MissingDependency(package or module.split(".")[0], self.extra or self.name) from None

    def _mismatch(self, found: str) -> FlavorMismatch:
        return FlavorMismatch(
            f"the artifact is not a {self.name} model ({found}); it was written by another flavor or is damaged"
        )


@functools.cache
def _installed_versions(distributions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    found = []
    for dist in distributions:
        try:
            found.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


def class_path(obj: object) -> str:
    """Fully qualified class name of ``obj``, without importing anything.

    >>> class_path(3)
    'builtins.int'
    """
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def class_paths(obj: object) -> list[str]:
    """Fully qualified names of ``obj``'s class and its bases (for cheap flavor detection)."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]
