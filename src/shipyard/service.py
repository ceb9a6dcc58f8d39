"""Model life-cycle use cases: register a model object or file, load a version, move aliases.

The SDK, the CLI and (later) the server all call :class:`ModelService`; it joins the flavors, the
metadata store and the artifact store, which know nothing of each other.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from shipyard.errors import AliasNotFound, Conflict, InvalidInput, UntrustedArtifact
from shipyard.flavors import Flavor, FlavorCatalog
from shipyard.flavors.base import Dumped, LoadedModel
from shipyard.registry import (
    AliasMove,
    ArtifactStore,
    DeploymentState,
    MetadataStore,
    ModelVersion,
    NewVersion,
    RegisteredModel,
    sha256_hex,
)
from shipyard.registry.deployments import DeploymentStore, last_alias_move, rollback_target
from shipyard.registry.keys import ApiKey, KeyStore
from shipyard.rollouts.spec import DeploymentSpec, RolloutCounters
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
        self.deployments = DeploymentStore(store)

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
        parent_version = None if parent is None else _version_number(parent)
        parent_info = None if parent_version is None else self.store.get_version(name, parent_version)  # fail early
        clean_lineage = _json_safe(dict(lineage or {}))
        chosen = self.flavors.get(flavor) if flavor else self.flavors.for_model(model)
        trusted = (*self.trusted_types, *trusted_types)
        # The flavor checks every type the model holds before anything of it runs (online checks, parameters,
        # the profile's predictions): an untrusted type is refused here, and nothing has been written.
        dumped = chosen.dump(model, trusted_types=trusted)
        if online:
            on_commit = self._online_hook(model, on_commit)
        if signature is None and X is not None:
            signature = Signature.infer(X, y)
        clean_metrics = _metrics(metrics)
        clean_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        clean_params = _json_safe(dict(params or {}))
        if not clean_params and hasattr(model, "get_params") and chosen.name == "sklearn":
            clean_params = _estimator_params(model)
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
        """Load the version ``ref`` points to, after checking its artifact's SHA-256 and that its flavor is the
        one it was registered with."""
        info = self.resolve(ref)
        flavor = self.flavors.get(info.flavor)
        data = self.artifacts.read(info)
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

    # ------------------------------------------------------------------ deployments (rollouts)
    def deploy(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        action: str = "deploy",
        reason: str = "",
        expected_revision: int | None = None,
    ) -> DeploymentState:
        """Make ``spec`` the deployment of ``name`` (a new revision, recorded in its history with the actor).

        Every version the spec needs must exist (:class:`VersionNotFound` names the first missing one). A
        canary without an incumbent, or a shadow without a primary, takes the version served now: the
        current deployment's primary, else the ``production`` alias. The current row and the history row
        are written in one transaction; with ``expected_revision`` (0 = none yet) a different current
        revision raises :class:`Conflict` and nothing is written.
        """
        validate_name(name, "model")
        if not isinstance(spec, DeploymentSpec):
            raise InvalidInput(f"a deployment is a DeploymentSpec, got {type(spec).__name__}")

        def resolve(conn: Connection, model_row: Any, current: DeploymentState | None) -> dict[str, Any]:
            resolved = spec
            if not resolved.is_resolved:
                resolved = resolved.resolved(self._served_now(conn, model_row, current))
            if resolved.kind == "canary" and resolved.status == "running" and resolved.step_started_at is None:
                resolved = replace(resolved, step_started_at=time.time())
            for version in resolved.versions():
                self.store._version(conn, model_row, version)  # VersionNotFound names it
            if resolved.kind == "alias" and resolved.alias != DEFAULT_ALIAS:
                known = self.store._aliases(conn, model_row["id"])
                if resolved.alias not in known:
                    raise AliasNotFound(name, str(resolved.alias), sorted(known))
            return resolved.to_json()

        return self.deployments.write(
            name, resolve, action=action, reason=reason, actor=self.user, expected_revision=expected_revision
        )

    def served_version(self, name: str) -> int:
        """The version ``name`` serves now, as a canary or shadow deployment would start from it: the current
        deployment's primary, else the version of the alias it follows (``production``). :class:`Conflict`
        when there is neither."""
        validate_name(name, "model")
        with self.store._read() as conn:
            model_row = self.store._model_row(conn, name)
            return self._served_now(conn, model_row, self.deployments._current(conn, model_row))

    def _served_now(self, conn: Connection, model_row: Any, current: DeploymentState | None) -> int:
        spec = current.deployment_spec() if current is not None else None
        if spec is not None and spec.kind != "alias" and spec.primary is not None:
            return spec.primary
        alias = str(spec.alias) if spec is not None and spec.alias else DEFAULT_ALIAS
        known = self.store._aliases(conn, model_row["id"])
        if alias in known:
            return known[alias]
        name = model_row["name"]
        raise Conflict(
            f"model {name!r} has no deployment and no {alias!r} alias, so no version is served now to start from; "
            f"name it (canary: --incumbent VERSION; shadow: --version VERSION) or set the alias first with "
            f"'shipyard alias set {name} {alias} VERSION'"
        )

    def deployment(self, name: str) -> DeploymentState | None:
        """The running revision of ``name``'s deployment (``None`` if it never had one; ``spec`` ``None``
        once rolled back to "no deployment")."""
        return self.deployments.current(validate_name(name, "model"))

    def deployment_history(self, name: str) -> list[DeploymentState]:
        """Every revision of ``name``'s deployment, oldest first: who, when, action, spec and reason."""
        return self.deployments.history(validate_name(name, "model"))

    def deployment_revisions(self) -> dict[str, int]:
        """Model name -> deployment revision, for every model with one (cheap: servers poll it)."""
        return self.deployments.revisions()

    def rollback_deployment(self, name: str) -> DeploymentState:
        """Restore the deployment state before the last change (action ``rollback``); repeated calls go further.

        Automatic canary changes are part of the canary's change, so the state restored is the one before the
        canary started. Rolling back a promoted canary also moves ``production`` back, when its last move was
        the promotion. :class:`Conflict` when there is nothing to go back to.
        """
        validate_name(name, "model")
        undo_promotion: list[tuple[str, int]] = []

        def resolve(conn: Connection, model_row: Any, current: DeploymentState | None) -> dict[str, Any] | None:
            history = self.deployments._history(conn, model_row)
            found, target = rollback_target(history)
            if not found:
                where = "it has no deployment history" if not history else "its history is used up"
                raise Conflict(
                    f"the deployment of {name!r} has no earlier state to go back to ({where}); "
                    f"deploy one with 'shipyard deploy {name} --version N'"
                )
            if current is not None and current.action == "canary-promote" and len(history) >= 2:
                before = history[-2].deployment_spec()
                if before is not None and before.canary is not None:
                    undo_promotion.append((DEFAULT_ALIAS, before.canary.candidate))
            spec = None if target is None else target.spec
            restored = DeploymentSpec.from_json(spec) if spec is not None else None
            if restored is not None and restored.kind == "canary" and restored.status == "running":
                return restored.at_step(restored.step, started_at=time.time()).to_json()
            return spec

        def then(conn: Connection, model_row: Any, current: Any, spec: Any) -> None:
            for alias, candidate in undo_promotion:
                last = last_alias_move(conn, model_row["id"], alias)
                promoted = last is not None and last["action"] == "canary-promote" and last["to_version"] == candidate
                if promoted and last is not None and last["from_version"] is not None:
                    self.store.point_alias(conn, name, alias, last["from_version"], self.user, action="rollback")

        return self.deployments.write(name, resolve, action="rollback", reason="", actor=self.user, then=then)

    def promote_canary(self, name: str, state: DeploymentState, reason: str) -> DeploymentState:
        """End the canary of ``state`` by promotion, in one transaction: ``production`` moves to the candidate
        and the deployment becomes "follow production" (action ``canary-promote``). :class:`Conflict` if the
        deployment changed since ``state``."""
        validate_name(name, "model")
        spec = state.deployment_spec()
        if spec is None or spec.kind != "canary" or spec.canary is None:
            raise Conflict(f"the deployment of {name!r} at revision {state.revision} is not a canary")
        candidate = spec.canary.candidate

        def resolve(conn: Connection, model_row: Any, current: DeploymentState | None) -> dict[str, Any]:
            self.store._version(conn, model_row, candidate)
            return DeploymentSpec(kind="alias", alias=DEFAULT_ALIAS, reason=reason).to_json()

        def then(conn: Connection, model_row: Any, current: Any, new: Any) -> None:
            self.store.point_alias(conn, name, DEFAULT_ALIAS, candidate, self.user, action="canary-promote")

        return self.deployments.write(
            name, resolve, action="canary-promote", reason=reason, actor=self.user,
            expected_revision=state.revision, then=then,
        )

    def record_rollout_stats(
        self, name: str, revision: int, replica: str, counters: Mapping[int, RolloutCounters]
    ) -> None:
        """Upsert one replica's cumulative counters per version for deployment ``revision`` of ``name``."""
        self.deployments.record_stats(validate_name(name, "model"), int(revision), str(replica), dict(counters))

    def rollout_stats(self, name: str, revision: int) -> dict[int, RolloutCounters]:
        """The counters of deployment ``revision`` of ``name`` per version, summed over every replica."""
        total: dict[int, RolloutCounters] = {}
        for row in self.deployments.stats(validate_name(name, "model"), int(revision)):
            counters = RolloutCounters(
                requests=int(row["requests"]),
                errors=int(row["errors"]),
                agree=int(row["agree"]),
                compared=int(row["compared"]),
                latency_buckets=[int(n) for n in row["latency_buckets"]],
            )
            version = int(row["version"])
            total[version] = total[version] + counters if version in total else counters
        return dict(sorted(total.items()))

    def acquire_rollout_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew ``name``'s rollout lease (one canary controller per model); False if held by another."""
        return self.deployments.acquire_lease(validate_name(name, "model"), holder, seconds)

    def release_rollout_lease(self, name: str, holder: str) -> None:
        """Give up ``name``'s rollout lease if ``holder`` has it."""
        self.deployments.release_lease(validate_name(name, "model"), holder)

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
