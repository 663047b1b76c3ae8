"""usage on SQLite: the count after the PUT adds references without removing duplicates

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 23:55:00

Issue 14: the cost of exact usage. The count of catalog/usage_deferred.py took a manifest's
blobs with a `UNION`, which removed a blob named twice in one manifest at the price of a
temporary B-tree: 22,500 of its 122,000 instructions per manifest (callgrind, 64 manifests a
count). From now on a manifest that names a blob twice is counted in its PUT
(`usage_deferred.counted_later`), so the count takes what it finds (`UNION ALL`).

Manifests pushed before this revision and not counted yet may name a blob twice: they are
counted here, with the `UNION` (migration 0022's count), and the mark moves past them. Nothing
to undo on the way down: the old count takes whatever is pending after.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migration 0022's count, as catalog/usage_deferred.py counted until this revision.
_COUNT = (
    """
    INSERT INTO blob_usage (digest, size, refs)
    SELECT digest, size, 0 FROM manifests WHERE id > :mark ORDER BY id
    ON CONFLICT (digest) DO NOTHING
    """,
    """
    INSERT INTO image_usage (image_id, blob_id, size, refs)
    SELECT p.image_id, b.id, b.size, 1 FROM (
        SELECT id, image_id, digest FROM manifests WHERE id > :mark
        UNION
        SELECT m.id, m.image_id, r.digest FROM manifests AS m
        JOIN manifest_references AS r ON r.manifest_id = m.id AND r.kind = 'blob'
        WHERE m.id > :mark
    ) AS p JOIN blob_usage AS b ON b.digest = p.digest
    WHERE true
    ON CONFLICT (image_id, blob_id) DO UPDATE SET refs = refs + 1
    """,
    "UPDATE usage_fold SET manifest_id = (SELECT coalesce(max(id), 0) FROM manifests)",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    mark = bind.execute(sa.text("SELECT manifest_id FROM usage_fold")).scalar_one()
    for statement in _COUNT:
        bind.execute(sa.text(statement), {"mark": mark})


def downgrade() -> None:
    pass
