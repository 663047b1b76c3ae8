"""usage on SQLite: a manifest is counted after its PUT, many at a time (`usage_fold`)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 21:00:00

Issue 14: the cost of exact usage. Counted in its PUT's transaction, a manifest's usage wrote
eight more pages to SQLite's WAL than the PUT itself (25 pages; `bench/usage_pages_bench.py`):
the image's, the registry's and the platform's rows, the registry's size, and the row and
digest-index entry of the manifest's own bytes, each written again by the next PUT. On SQLite,
whose writers take turns, that is time every other writer waits. So SQLite now counts a
manifest after its PUT, in a transaction that counts every manifest pushed since the last
(catalog/usage_deferred.py), where those pages are written once for all of them:

- `usage_fold` (one row): the highest manifest id counted. Every manifest at or below it is
  counted, none above it is. Filled with the highest id there is: every manifest so far was
  counted in its PUT.
- `usage_fold_below_the_newest`: a manifest deleted at or above the mark takes the mark down
  to the highest id left. SQLite gives a new row the highest id plus one (the table has no
  AUTOINCREMENT), so a manifest pushed after the newest one was deleted gets an id above the
  mark, never one taken for counted.
- `usage_blob_stored` no longer gives a manifest's own bytes their `blob_usage` row when they
  are linked into the image that holds the manifest (the manifest's row is inserted first):
  the count gives it, with the rest. Blobs uploaded or mounted keep getting it at once.

PostgreSQL, whose writers run side by side, counts in the PUT as before (the mark is kept
there too, unused, so that the schema is the same). The way down counts every manifest not
yet counted, then restores migration 0018's trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BLOB_STORED_0018 = """
    CREATE TRIGGER usage_blob_stored AFTER INSERT ON image_blobs BEGIN
        INSERT INTO blob_usage (digest, size, refs) VALUES (NEW.digest, NEW.size, 0)
        ON CONFLICT (digest) DO NOTHING;
    END
"""
_TRIGGERS = (
    """
    CREATE TRIGGER usage_blob_stored AFTER INSERT ON image_blobs
    WHEN NOT EXISTS (
        SELECT 1 FROM manifests WHERE image_id = NEW.image_id AND digest = NEW.digest
    ) BEGIN
        INSERT INTO blob_usage (digest, size, refs) VALUES (NEW.digest, NEW.size, 0)
        ON CONFLICT (digest) DO NOTHING;
    END
    """,
    """
    CREATE TRIGGER usage_fold_below_the_newest AFTER DELETE ON manifests
    WHEN OLD.id >= (SELECT manifest_id FROM usage_fold) BEGIN
        UPDATE usage_fold SET manifest_id = (SELECT coalesce(max(id), 0) FROM manifests)
        WHERE manifest_id > (SELECT coalesce(max(id), 0) FROM manifests);
    END
    """,
)

# The count of catalog/usage_deferred.py, for the way down: every manifest above the mark.
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
)


def upgrade() -> None:
    op.create_table(
        "usage_fold",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("manifest_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_usage_fold_one_row"),
    )
    op.execute(
        "INSERT INTO usage_fold (id, manifest_id) SELECT 1, coalesce(max(id), 0) FROM manifests"
    )
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS usage_blob_stored")
    for trigger in _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        mark = bind.execute(sa.text("SELECT manifest_id FROM usage_fold")).scalar_one()
        for statement in _COUNT:
            bind.execute(sa.text(statement), {"mark": mark})
        op.execute("DROP TRIGGER IF EXISTS usage_fold_below_the_newest")
        op.execute("DROP TRIGGER IF EXISTS usage_blob_stored")
        op.execute(_BLOB_STORED_0018)
    op.drop_table("usage_fold")
