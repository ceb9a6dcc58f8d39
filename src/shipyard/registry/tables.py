"""The registry's SQL schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=dict),
    Column("latest_version", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("signature", JSON, nullable=True),
    Column("input_example", JSON, nullable=True),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("params", JSON, nullable=False, default=dict),
    Column("tags", JSON, nullable=False, default=dict),
    Column("flavor_meta", JSON, nullable=False, default=dict),
    Column("environment", JSON, nullable=False, default=dict),
    Column("description", Text, nullable=False, default=""),
    Column("creator", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Lineage (0003): the version of the same model this one was trained from, and the data it consumed.
    Column("parent_version", Integer, nullable=True),
    Column("lineage", JSON, nullable=False, default=dict, server_default=text("'{}'")),
    # Reference profile (0005): the training data's distributions, for drift monitoring.
    Column("profile", JSON, nullable=True),
    # Seal (0007): SHA-256 over the flavor and the artifact's SHA-256 (shipyard.registry.artifacts.seal).
    Column("seal", String(64), nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(63), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_by", String(255), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "name", name="uq_aliases_model_id_name"),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("alias", String(63), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_alias_history_model_alias", "model_id", "alias", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("salt", String(32), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)
# A name belongs to at most one active (not revoked) key; revoked keys keep their rows for the audit trail.
Index(
    "uq_api_keys_active_name",
    api_keys.c.name,
    unique=True,
    sqlite_where=api_keys.c.revoked_at.is_(None),
    postgresql_where=api_keys.c.revoked_at.is_(None),
)

# ---------------------------------------------------------------------- online learning (0004)
online_models = Table(
    "online_models",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("base_version", Integer, nullable=False),
    Column("task", String(16), nullable=False),  # classification, regression or clustering
    Column("classes", JSON, nullable=True),
    Column("frozen", JSON, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("generation", Integer, nullable=False),  # bumped by reset: a learner holding older state reloads
    Column("next_offset", BigInteger, nullable=False),  # the last offset handed out to a feedback event
    Column("committed_offset", BigInteger, nullable=False),  # events up to here are in snapshot_version
    Column("snapshot_version", Integer, nullable=False),
    Column("promoted_version", Integer, nullable=False),
    Column("promoted_metric", Float, nullable=True),
    Column("good_version", Integer, nullable=False),
    Column("degraded", Boolean, nullable=False),
    Column("metric_window", JSON, nullable=False),
    Column("applied_offset", BigInteger, nullable=False),  # the learner's in-memory progress (heartbeat)
    Column("live_metric", Float, nullable=True),
    Column("holder", String(255), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

online_events = Table(
    "online_events",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("offset", BigInteger, primary_key=True, autoincrement=False),
    Column("request_id", String(128), nullable=True),
    Column("features", JSON, nullable=False),
    Column("label", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

online_predictions = Table(
    "online_predictions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("features", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "request_id", name="uq_online_predictions_model_id_request_id"),
)

online_alerts = Table(
    "online_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("metric", Float, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_online_alerts_model_id", "model_id", "id"),
)

# ---------------------------------------------------------------------- rollouts (0006)
deployments = Table(
    "deployments",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("revision", Integer, nullable=False),  # bumped by every change; servers poll it
    Column("spec", JSON, nullable=True),  # DeploymentSpec.to_json(); NULL = no deployment (follow the alias)
    Column("actor", String(255), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("holder", String(255), nullable=True),  # the canary controller holding the rollout lease
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

deployment_history = Table(
    "deployment_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("spec", JSON, nullable=True),
    Column("action", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "revision", name="uq_deployment_history_model_id_revision"),
)

rollout_stats = Table(
    "rollout_stats",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("replica", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("agree", BigInteger, nullable=False),
    Column("compared", BigInteger, nullable=False),
    Column("latency_buckets", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "revision", "replica", "version", name="uq_rollout_stats_model_id_revision"),
)
