"""usage on SQLite: a blob goes up a level by one row of VALUES; the quota checked as it grows

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 15:00:00

Issue 14: the cost of exact usage, counted in instructions (`bench/usage_pages_bench.py
--instructions`). SQLite runs an `INSERT ... SELECT` into a table that has triggers through a
temporary table (the SELECT's rows are stored first, so that the triggers cannot change what
it reads), and so it runs any `RETURNING`: a B-tree opened, begun, filled, read and closed,
some 15,000 instructions, more than the rest of a small statement. Migration 0018's trigger
`usage_image_added` carried a blob new to an image up to the registry with an `INSERT ...
SELECT registry_id FROM images` into `registry_usage`, which has a trigger of its own, so
every blob new to an image paid for one. Here it inserts one row of VALUES, the registry's id
read by a scalar subquery: the same row, written directly.

`usage_registry_added` checks the registry's quota in the statement that grows its size (a
`CASE` whose other branch is `RAISE(ABORT)`, the same condition on the same row), where 0018
read the row again with a statement of its own after updating it.

`usage_blob_stored` stays as 0018 made it, and so do the tables and every figure: nothing is
recounted, in either direction. PostgreSQL, whose usage has no triggers, is not changed.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = {
    "usage_image_added": """
    CREATE TRIGGER usage_image_added AFTER INSERT ON image_usage BEGIN
        UPDATE images SET size_bytes = size_bytes + NEW.size WHERE id = NEW.image_id;
        INSERT INTO registry_usage (registry_id, blob_id, size, refs)
        VALUES ((SELECT registry_id FROM images WHERE id = NEW.image_id), NEW.blob_id, NEW.size, 1)
        ON CONFLICT (registry_id, blob_id) DO UPDATE SET refs = refs + 1;
    END
    """,
    "usage_registry_added": """
    CREATE TRIGGER usage_registry_added AFTER INSERT ON registry_usage BEGIN
        UPDATE registries SET size_bytes = CASE
            WHEN quota_bytes > 0 AND size_bytes + NEW.size > quota_bytes
            THEN RAISE(ABORT, 'ociregistry: registry quota exceeded')
            ELSE size_bytes + NEW.size END
        WHERE id = NEW.registry_id;
        UPDATE blob_usage SET refs = refs + 1 WHERE id = NEW.blob_id;
    END
    """,
}

# Migration 0018's, for the way down.
_TRIGGERS_0018 = {
    "usage_image_added": """
    CREATE TRIGGER usage_image_added AFTER INSERT ON image_usage BEGIN
        UPDATE images SET size_bytes = size_bytes + NEW.size WHERE id = NEW.image_id;
        INSERT INTO registry_usage (registry_id, blob_id, size, refs)
        SELECT registry_id, NEW.blob_id, NEW.size, 1 FROM images
        WHERE id = NEW.image_id
        ON CONFLICT (registry_id, blob_id) DO UPDATE SET refs = refs + 1;
    END
    """,
    "usage_registry_added": """
    CREATE TRIGGER usage_registry_added AFTER INSERT ON registry_usage BEGIN
        UPDATE registries SET size_bytes = size_bytes + NEW.size WHERE id = NEW.registry_id;
        SELECT RAISE(ABORT, 'ociregistry: registry quota exceeded') FROM registries
        WHERE id = NEW.registry_id AND quota_bytes > 0 AND size_bytes > quota_bytes;
        UPDATE blob_usage SET refs = refs + 1 WHERE id = NEW.blob_id;
    END
    """,
}


def _replace(triggers: dict[str, str]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, trigger in triggers.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(trigger)


def upgrade() -> None:
    _replace(_TRIGGERS)


def downgrade() -> None:
    _replace(_TRIGGERS_0018)
