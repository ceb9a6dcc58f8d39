"""shipyard: from a fitted model to a versioned, monitored prediction service in a few lines.

>>> import shipyard, tempfile, os
>>> os.environ["SHIPYARD_HOME"] = tempfile.mkdtemp()
>>> from sklearn.linear_model import LogisticRegression
>>> mv = shipyard.register(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="toy", X=[[0.0], [1.0]])
>>> _ = shipyard.set_alias("toy", "production", mv.version)
>>> shipyard.load("toy@production").predict([[0.9]]).tolist()
[1]
>>> del os.environ["SHIPYARD_HOME"]

Every function here uses the registry that ``SHIPYARD_*`` settings name (by default a SQLite file
and an artifact folder in ``~/.shipyard``); :func:`connect` gives a service on other settings.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard._lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.client import Client
    from shipyard.config import Settings
    from shipyard.errors import ShipyardError
    from shipyard.registry import AliasMove, ModelVersion, RegisteredModel
    from shipyard.scoring import Model
    from shipyard.service import ModelService
    from shipyard.signature import Signature
    from shipyard.types import ModelRef

# Names re-exported lazily, so that ``import shipyard`` (and every CLI start) stays cheap.
_LAZY = {
    "AliasMove": "shipyard.registry",
    "Client": "shipyard.client",
    "Model": "shipyard.scoring",
    "ModelRef": "shipyard.types",
    "ModelService": "shipyard.service",
    "ModelVersion": "shipyard.registry",
    "RegisteredModel": "shipyard.registry",
    "Settings": "shipyard.config",
    "ShipyardError": "shipyard.errors",
    "Signature": "shipyard.signature",
}


__version__ = "0.1.0"

__all__ = [
    "AliasMove",
    "Client",
    "Model",
    "ModelRef",
    "ModelService",
    "ModelVersion",
    "RegisteredModel",
    "Settings",
    "ShipyardError",
    "Signature",
    "__version__",
    "alias_history",
    "connect",
    "delete_alias",
    "get_model",
    "list_models",
    "list_versions",
    "load",
    "register",
    "register_file",
    "resolve",
    "rollback",
    "set_alias",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)

_services: dict[tuple[Any, ...], ModelService] = {}
_services_lock = threading.Lock()


def connect(settings: Settings | None = None) -> ModelService:
    """A :class:`ModelService` for ``settings`` (default: read from the environment), reused per settings."""
    from shipyard.app import build_service
    from shipyard.config import Settings

    settings = settings or Settings()
    key = (
        settings.resolved_registry_url(),
        settings.resolved_artifacts_url(),
        tuple(settings.trusted_types),
        settings.resolved_user(),
    )
    with _services_lock:
        service = _services.get(key)
        if service is None:
            service = _services[key] = build_service(settings)
        return service


def register(
    model: Any,
    name: str,
    *,
    X: Any = None,
    y: Any = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str = "",
    model_description: str | None = None,
    model_tags: Mapping[str, Any] | None = None,
    trusted_types: Sequence[str] = (),
    parent: int | None = None,
    lineage: Mapping[str, Any] | None = None,
    online: bool = False,
) -> ModelVersion:
    """Register a fitted model as the next version of ``name``; ``X``/``y`` give its signature.

    ``tags`` and ``description`` belong to the new version; ``model_tags`` and ``model_description`` to the
    model as a whole. ``parent`` names the version of ``name`` it was trained from and ``lineage`` the
    data it was trained on (see :mod:`shipyard.training`). ``online=True`` makes it learn from feedback in
    real time (see :mod:`shipyard.online`); it then needs ``partial_fit`` (or River's ``learn_one``).
    """
    return connect().register(
        model,
        name,
        X=X,
        y=y,
        metrics=metrics,
        params=params,
        tags=tags,
        description=description,
        model_description=model_description,
        model_tags=model_tags,
        trusted_types=trusted_types,
        parent=parent,
        lineage=lineage,
        online=online,
    )


def register_file(
    path: str | Path, name: str, *, example: Any = None, trust: bool = False, **options: Any
) -> ModelVersion:
    """Register a model file (``.skops``, ``.onnx``, ``.ubj``, ``.lgb``; pickle only with ``trust=True``)."""
    return connect().register_file(Path(path), name, example=example, trust=trust, **options)


def load(ref: str | ModelRef, *, trusted_types: Sequence[str] = ()) -> Model:
    """Load ``fraud`` (production alias, else latest), ``fraud:3`` or ``fraud@staging``."""
    return connect().load(ref, trusted_types=trusted_types)


def resolve(ref: str | ModelRef) -> ModelVersion:
    """The version a reference points to, without loading it."""
    return connect().resolve(ref)


def set_alias(name: str, alias: str, version: int) -> AliasMove | None:
    """Point ``alias`` of model ``name`` at ``version``."""
    return connect().set_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> AliasMove:
    """Remove an alias; its history is kept."""
    return connect().delete_alias(name, alias)


def rollback(name: str, alias: str = "production") -> AliasMove:
    """Move ``alias`` back to the version it pointed to before its last move."""
    return connect().rollback(name, alias)


def alias_history(name: str, alias: str | None = None) -> list[AliasMove]:
    """Every move of a model's aliases, oldest first."""
    return connect().alias_history(name, alias)


def list_models() -> list[RegisteredModel]:
    """Every registered model."""
    return connect().list_models()


def get_model(name: str) -> RegisteredModel:
    """One registered model, with its aliases."""
    return connect().get_model(name)


def list_versions(name: str) -> list[ModelVersion]:
    """Every version of a model, newest first."""
    return connect().list_versions(name)
