"""The registry's metadata in SQL: one code path for SQLite (default) and PostgreSQL.

Version numbers come from a counter on the model row, bumped with ``UPDATE ... RETURNING`` in the same
transaction that inserts the version. The row lock serialises concurrent registrations of one model, and
a rolled-back transaction gives its number back, so numbers are distinct and gap-free. On SQLite every
write transaction starts with ``BEGIN IMMEDIATE`` so that writers queue instead of failing midway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, create_engine, event, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from shipyard.errors import AliasNotFound, ModelNotFound, NothingToRollBack, StorageError, VersionNotFound
from shipyard.registry.artifacts import seal
from shipyard.registry.entities import AliasMove, ModelVersion, NewVersion, RegisteredModel
from shipyard.registry.tables import alias_history, aliases, model_versions, models

_MIGRATION_LOCK_ID = 0x5348_4950  # "SHIP": PostgreSQL advisory lock held while migrating


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class MetadataStore:
    """Models, versions and aliases in a SQL database reached through SQLAlchemy.

    >>> store = MetadataStore("sqlite://")
    >>> [m.name for m in store.list_models()]
    []
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _make_engine(url)
        self._migrated = False
        self._migrate_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._ensure_schema()
        try:
            with self._engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
                yield conn
        except sa_exc.OperationalError as exc:
            raise StorageError(f"the registry database at {self._safe_url()} is unavailable: {exc.orig}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._ensure_schema()
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa_exc.OperationalError as exc:
            raise StorageError(f"the registry database at {self._safe_url()} is unavailable: {exc.orig}") from None

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _ensure_schema(self) -> None:
        if self._migrated:
            return
        with self._migrate_lock:
            if not self._migrated:
                upgrade_schema(self._engine)
                self._migrated = True

    # ------------------------------------------------------------------ models
    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        with self._read() as conn:
            rows = conn.execute(select(models).order_by(models.c.name)).mappings().all()
            alias_rows = conn.execute(select(aliases.c.model_id, aliases.c.name, aliases.c.version)).all()
        by_model: dict[int, dict[str, int]] = {}
        for model_id, alias, version in alias_rows:
            by_model.setdefault(model_id, {})[alias] = version
        return [_model(row, by_model.get(row["id"], {})) for row in rows]

    def get_model(self, name: str) -> RegisteredModel:
        """The model called ``name``, or :class:`ModelNotFound`."""
        with self._read() as conn:
            row = self._model_row(conn, name)
            return _model(row, self._aliases(conn, row["id"]))

    def _model_row(self, conn: Connection, name: str) -> RowMapping:
        row = conn.execute(select(models).where(models.c.name == name)).mappings().first()
        if row is None:
            raise ModelNotFound(name)
        return row

    def _aliases(self, conn: Connection, model_id: int) -> dict[str, int]:
        rows = conn.execute(
            select(aliases.c.name, aliases.c.version).where(aliases.c.model_id == model_id).order_by(aliases.c.name)
        ).all()
        return {name: version for name, version in rows}

    # ------------------------------------------------------------------ versions
    def add_version(
        self,
        name: str,
        new: NewVersion,
        *,
        model_description: str | None = None,
        model_tags: dict[str, str] | None = None,
        then: Callable[[Connection, ModelVersion], None] | None = None,
    ) -> ModelVersion:
        """Record a version whose artifact is already stored; creates the model on first use.

        The version number is assigned here, inside the transaction, so a failure anywhere leaves
        neither a row nor a used number behind. ``then`` runs inside that same transaction once the
        row is written (e.g. to move an alias and record a consumed offset atomically with it); if it
        raises, nothing is recorded.
        """
        now = utcnow()
        with self._write() as conn:
            model_id = self._get_or_create_model(conn, name, now)
            if new.parent_version is not None:
                self._require_parent(conn, model_id, name, new.parent_version)
            number = conn.execute(
                update(models)
                .where(models.c.id == model_id)
                .values(latest_version=models.c.latest_version + 1, updated_at=now)
                .returning(models.c.latest_version)
            ).scalar_one()
            model_changes: dict[str, Any] = {}
            if model_description is not None:
                model_changes["description"] = model_description
            if model_tags:
                current = conn.execute(select(models.c.tags).where(models.c.id == model_id)).scalar_one()
                model_changes["tags"] = {**(current or {}), **model_tags}
            if model_changes:
                conn.execute(update(models).where(models.c.id == model_id).values(**model_changes))
            conn.execute(
                insert(model_versions).values(
                    model_id=model_id,
                    version=number,
                    flavor=new.flavor,
                    artifact_uri=new.artifact_uri,
                    sha256=new.sha256,
                    size_bytes=new.size_bytes,
                    signature=new.signature,
                    input_example=new.input_example,
                    metrics=new.metrics,
                    params=new.params,
                    tags=new.tags,
                    flavor_meta=new.flavor_meta,
                    environment=new.environment,
                    description=new.description,
                    creator=new.creator,
                    created_at=now,
                    parent_version=new.parent_version,
                    lineage=new.lineage,
                    profile=new.profile,
                    seal=seal(new.flavor, new.sha256),
                )
            )
            created = ModelVersion(
                name=name,
                version=number,
                flavor=new.flavor,
                artifact_uri=new.artifact_uri,
                sha256=new.sha256,
                size_bytes=new.size_bytes,
                creator=new.creator,
                created_at=now,
                signature=new.signature,
                input_example=new.input_example,
                metrics=dict(new.metrics),
                params=dict(new.params),
                tags=dict(new.tags),
                flavor_meta=dict(new.flavor_meta),
                environment=dict(new.environment),
                description=new.description,
                parent_version=new.parent_version,
                lineage=dict(new.lineage),
                profile=new.profile,
                seal=seal(new.flavor, new.sha256),
            )
            if then is not None:
                then(conn, created)
        return created

    def _require_parent(self, conn: Connection, model_id: int, name: str, parent: int) -> None:
        exists = conn.execute(
            select(model_versions.c.id).where(model_versions.c.model_id == model_id, model_versions.c.version == parent)
        ).first()
        if exists is None:
            latest = conn.execute(select(models.c.latest_version).where(models.c.id == model_id)).scalar()
            raise VersionNotFound(name, parent, latest or None)

    def _get_or_create_model(self, conn: Connection, name: str, now: datetime) -> int:
        existing = conn.execute(select(models.c.id).where(models.c.name == name)).scalar()
        if existing is not None:
            return int(existing)
        try:
            with conn.begin_nested():
                return int(
                    conn.execute(
                        insert(models)
                        .values(name=name, description="", tags={}, latest_version=0, created_at=now, updated_at=now)
                        .returning(models.c.id)
                    ).scalar_one()
                )
        except sa_exc.IntegrityError:  # another process created it a moment ago
            return int(conn.execute(select(models.c.id).where(models.c.name == name)).scalar_one())

    def get_version(self, name: str, version: int) -> ModelVersion:
        """Version ``version`` of model ``name``."""
        with self._read() as conn:
            row = self._model_row(conn, name)
            return self._version(conn, row, version)

    def _version(self, conn: Connection, model_row: RowMapping, version: int) -> ModelVersion:
        row = (
            conn.execute(
                select(model_versions).where(
                    model_versions.c.model_id == model_row["id"], model_versions.c.version == version
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise VersionNotFound(model_row["name"], version, model_row["latest_version"] or None)
        pointing = tuple(a for a, v in self._aliases(conn, model_row["id"]).items() if v == version)
        return _version(model_row["name"], row, pointing)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first."""
        with self._read() as conn:
            model_row = self._model_row(conn, name)
            by_version: dict[int, list[str]] = {}
            for alias, version in self._aliases(conn, model_row["id"]).items():
                by_version.setdefault(version, []).append(alias)
            rows = (
                conn.execute(
                    select(model_versions)
                    .where(model_versions.c.model_id == model_row["id"])
                    .order_by(model_versions.c.version.desc())
                )
                .mappings()
                .all()
            )
            return [_version(name, row, tuple(by_version.get(row["version"], []))) for row in rows]

    def resolve(self, name: str, *, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """The version a reference points to: a number, an alias, or else ``production`` or the latest."""
        with self._read() as conn:
            model_row = self._model_row(conn, name)
            if version is not None:
                return self._version(conn, model_row, version)
            known = self._aliases(conn, model_row["id"])
            if alias is not None:
                if alias not in known:
                    raise AliasNotFound(name, alias, sorted(known))
                return self._version(conn, model_row, known[alias])
            if "production" in known:
                return self._version(conn, model_row, known["production"])
            latest = conn.execute(
                select(func.max(model_versions.c.version)).where(model_versions.c.model_id == model_row["id"])
            ).scalar()
            if latest is None:
                raise VersionNotFound(name, 1)
            return self._version(conn, model_row, int(latest))

    # ------------------------------------------------------------------ aliases
    def set_alias(self, name: str, alias: str, version: int, actor: str, *, action: str = "set") -> AliasMove | None:
        """Point ``alias`` at ``version``, recording the move; ``None`` if it already pointed there."""
        now = utcnow()
        with self._write() as conn:
            model_row = self._model_row(conn, name)
            self._version(conn, model_row, version)  # raises VersionNotFound
            current = conn.execute(
                select(aliases.c.version).where(aliases.c.model_id == model_row["id"], aliases.c.name == alias)
            ).scalar()
            if current == version:
                return None
            self._point(conn, model_row["id"], alias, version, actor, now, exists=current is not None)
            return self._record(conn, model_row, alias, action, current, version, actor, now)

    def point_alias(
        self, conn: Connection, name: str, alias: str, version: int, actor: str, *, action: str = "set"
    ) -> AliasMove | None:
        """Like :meth:`set_alias`, inside a transaction the caller opened (``None`` if nothing moved)."""
        model_row = self._model_row(conn, name)
        current = conn.execute(
            select(aliases.c.version).where(aliases.c.model_id == model_row["id"], aliases.c.name == alias)
        ).scalar()
        if current == version:
            return None
        self._point(conn, model_row["id"], alias, version, actor, utcnow(), exists=current is not None)
        return self._record(conn, model_row, alias, action, current, version, actor, utcnow())

    def delete_alias(self, name: str, alias: str, actor: str) -> AliasMove:
        """Remove ``alias``; the removal is kept in its history, so a rollback can restore it."""
        now = utcnow()
        with self._write() as conn:
            model_row = self._model_row(conn, name)
            known = self._aliases(conn, model_row["id"])
            if alias not in known:
                raise AliasNotFound(name, alias, sorted(known))
            conn.execute(aliases.delete().where(aliases.c.model_id == model_row["id"], aliases.c.name == alias))
            return self._record(conn, model_row, alias, "delete", known[alias], None, actor, now)

    def rollback(self, name: str, alias: str, actor: str) -> AliasMove:
        """Move ``alias`` back to where it pointed before its last move; repeated calls keep going back."""
        now = utcnow()
        with self._write() as conn:
            model_row = self._model_row(conn, name)
            moves = conn.execute(
                select(alias_history.c.action, alias_history.c.from_version)
                .where(alias_history.c.model_id == model_row["id"], alias_history.c.alias == alias)
                .order_by(alias_history.c.id)
            ).all()
            if not moves:
                raise AliasNotFound(name, alias, sorted(self._aliases(conn, model_row["id"])))
            previous: list[int | None] = []
            for action, from_version in moves:
                if action == "rollback":
                    if previous:
                        previous.pop()
                else:
                    previous.append(from_version)
            target = previous[-1] if previous else None
            current = conn.execute(
                select(aliases.c.version).where(aliases.c.model_id == model_row["id"], aliases.c.name == alias)
            ).scalar()
            if target is None:
                raise NothingToRollBack(name, alias, current)
            self._version(conn, model_row, target)
            self._point(conn, model_row["id"], alias, target, actor, now, exists=current is not None)
            return self._record(conn, model_row, alias, "rollback", current, target, actor, now)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or of one alias), oldest first."""
        with self._read() as conn:
            model_row = self._model_row(conn, name)
            query = select(alias_history).where(alias_history.c.model_id == model_row["id"])
            if alias is not None:
                query = query.where(alias_history.c.alias == alias)
            rows = conn.execute(query.order_by(alias_history.c.id)).mappings().all()
        return [
            AliasMove(
                model=name,
                alias=row["alias"],
                action=row["action"],
                from_version=row["from_version"],
                to_version=row["to_version"],
                actor=row["actor"],
                at=_aware(row["at"]),
            )
            for row in rows
        ]

    def _point(
        self, conn: Connection, model_id: int, alias: str, version: int, actor: str, now: datetime, *, exists: bool
    ) -> None:
        if exists:
            conn.execute(
                update(aliases)
                .where(aliases.c.model_id == model_id, aliases.c.name == alias)
                .values(version=version, updated_by=actor, updated_at=now)
            )
        else:
            conn.execute(
                insert(aliases).values(model_id=model_id, name=alias, version=version, updated_by=actor, updated_at=now)
            )

    def _record(
        self,
        conn: Connection,
        model_row: RowMapping,
        alias: str,
        action: str,
        from_version: int | None,
        to_version: int | None,
        actor: str,
        at: datetime,
    ) -> AliasMove:
        conn.execute(
            insert(alias_history).values(
                model_id=model_row["id"],
                alias=alias,
                action=action,
                from_version=from_version,
                to_version=to_version,
                actor=actor,
                at=at,
            )
        )
        return AliasMove(model_row["name"], alias, action, from_version, to_version, actor, at)


# ---------------------------------------------------------------------- engine and schema
def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        if database and database != ":memory:":
            # WAL with synchronous=NORMAL: never corrupts, and a power cut can lose only the newest commits,
            # whose artifacts were fsynced first, so the registry never points at a missing file.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get("shipyard_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


SCHEMA_HEAD = "0007"
"""The newest migration in ``migrations/versions`` (a test keeps the two in step)."""


def _current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except sa_exc.DBAPIError:
        return None  # no schema yet, or the database is unreachable: the full path below says which


def upgrade_schema(engine: Engine) -> None:
    """Bring the database schema to the newest Alembic revision, safely from many processes at once.

    SQLite serialises the migration with ``BEGIN IMMEDIATE``; PostgreSQL with an advisory lock. A database
    already at :data:`SCHEMA_HEAD` is recognised with one query, without importing Alembic.
    """
    if _current_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
        with engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except sa_exc.OperationalError as exc:
        shown = engine.url.render_as_string(hide_password=True)
        raise StorageError(f"cannot open the registry database at {shown}: {exc.orig}") from None


def _model(row: RowMapping, alias_map: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row["name"],
        description=row["description"] or "",
        tags=dict(row["tags"] or {}),
        latest_version=int(row["latest_version"]),
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
        aliases=alias_map,
    )


def _version(name: str, row: RowMapping, alias_names: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=int(row["version"]),
        flavor=row["flavor"],
        artifact_uri=row["artifact_uri"],
        sha256=row["sha256"],
        size_bytes=int(row["size_bytes"]),
        creator=row["creator"],
        created_at=_aware(row["created_at"]),
        signature=row["signature"],
        input_example=row["input_example"],
        metrics=dict(row["metrics"] or {}),
        params=dict(row["params"] or {}),
        tags=dict(row["tags"] or {}),
        flavor_meta=dict(row["flavor_meta"] or {}),
        environment=dict(row["environment"] or {}),
        description=row["description"] or "",
        aliases=alias_names,
        parent_version=None if row["parent_version"] is None else int(row["parent_version"]),
        lineage=dict(row["lineage"] or {}),
        profile=row["profile"],
        seal=row["seal"],
    )
