"""Typed settings, read from ``SHIPYARD_*`` environment variables and passed in explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Where shipyard keeps its registry and artifacts, and what it trusts.

    >>> s = Settings(home="/tmp/sy")
    >>> s.resolved_registry_url()
    'sqlite:////tmp/sy/registry.db'
    """

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    home: Path = Field(
        default=Path("~/.shipyard"),
        description="Folder that holds the SQLite registry, the artifact folder and logs.",
    )
    registry_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry database; default a SQLite file in `home`. "
        "Example: postgresql+psycopg://user@host/db",
    )
    artifacts_url: str | None = Field(
        default=None,
        description="Folder or fsspec URL for model artifacts; default `home`/artifacts.",
    )
    trusted_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra fully qualified type names that skops may load, comma separated in the environment.",
    )
    user: str | None = Field(
        default=None,
        description="Name recorded as creator of versions and mover of aliases; default the OS user.",
    )

    def resolved_home(self) -> Path:
        """The home folder with ``~`` expanded."""
        return self.home.expanduser()

    def resolved_registry_url(self) -> str:
        """The registry database URL, defaulting to ``sqlite:///<home>/registry.db``."""
        if self.registry_url:
            return self.registry_url
        return f"sqlite:///{self.resolved_home() / 'registry.db'}"

    def resolved_artifacts_url(self) -> str:
        """The artifact store location, defaulting to ``<home>/artifacts``."""
        if self.artifacts_url:
            return self.artifacts_url
        return str(self.resolved_home() / "artifacts")

    def resolved_user(self) -> str:
        """Who is acting: the configured user or the operating-system login name."""
        if self.user:
            return self.user
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    @field_validator("trusted_types", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
