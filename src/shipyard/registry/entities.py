"""What the registry holds, as plain immutable values (no SQL, no web framework)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.rollouts.spec import DeploymentSpec


@dataclass(frozen=True)
class ModelVersion:
    """One immutable, numbered version of a registered model."""

    name: str
    version: int
    flavor: str
    artifact_uri: str
    sha256: str
    size_bytes: int
    creator: str
    created_at: datetime
    signature: dict[str, Any] | None = None
    input_example: list[dict[str, Any]] | list[list[Any]] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    flavor_meta: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    description: str = ""
    aliases: tuple[str, ...] = ()
    parent_version: int | None = None
    """The version of the same model this one was trained from (incremental training, snapshots)."""
    lineage: dict[str, Any] = field(default_factory=dict)
    """The data this version was trained on: source URI, its fingerprint, and what was consumed
    (e.g. ``{"source": "data/", "fingerprint": "...", "files": [...]}`` or a ``watermark``)."""
    profile: dict[str, Any] | None = field(default=None, repr=False)
    """The reference profile of the rows given at registration (see :mod:`shipyard.evaluation.profile`), or
    ``None`` when the version was registered without data or could not be profiled."""
    seal: str = field(default="", repr=False)
    """SHA-256 over the flavor and the artifact's SHA-256, recorded at registration: loading checks it, so
    an entry whose flavor was edited is refused (see :func:`shipyard.registry.artifacts.seal`)."""

    @property
    def ref(self) -> str:
        """The pinned reference of this version, e.g. ``fraud:3``."""
        return f"{self.name}:{self.version}"

    @property
    def parent_ref(self) -> str | None:
        """The pinned reference of the parent version, e.g. ``fraud:2``, or ``None``."""
        return None if self.parent_version is None else f"{self.name}:{self.parent_version}"


@dataclass(frozen=True)
class RegisteredModel:
    """A model name with its description, tags, aliases and newest version number."""

    name: str
    description: str
    tags: dict[str, str]
    latest_version: int
    created_at: datetime
    updated_at: datetime
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's history: who moved it, when, from which version to which."""

    model: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class NewVersion:
    """Everything the store needs to record a version whose artifact is already written and hashed."""

    flavor: str
    artifact_uri: str
    sha256: str
    size_bytes: int
    creator: str
    signature: dict[str, Any] | None = None
    input_example: list[dict[str, Any]] | list[list[Any]] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    flavor_meta: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    description: str = ""
    parent_version: int | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


@dataclass(frozen=True)
class DeploymentState:
    """One revision of a model's deployment: the spec, and who changed it, when, how and why.

    ``spec`` is :meth:`shipyard.rollouts.DeploymentSpec.to_json` output, or ``None`` for "no deployment"
    (requests follow the served alias, as before any deployment). ``action`` is one of ``deploy``,
    ``apply``, ``rollback``, ``canary-step``, ``canary-promote``, ``canary-rollback``, ``remove``.
    """

    model: str
    revision: int
    spec: dict[str, Any] | None
    action: str
    reason: str
    actor: str
    at: datetime

    def deployment_spec(self) -> DeploymentSpec | None:
        """The spec as a :class:`~shipyard.rollouts.DeploymentSpec` (``None`` for no deployment).

        >>> from datetime import UTC
        >>> state = DeploymentState("fraud", 1, {"kind": "pin", "variants": [{"version": 4, "weight": 100}]},
        ...                         "deploy", "", "ann", datetime.now(UTC))
        >>> state.deployment_spec().describe()
        'pinned to version 4'
        """
        from shipyard.rollouts.spec import DeploymentSpec

        return None if self.spec is None else DeploymentSpec.from_json(self.spec)

    def describe(self) -> str:
        """The spec in one line (``'no deployment: follows alias production'`` without one)."""
        spec = self.deployment_spec()
        return "no deployment: follows alias production" if spec is None else spec.describe()
