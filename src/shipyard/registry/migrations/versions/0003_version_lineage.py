"""Version lineage: the version a new one was trained from, and the data it consumed.

``parent_version`` is a version number of the same model (``NULL`` for a version trained from scratch
or registered from a file). ``lineage`` records the data source, its fingerprint and what was read
(files, a watermark); existing rows get ``{}``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("parent_version", sa.Integer(), nullable=True))
    op.add_column(
        "model_versions",
        sa.Column("lineage", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("lineage")
        batch.drop_column("parent_version")
