"""Version seal: bind each version's flavor to its artifact.

``seal`` is the SHA-256 of ``"shipyard-artifact-seal/1\\0<flavor>\\0<sha256>"``
(:func:`shipyard.registry.artifacts.seal`). Loading checks it before reading the artifact, so an entry
whose flavor was edited afterwards (to hand a model's bytes to another flavor's loader) is refused.
Every existing version is sealed with the flavor and hash it has now, so existing registries keep loading.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SCHEME = "shipyard-artifact-seal/1"  # frozen here: later schemes get their own migration


def _seal(flavor: str, sha256: str) -> str:
    return hashlib.sha256(f"{_SCHEME}\0{flavor}\0{sha256}".encode()).hexdigest()


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("seal", sa.String(64), nullable=True))
    versions = sa.table(
        "model_versions",
        sa.column("id", sa.Integer()),
        sa.column("flavor", sa.String(32)),
        sa.column("sha256", sa.String(64)),
        sa.column("seal", sa.String(64)),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(versions.c.id, versions.c.flavor, versions.c.sha256)).all()
    for row_id, flavor, sha256 in rows:
        conn.execute(sa.update(versions).where(versions.c.id == row_id).values(seal=_seal(flavor, sha256)))
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("seal", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("seal")
