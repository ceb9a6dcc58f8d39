"""Rollouts: the deployment of each model (how its traffic is split), its history, and per-replica counters.

``deployments`` holds one row per model with a deployment: the spec (``DeploymentSpec.to_json()``, NULL
for "no deployment"), a revision bumped by every change (servers poll it) and the rollout lease of the
canary controller. ``deployment_history`` records every change (who, when, action, spec, reason).
``rollout_stats`` keeps each replica's cumulative counters per model, revision and version.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"], ["models.id"], ondelete="CASCADE", name=f"fk_{table}_model_id_models"
    )


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "deployments",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("updated_at", aware, nullable=False),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("expires_at", aware, nullable=True),
        sa.PrimaryKeyConstraint("model_id", name="pk_deployments"),
        _fk("deployments"),
    )
    op.create_table(
        "deployment_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", aware, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_history"),
        sa.UniqueConstraint("model_id", "revision", name="uq_deployment_history_model_id_revision"),
        _fk("deployment_history"),
    )
    op.create_table(
        "rollout_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("agree", sa.BigInteger(), nullable=False),
        sa.Column("compared", sa.BigInteger(), nullable=False),
        sa.Column("latency_buckets", sa.JSON(), nullable=False),
        sa.Column("updated_at", aware, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_stats"),
        sa.UniqueConstraint(
            "model_id", "revision", "replica", "version", name="uq_rollout_stats_model_id_revision"
        ),
        _fk("rollout_stats"),
    )


def downgrade() -> None:
    op.drop_table("rollout_stats")
    op.drop_table("deployment_history")
    op.drop_table("deployments")
