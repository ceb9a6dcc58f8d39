"""Model life-cycle use cases: register a model object or file, load a version, move aliases.

The SDK, the CLI and (later) the server all call :class:`ModelService`; it joins the flavors, the
metadata store and the artifact store, which know nothing of each other.
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from shipyard.errors import InvalidInput, UntrustedArtifact
from shipyard.flavors import Flavor, FlavorCatalog
from shipyard.flavors.base import Dumped, LoadedModel
from shipyard.registry import (
    AliasMove,
    ArtifactStore,
    MetadataStore,
    ModelVersion,
    NewVersion,
    RegisteredModel,
    sha256_hex,
)
from shipyard.registry.keys import ApiKey, KeyStore
from shipyard.scoring import Model
from shipyard.signature import Signature
from shipyard.types import DEFAULT_ALIAS, MAX_VERSION, ModelRef, validate_name

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
EXAMPLE_ROWS = 5


class ModelService:
    """Registers, finds and loads model versions.

    >>> import tempfile
    >>> from sklearn.linear_model import LinearRegression
    >>> home = tempfile.mkdtemp()
    >>> service = ModelService(MetadataStore(f"sqlite:///{home}/r.db"), ArtifactStore(home), user="doc")
    >>> mv = service.register(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]), name="line", X=[[0.0], [1.0]])
    >>> service.load("line").predict([[3.0]]).round(3).tolist()
    [6.0]
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        *,
        flavors: FlavorCatalog | None = None,
        user: str = "unknown",
        trusted_types: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.flavors = flavors or FlavorCatalog()
        self.user = user
        self.trusted_types = tuple(trusted_types)
        self.keys = KeyStore(store)

    # ------------------------------------------------------------------ registering
    def register(
        self,
        model: Any,
        name: str,
        *,
        X: Any = None,
        y: Any = None,
        signature: Signature | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        model_description: str | None = None,
        model_tags: Mapping[str, Any] | None = None,
        flavor: str | None = None,
        trusted_types: Sequence[str] = (),
        parent: int | None = None,
        lineage: Mapping[str, Any] | None = None,
        online: bool = False,
        on_commit: Callable[[Connection, ModelVersion], None] | None = None,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name`` and return that version.

        ``X`` (and ``y``) give the signature, a stored input example and the version's reference profile (the
        distribution of at most 100,000 rows of ``X`` and of the model's predictions on them, for drift
        monitoring; see :mod:`shipyard.evaluation.profile`). A model that cannot be profiled is registered
        without a profile, with a logged warning. A version registered without ``X`` but with a ``parent``
        (an online snapshot) keeps its parent's profile, marked ``inherited_from``. ``model_description`` and
        ``model_tags`` describe the model as a whole (tags are merged into its existing ones). The version
        appears in the registry only once its artifact is fully written and hashed.

        ``parent`` is the version of the same model this one was trained from (it must exist), and
        ``lineage`` a JSON record of the data it was trained on (source, fingerprint, files, watermark).

        ``online=True`` makes the version the base of online learning (see :mod:`shipyard.online`) and points
        ``production`` at it; a model that cannot learn online is refused, naming the estimator, and pipeline
        steps that will stay frozen are named in a warning. ``on_commit`` runs inside the transaction that
        records the version.
        """
        validate_name(name, "model")
        if online:
            on_commit = self._online_hook(model, on_commit)
        parent_version = None if parent is None else _version_number(parent)
        parent_info = None if parent_version is None else self.store.get_version(name, parent_version)  # fail early
        clean_lineage = _json_safe(dict(lineage or {}))
        chosen = self.flavors.get(flavor) if flavor else self.flavors.for_model(model)
        if signature is None and X is not None:
            signature = Signature.infer(X, y)
        clean_metrics = _metrics(metrics)
        clean_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        clean_params = _json_safe(dict(params or {}))
        if not clean_params and hasattr(model, "get_params") and chosen.name == "sklearn":
            clean_params = _estimator_params(model)
        trusted = (*self.trusted_types, *trusted_types)
        dumped = chosen.dump(model, trusted_types=trusted)
        suffix = chosen.suffixes[0] if chosen.suffixes else f".{chosen.name}"
        # Write and profile in workers while this thread hashes: file I/O, hashlib and numpy release the GIL.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="shipyard-artifact") as pool:
            profiling = None if X is None else pool.submit(_profile, chosen, model, dumped, trusted, X, signature, name)
            writing = pool.submit(self.artifacts.put, name, dumped.data, suffix)
            digest = sha256_hex(dumped.data)
            uri = writing.result()
            profile = _inherited_profile(parent_info) if profiling is None else profiling.result()
        new = NewVersion(
            flavor=chosen.name,
            artifact_uri=uri,
            sha256=digest,
            size_bytes=len(dumped.data),
            creator=self.user,
            signature=signature.to_dict() if signature else None,
            input_example=_example(X),
            metrics=clean_metrics,
            params=clean_params,
            tags=clean_tags,
            flavor_meta=_json_safe(dumped.meta),
            environment=_environment(chosen),
            description=description,
            parent_version=parent_version,
            lineage=clean_lineage,
            profile=profile,
        )
        try:
            return self.store.add_version(
                name,
                new,
                model_description=model_description,
                model_tags={str(k): str(v) for k, v in (model_tags or {}).items()},
                then=on_commit,
            )
        except BaseException:
            self.artifacts.delete(uri)
            raise

    def _online_hook(
        self, model: Any, also: Callable[[Connection, ModelVersion], None] | None
    ) -> Callable[[Connection, ModelVersion], None]:
        import warnings

        from shipyard.online.adapt import describe
        from shipyard.online.store import OnlineStore

        info = describe(model)  # refuses, by name, an estimator that cannot learn online
        if info.frozen:
            warnings.warn(
                f"online learning updates every step with partial_fit; these steps stay frozen as fitted: "
                f"{', '.join(info.frozen)}",
                UserWarning,
                stacklevel=3,
            )

        def hook(conn: Connection, mv: ModelVersion) -> None:
            OnlineStore.enable(conn, self, mv, info)
            if also is not None:
                also(conn, mv)

        return hook

    def register_file(
        self,
        path: Path,
        name: str,
        *,
        example: Any = None,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
        **options: Any,
    ) -> ModelVersion:
        """Register a model saved in a file (``.skops``, ``.onnx``, ``.ubj``, ``.lgb``).

        Pickle and joblib files can run arbitrary code when read, so they are refused unless
        ``trust`` is true; the model they hold is then stored again in its flavor's safe format.
        """
        validate_name(name, "model")
        if not path.is_file():
            raise InvalidInput(f"no model file at {path}")
        if path.suffix.lower() in PICKLE_SUFFIXES:
            if not trust:
                raise UntrustedArtifact(
                    f"{path.name} is a pickle/joblib file, which can run any code when loaded; shipyard refuses it. "
                    "Save the model with skops (skops.io.dump) or ONNX instead, or, if you made this file yourself, "
                    "pass trust=True (CLI: --trust)"
                )
            import joblib

            model = joblib.load(path)
        else:
            model = self.flavors.for_file(path).read_file(path, trusted_types=(*self.trusted_types, *trusted_types))
        return self.register(model, name, X=example, trusted_types=trusted_types, **options)

    # ------------------------------------------------------------------ finding and loading
    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points to (``fraud``, ``fraud:3``, ``fraud@staging``)."""
        parsed = ModelRef.parse(ref)
        return self.store.resolve(parsed.name, version=parsed.version, alias=parsed.alias)

    def load(self, ref: str | ModelRef, *, trusted_types: Sequence[str] = ()) -> Model:
        """Load the version ``ref`` points to, after checking its artifact's SHA-256."""
        info = self.resolve(ref)
        flavor = self.flavors.get(info.flavor)
        data = self.artifacts.get(info.artifact_uri, info.sha256, label=info.ref)
        loaded = flavor.load(data, info.flavor_meta, trusted_types=(*self.trusted_types, *trusted_types))
        return Model(info, loaded)

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model."""
        return self.store.list_models()

    def get_model(self, name: str) -> RegisteredModel:
        """One registered model by name."""
        return self.store.get_model(validate_name(name, "model"))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, newest first."""
        return self.store.list_versions(validate_name(name, "model"))

    # ------------------------------------------------------------------ aliases
    def set_alias(self, name: str, alias: str, version: int) -> AliasMove | None:
        """Point ``alias`` at ``version`` of ``name``; ``None`` if it already pointed there."""
        validate_name(name, "model")
        validate_name(alias, "alias")
        return self.store.set_alias(name, alias, _version_number(version), self.user)

    def delete_alias(self, name: str, alias: str) -> AliasMove:
        """Remove an alias (its history is kept)."""
        return self.store.delete_alias(validate_name(name, "model"), validate_name(alias, "alias"), self.user)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> AliasMove:
        """Move ``alias`` back to the version it pointed to before its last move."""
        return self.store.rollback(validate_name(name, "model"), validate_name(alias, "alias"), self.user)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases, oldest first (one alias if ``alias`` is given)."""
        if alias is not None:
            validate_name(alias, "alias")
        return self.store.alias_history(validate_name(name, "model"), alias)

    # ------------------------------------------------------------------ API keys
    def create_key(self, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
        """A new API key with ``scopes`` (``predict``, ``feedback``, ``admin``): its record and the full key.

        The full key is returned this once and never stored; keep it somewhere safe.
        """
        return self.keys.create(name, scopes, self.user)

    def list_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every API key (without secrets), oldest first."""
        return self.keys.list_keys(include_revoked=include_revoked)

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke the active API key called ``name``; servers refuse it within a few seconds."""
        return self.keys.revoke(name)

    def verify_key(self, plaintext: str) -> ApiKey | None:
        """The active key that ``plaintext`` is, or ``None`` if it is malformed, unknown, wrong or revoked."""
        return self.keys.verify(plaintext)


# ---------------------------------------------------------------------- helpers
def _version_number(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, str, np.integer)):
        raise InvalidInput(f"a version is a whole number from 1, got {version!r}")
    text = str(version)
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidInput(f"a version is a whole number from 1 to {MAX_VERSION}, got {version!r}")
    return int(text)


def _metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidInput(f"metric {key!r} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(f"metric {key!r} must be a finite number, got {number}")
        clean[str(key)] = number
    return clean


def _json_safe(value: Any) -> Any:
    """Turn numpy scalars, arrays, dates and other values into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    try:
        import pandas as pd

        if value is pd.NaT or (not isinstance(value, type) and bool(pd.isna(value))):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _estimator_params(model: Any) -> dict[str, Any]:
    """The estimator's own (shallow) constructor parameters, as a readable record."""
    try:
        params = model.get_params(deep=False)
    except Exception:
        return {}
    return {k: _json_safe(v) if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__
            for k, v in params.items() if k != "steps"}


