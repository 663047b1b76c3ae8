"""blob candidates: what deletions and uploads may have left unreferenced, for the collector

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_candidates",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index(op.f("ix_blob_candidates_since"), "blob_candidates", ["since"], unique=False)
    # Blobs already in the store were found by walking it; from now on deletions record
    # what they leave. Every blob the database knows becomes a candidate once, so that
    # garbage left before this upgrade by earlier deletions is not lost to the collector
    # (those the database no longer knows at all are reported by `ociregistry fsck`).
    op.execute(
        "INSERT INTO blob_candidates (digest, size, since) "
        "SELECT digest, MAX(size), CURRENT_TIMESTAMP FROM image_blobs GROUP BY digest"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_blob_candidates_since"), table_name="blob_candidates")
    op.drop_table("blob_candidates")
