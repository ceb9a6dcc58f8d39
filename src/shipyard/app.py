"""Composition root: builds shipyard's services from :class:`~shipyard.config.Settings`."""

from __future__ import annotations

from shipyard.config import Settings
from shipyard.flavors import FlavorCatalog
from shipyard.registry import ArtifactStore, MetadataStore
from shipyard.service import ModelService


def build_service(settings: Settings | None = None) -> ModelService:
    """A :class:`ModelService` on the registry and artifact store that ``settings`` name.

    >>> import tempfile
    >>> service = build_service(Settings(home=tempfile.mkdtemp()))
    >>> service.list_models()
    []
    """
    settings = settings or Settings()
    return ModelService(
        MetadataStore(settings.resolved_registry_url()),
        ArtifactStore(settings.resolved_artifacts_url()),
        flavors=FlavorCatalog(),
        user=settings.resolved_user(),
        trusted_types=settings.trusted_types,
    )
