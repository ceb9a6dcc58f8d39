"""The model registry: versions, aliases and their history in SQL, artifacts in a hashed store."""

from shipyard.registry.artifacts import ArtifactStore, sha256_hex
from shipyard.registry.entities import AliasMove, DeploymentState, ModelVersion, NewVersion, RegisteredModel
from shipyard.registry.store import MetadataStore

__all__ = [
    "AliasMove",
    "ArtifactStore",
    "DeploymentState",
    "MetadataStore",
    "ModelVersion",
    "NewVersion",
    "RegisteredModel",
    "sha256_hex",
]
