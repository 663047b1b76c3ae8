"""usage carried up its levels by triggers on SQLite

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 11:30:00

Issue 14: the cost of exact usage. On SQLite a manifest push ran one statement per blob and
level (image, registry, platform) and two for the image's and the registry's sizes, each a
round trip through Python's sqlite3 for a few microseconds of SQLite's work: about ten per
manifest PUT, and one more per uploaded blob (its `blob_usage` row, awaiting garbage
collection until a manifest references it). Triggers now carry a reference up the levels
inside SQLite, so catalog/usage.py runs one statement per manifest (the image level, for all
its blobs) and none per blob upload:

- `usage_blob_stored`: a blob linked into an image has a `blob_usage` row from then on (0
  references: awaiting garbage collection), as `usage.note_stored` wrote it;
- `usage_image_added`: a blob new to an image (an `image_usage` row inserted; one counted
  again is an upsert's update and fires nothing) adds its size to the image and one
  reference at the registry level;
- `usage_registry_added`: a blob new to a registry adds its size to the registry and one
  reference at the platform level; when that takes the registry above its quota,
  `RAISE(ABORT)` undoes the statement and the caller refuses the push (403 DENIED), decided
  in the database as before.

Removing references stays in catalog/usage.py (it locks rows in digest order on PostgreSQL and
deletes the rows left with none). PostgreSQL runs the same upkeep as one statement of
data-modifying CTEs (usage._POSTGRESQL_ADD), which costs it one round trip: nothing changes
there. Nothing is recounted: the figures stay as they were.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = {
    "usage_blob_stored": """
    CREATE TRIGGER usage_blob_stored AFTER INSERT ON image_blobs BEGIN
        INSERT INTO blob_usage (digest, size, refs) VALUES (NEW.digest, NEW.size, 0)
        ON CONFLICT (digest) DO NOTHING;
    END
    """,
    "usage_image_added": """
    CREATE TRIGGER usage_image_added AFTER INSERT ON image_usage BEGIN
        UPDATE images SET size_bytes = size_bytes + NEW.size WHERE id = NEW.image_id;
        INSERT INTO registry_usage (registry_id, digest, size, refs)
        SELECT registry_id, NEW.digest, NEW.size, 1 FROM images WHERE id = NEW.image_id
        ON CONFLICT (registry_id, digest) DO UPDATE SET refs = refs + 1;
    END
    """,
    "usage_registry_added": """
    CREATE TRIGGER usage_registry_added AFTER INSERT ON registry_usage BEGIN
        UPDATE registries SET size_bytes = size_bytes + NEW.size WHERE id = NEW.registry_id;
        SELECT RAISE(ABORT, 'ociregistry: registry quota exceeded') FROM registries
        WHERE id = NEW.registry_id AND quota_bytes > 0 AND size_bytes > quota_bytes;
        INSERT INTO blob_usage (digest, size, refs) VALUES (NEW.digest, NEW.size, 1)
        ON CONFLICT (digest) DO UPDATE SET refs = refs + 1;
    END
    """,
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in _TRIGGERS.values():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
