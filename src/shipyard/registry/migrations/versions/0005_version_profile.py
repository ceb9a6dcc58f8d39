"""Reference profile: what a version saw in training, for drift monitoring.

``profile`` is the JSON built by :func:`shipyard.evaluation.profile.build_profile` from the rows given at
registration (per feature bins, quantiles, moments or category frequencies, plus the prediction and probability
distributions); ``NULL`` for versions registered without data and for every version that existed before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("profile", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("profile")
