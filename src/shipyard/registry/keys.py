"""API keys for the prediction server, kept in the registry database next to the models.

A key reads ``sy_<key id>_<secret>``. The key id is public (it is shown in listings and lets the server find
the row); the secret is 256 random bits from :func:`secrets.token_urlsafe`. Only a salted HMAC-SHA256 of the
secret is stored: a high-entropy token needs no slow password hash, and the salt keeps equal secrets apart.
The full key exists only in the return value of :meth:`KeyStore.create`; it is never stored or logged.

>>> key_id, secret = parse_key("sy_0a1b2c3d_" + "x" * 43)
>>> key_id
'0a1b2c3d'
>>> parse_key("Bearer nonsense") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, RowMapping, insert, select, update
from sqlalchemy import exc as sa_exc

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.registry.store import MetadataStore, _aware, utcnow
from shipyard.registry.tables import api_keys
from shipyard.types import validate_name

SCOPES = ("admin", "feedback", "predict")
"""Every scope a key can hold; ``admin`` allows everything."""
KEY_PREFIX = "sy"
KEY_ID_BYTES = 4  # 8 hex characters: short enough to read out, and unique by constraint
SECRET_BYTES = 32
TOUCH_INTERVAL = timedelta(seconds=60)  # ``last_used_at`` is written at most this often per key

_KEY_PATTERN = re.compile(r"sy_([0-9a-f]{8})_([A-Za-z0-9_-]{16,128})")


@dataclass(frozen=True)
class ApiKey:
    """What is known about an API key, without its secret."""

    name: str
    key_id: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key has not been revoked."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether the key may act in ``scope`` (an ``admin`` key may do everything).

        >>> from datetime import UTC
        >>> key = ApiKey("app", "0a1b2c3d", ("predict",), datetime.now(UTC), "ann")
        >>> key.allows("predict"), key.allows("feedback")
        (True, False)
        """
        return "admin" in self.scopes or scope in self.scopes


@dataclass(frozen=True)
class StoredKey:
    """A key's row as the server checks it: its record plus the salt and hash of its secret."""

    key: ApiKey
    salt: str
    secret_hash: str

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` is this key's secret, compared in constant time."""
        return hmac.compare_digest(hash_secret(self.salt, secret), self.secret_hash)


def hash_secret(salt: str, secret: str) -> str:
    """The stored form of a secret: HMAC-SHA256 keyed by the key's own random salt, in hex."""
    return hmac.new(bytes.fromhex(salt), secret.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_key(plaintext: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a key in the ``sy_<key id>_<secret>`` form, else ``None``."""
    match = _KEY_PATTERN.fullmatch(plaintext.strip()) if isinstance(plaintext, str) else None
    return (match.group(1), match.group(2)) if match else None


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, checked, without repeats and sorted; at least one is needed.

    >>> validate_scopes(["predict", "feedback", "predict"])
    ('feedback', 'predict')
    >>> validate_scopes(["read"])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: unknown scope 'read'; the valid scopes are admin, feedback, predict
    """
    if isinstance(scopes, str):
        scopes = [scopes]
    chosen = set()
    for scope in scopes:
        if scope not in SCOPES:
            raise InvalidInput(f"unknown scope {scope!r}; the valid scopes are {', '.join(SCOPES)}")
        chosen.add(scope)
    if not chosen:
        raise InvalidInput(f"an API key needs at least one scope; the valid scopes are {', '.join(SCOPES)}")
    return tuple(sorted(chosen))


class KeyStore:
    """Creates, lists, revokes and checks API keys in the database of a :class:`MetadataStore`."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def create(self, name: str, scopes: Iterable[str], created_by: str) -> tuple[ApiKey, str]:
        """A new key called ``name``: its record and the full key, which is never seen again."""
        validate_name(name, "key")
        chosen = validate_scopes(scopes)
        for _attempt in range(5):
            key_id = secrets.token_hex(KEY_ID_BYTES)
            secret = secrets.token_urlsafe(SECRET_BYTES)
            salt = secrets.token_hex(16)
            now = utcnow()
            try:
                with self.store._write() as conn:
                    self._check_free(conn, name)
                    if conn.execute(select(api_keys.c.id).where(api_keys.c.key_id == key_id)).first():
                        continue  # a key id already taken: draw again
                    conn.execute(
                        insert(api_keys).values(
                            name=name,
                            key_id=key_id,
                            salt=salt,
                            secret_hash=hash_secret(salt, secret),
                            scopes=list(chosen),
                            created_at=now,
                            created_by=created_by,
                        )
                    )
            except sa_exc.IntegrityError:  # another process won a race for the name or the key id
                with self.store._read() as conn:
                    self._check_free(conn, name)
                continue
            record = ApiKey(name=name, key_id=key_id, scopes=chosen, created_at=now, created_by=created_by)
            return record, f"{KEY_PREFIX}_{key_id}_{secret}"
        raise Conflict("could not draw an unused key id; try again")  # pragma: no cover - 2**-32 per draw

    @staticmethod
    def _check_free(conn: Connection, name: str) -> None:
        taken = conn.execute(
            select(api_keys.c.key_id).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        ).scalar()
        if taken is not None:
            raise Conflict(
                f"an active API key named {name!r} already exists (key id {taken}); choose another name, "
                f"or revoke it first with 'shipyard keys revoke {name}'"
            )

    def list_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key (or every active key), oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.store._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_record(row) for row in rows]

    def revoke(self, name: str) -> ApiKey:
        """Revoke the active key called ``name``; servers refuse it within seconds."""
        validate_name(name, "key")
        now = utcnow()
        with self.store._write() as conn:
            row = (
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(*api_keys.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                revoked = conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first()
                state = "is already revoked" if revoked else "does not exist"
                raise NotFound(f"API key {name!r} {state}; run 'shipyard keys list' to see the keys")
        return _record(row)

    def find(self, key_id: str) -> StoredKey | None:
        """The key with public id ``key_id`` (revoked or not), with its hash, or ``None``."""
        with self.store._read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
        if row is None:
            return None
        return StoredKey(_record(row), row["salt"], row["secret_hash"])

    def verify(self, plaintext: str, *, touch: bool = True) -> ApiKey | None:
        """The active key that ``plaintext`` is, else ``None`` (malformed, unknown, wrong secret or revoked)."""
        parsed = parse_key(plaintext)
        if parsed is None:
            return None
        stored = self.find(parsed[0])
        if stored is None or not stored.matches(parsed[1]) or not stored.key.active:
            return None
        if touch:
            self.touch(stored.key.key_id)
        return stored.key

    def touch(self, key_id: str) -> None:
        """Record that the key was just used (at most once per :data:`TOUCH_INTERVAL`)."""
        now = utcnow()
        with self.store._write() as conn:
            conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.key_id == key_id,
                    (api_keys.c.last_used_at.is_(None)) | (api_keys.c.last_used_at < now - TOUCH_INTERVAL),
                )
                .values(last_used_at=now)
            )


def _maybe_aware(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _record(row: RowMapping) -> ApiKey:
    return ApiKey(
        name=row["name"],
        key_id=row["key_id"],
        scopes=tuple(sorted(row["scopes"] or ())),
        created_at=_aware(row["created_at"]),
        created_by=row["created_by"],
        revoked_at=_maybe_aware(row["revoked_at"]),
        last_used_at=_maybe_aware(row["last_used_at"]),
    )
