"""Small value types shared by every layer: validated names and model references."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.errors import InvalidName, InvalidReference

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
DEFAULT_ALIAS = "production"
MAX_VERSION = 2**31 - 1


def validate_name(name: str, kind: str = "model") -> str:
    """Return ``name`` if it is a valid model or alias name, else raise :class:`InvalidName`.

    >>> validate_name("fraud-v2")
    'fraud-v2'
    >>> validate_name("../x")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidName: invalid model name '../x': it must start with a lowercase letter or digit; ...
    """
    if not isinstance(name, str) or not name:
        raise InvalidName(kind, str(name or ""), "it is empty")
    if len(name) > 63:
        raise InvalidName(kind, name, f"it is {len(name)} characters long, the limit is 63")
    if not NAME_PATTERN.fullmatch(name):
        if not re.match(r"[a-z0-9]", name):
            raise InvalidName(kind, name, "it must start with a lowercase letter or digit")
        bad = sorted({c for c in name if not re.match(r"[a-z0-9._-]", c)})
        raise InvalidName(kind, name, f"it contains {''.join(bad)!r}")
    return name


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed model reference: ``fraud``, ``fraud:3`` or ``fraud@staging``.

    A plain name means the ``production`` alias if the model has one, else its latest version.

    >>> ModelRef.parse("fraud:3")
    ModelRef(name='fraud', version=3, alias=None)
    >>> str(ModelRef.parse("fraud@staging"))
    'fraud@staging'
    """

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name, "model")
        if self.alias is not None:
            validate_name(self.alias, "alias")
        if self.version is not None and self.alias is not None:
            raise InvalidReference("a model reference takes a version or an alias, not both")
        if self.version is not None and not 1 <= self.version <= MAX_VERSION:
            raise InvalidReference(f"version numbers run from 1 to {MAX_VERSION}, got {self.version}")

    @classmethod
    def parse(cls, ref: str | ModelRef) -> ModelRef:
        """Parse a reference string once, at the edge; pass a ``ModelRef`` through unchanged."""
        if isinstance(ref, ModelRef):
            return ref
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidReference(
                "empty model reference; use NAME, NAME:VERSION or NAME@ALIAS (for example fraud@production)"
            )
        text = ref.strip()
        if "@" in text:
            name, _, alias = text.partition("@")
            return cls(name=name, alias=alias)
        if ":" in text:
            name, _, version = text.partition(":")
            if not version.isdigit():
                raise InvalidReference(
                    f"invalid model reference {ref!r}: the part after ':' must be a version number, "
                    f"such as {name}:1; use {name}@{version} for an alias"
                )
            return cls(name=name, version=int(version))
        return cls(name=text)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name