def _example(X: Any) -> list[dict[str, Any]] | list[list[Any]] | None:
    if X is None:
        return None
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        head = X.head(EXAMPLE_ROWS)
        return [
            {str(col): _json_safe(value) for col, value in zip(head.columns, row, strict=True)}
            for row in head.itertuples(index=False, name=None)
        ]
    if isinstance(X, Mapping):
        return _example(pd.DataFrame(dict(X)))
    array = np.asarray(X)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    result: list[list[Any]] = _json_safe(array[:EXAMPLE_ROWS].tolist())
    return result


def _profile(
    flavor: Flavor, model: Any, dumped: Dumped, trusted: Sequence[str], X: Any, signature: Signature | None, name: str
) -> dict[str, Any] | None:
    """The reference profile of ``X`` and the model's predictions on it, or ``None`` (logged) if that fails."""
    try:
        from shipyard.evaluation.profile import profile_model

        if flavor.name == "sklearn":  # the fitted object itself: no need to read the artifact back
            from shipyard.flavors.sklearn import SklearnModel

            loaded: LoadedModel = SklearnModel(model)
        else:
            loaded = flavor.load(dumped.data, dumped.meta, trusted_types=trusted)
        profile: dict[str, Any] = _json_safe(profile_model(loaded, X, signature))
        return profile
    except Exception as exc:
        logger.warning(
            "could not profile the training data of %s (%s: %s); it is registered without a reference profile, "
            "so drift cannot be monitored for this version", name, type(exc).__name__, exc,
        )
        return None


def _inherited_profile(parent: ModelVersion | None) -> dict[str, Any] | None:
    """The reference profile a version registered without data takes from its parent (``None`` without one)."""
    if parent is None or not parent.profile:
        return None
    return {**parent.profile, "inherited_from": parent.profile.get("inherited_from", parent.version)}


def _environment(flavor: Flavor) -> dict[str, str]:
    return {"python": platform.python_version(), **flavor.library_versions()}
