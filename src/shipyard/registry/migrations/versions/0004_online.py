"""Online learning: per-model learner state and lease, the feedback log, recorded predictions, alerts.

``online_models`` holds one row per model registered with ``online=True``: the offsets of its feedback
log, the snapshot holding the learner's state, the promoted version and the learner's lease.
``online_events`` is the feedback log (offsets per model, gap-free, in commit order);
``online_predictions`` keeps the input of each prediction of an online model so that a later label can
be joined to it; ``online_alerts`` records guardrail actions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"], ["models.id"], ondelete="CASCADE", name=f"fk_{table}_model_id_models"
    )


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "online_models",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("frozen", sa.JSON(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("committed_offset", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_version", sa.Integer(), nullable=False),
        sa.Column("promoted_version", sa.Integer(), nullable=False),
        sa.Column("promoted_metric", sa.Float(), nullable=True),
        sa.Column("good_version", sa.Integer(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("metric_window", sa.JSON(), nullable=False),
        sa.Column("applied_offset", sa.BigInteger(), nullable=False),
        sa.Column("live_metric", sa.Float(), nullable=True),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("expires_at", aware, nullable=True),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("updated_at", aware, nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_online_models"),
        _fk("online_models"),
    )
    op.create_table(
        "online_events",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("created_at", aware, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "offset", name="pk_online_events"),
        _fk("online_events"),
    )
    op.create_table(
        "online_predictions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_online_predictions"),
        sa.UniqueConstraint("model_id", "request_id", name="uq_online_predictions_model_id_request_id"),
        _fk("online_predictions"),
    )
    op.create_table(
        "online_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("metric", sa.Float(), nullable=True),
        sa.Column("at", aware, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_online_alerts"),
        _fk("online_alerts"),
    )
    op.create_index("ix_online_alerts_model_id", "online_alerts", ["model_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_online_alerts_model_id", table_name="online_alerts")
    op.drop_table("online_alerts")
    op.drop_table("online_predictions")
    op.drop_table("online_events")
    op.drop_table("online_models")
