"""usage on SQLite: a registry's size grown once a statement; the usage rows without foreign keys

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 02:40:00

Issue 14: the cost of exact usage, counted statement by statement with callgrind (64 pending
manifests a count, each a new manifest and config and two layers the image held already):

- `usage_registry_added` rewrote the registry's row, a wide one, for each blob new to the
  registry: two per manifest, 6,000 instructions each. It now adds the blob's size to the
  registry's line in `usage_delta` (a narrow row, its key the registry's id), and whoever
  inserted the references applies the lines to `registries.size_bytes` once, at the end of
  its statement, and empties the table (`usage_deferred.grow_sizes`): 3,600 instructions a
  manifest less. The quota is checked there too, on the registry's grown size
  (`usage.add_manifest`), where the trigger checked it as the size grew: the same condition,
  since within one statement a size only grows. `usage_delta` is empty outside a
  transaction that counts.
- `image_usage` and `registry_usage` referenced their image and registry with `ON DELETE
  CASCADE`, so SQLite looked the parent up for each row inserted: 3,700 instructions a
  manifest. The tables are rebuilt without the foreign keys, and a delete trigger on
  `images` and one on `registries` do what the cascade did (SQLite gives a new row the
  highest id plus one, so rows left behind by a deleted image would be counted for the next).

PostgreSQL, whose usage has no triggers and counts in the PUT, is not changed: its foreign
keys stay. Nothing is recounted, in either direction.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = (
    """
    CREATE TRIGGER usage_image_added AFTER INSERT ON image_usage BEGIN
        UPDATE images SET size_bytes = size_bytes + NEW.size WHERE id = NEW.image_id;
        INSERT INTO registry_usage (registry_id, blob_id, size, refs)
        VALUES ((SELECT registry_id FROM images WHERE id = NEW.image_id), NEW.blob_id, NEW.size, 1)
        ON CONFLICT (registry_id, blob_id) DO UPDATE SET refs = refs + 1;
    END
    """,
    """
    CREATE TRIGGER usage_registry_added AFTER INSERT ON registry_usage BEGIN
        INSERT INTO usage_delta (registry_id, bytes) VALUES (NEW.registry_id, NEW.size)
        ON CONFLICT (registry_id) DO UPDATE SET bytes = bytes + excluded.bytes;
        UPDATE blob_usage SET refs = refs + 1 WHERE id = NEW.blob_id;
    END
    """,
    """
    CREATE TRIGGER usage_image_removed AFTER DELETE ON images BEGIN
        DELETE FROM image_usage WHERE image_id = OLD.id;
    END
    """,
    """
    CREATE TRIGGER usage_registry_removed AFTER DELETE ON registries BEGIN
        DELETE FROM registry_usage WHERE registry_id = OLD.id;
    END
    """,
)

# Migration 0020's, for the way down.
_TRIGGERS_0020 = (
    _TRIGGERS[0],
    """
    CREATE TRIGGER usage_registry_added AFTER INSERT ON registry_usage BEGIN
        UPDATE registries SET size_bytes = CASE
            WHEN quota_bytes > 0 AND size_bytes + NEW.size > quota_bytes
            THEN RAISE(ABORT, 'ociregistry: registry quota exceeded')
            ELSE size_bytes + NEW.size END
        WHERE id = NEW.registry_id;
        UPDATE blob_usage SET refs = refs + 1 WHERE id = NEW.blob_id;
    END
    """,
)
_NAMES = (
    "usage_image_added",
    "usage_registry_added",
    "usage_image_removed",
    "usage_registry_removed",
)

# (table, the key column before the blob, the table it belongs to)
_LEVELS = (("image_usage", "image_id", "images"), ("registry_usage", "registry_id", "registries"))


def _rebuild(foreign_keys: bool) -> None:
    """The two levels again, their rows as they are, with or without their foreign key. The
    triggers go first: SQLite checks every trigger's tables when a table is renamed."""
    for name in _NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table, key, parent in _LEVELS:
        reference = f" REFERENCES {parent} (id) ON DELETE CASCADE" if foreign_keys else ""
        op.execute(
            f"CREATE TABLE {table}_new ({key} INTEGER NOT NULL{reference}, "
            "blob_id INTEGER NOT NULL, size BIGINT NOT NULL, refs INTEGER NOT NULL, "
            f"PRIMARY KEY ({key}, blob_id)) WITHOUT ROWID"
        )
        op.execute(
            f"INSERT INTO {table}_new ({key}, blob_id, size, refs) "
            f"SELECT {key}, blob_id, size, refs FROM {table}"
        )
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("CREATE TABLE usage_delta (registry_id INTEGER PRIMARY KEY, bytes BIGINT NOT NULL)")
    _rebuild(foreign_keys=False)
    for trigger in _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild(foreign_keys=True)
    for trigger in _TRIGGERS_0020:
        op.execute(trigger)
    op.execute("DROP TABLE usage_delta")
