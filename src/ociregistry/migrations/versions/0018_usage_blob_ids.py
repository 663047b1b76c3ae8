"""usage keyed by integer blob ids; carried up its levels by triggers on SQLite

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 11:30:00

Issue 14: the cost of exact usage. A manifest PUT's commit writes every page it changed to the
WAL (4 KiB, and its share of the fsync and of the next checkpoint: about 10 µs of CPU each on
SQLite), and the usage rows were keyed by digest, random: each new reference landed on a page
of its own at each level, about ten pages per PUT against some 26 for the rest of it.

Integer blob ids. `blob_usage` gets an `id`, given in the order blobs first enter the store
(SQLite: its rowid, so the table is clustered on it; PostgreSQL: a BIGINT identity, which
spends a value on every upsert), `digest` becoming a unique key; the
image and registry levels are keyed by (image or registry, blob id) and keep no digest of
their own (the platform's row has it), so a row is four integers. The blobs a push adds are the
newest, so their rows go to the end of each level: one page per level, not one per blob, and a
page holds some 150 rows, not 40.

Triggers, on SQLite. A manifest push ran one statement per blob and level and two for the
image's and the registry's sizes, each a round trip through Python's sqlite3 for a few
microseconds of SQLite's work: about ten per PUT, and one per uploaded blob for its
`blob_usage` row. Triggers carry a reference up the levels inside SQLite, so catalog/usage.py
runs one statement per manifest (the image level, for all its blobs) and none per upload:

- `usage_blob_stored`: a blob linked into an image has a `blob_usage` row from then on (0
  references: awaiting garbage collection), as `usage.note_stored` wrote it;
- `usage_image_added`: a blob new to an image (an `image_usage` row inserted; one counted
  again is an upsert's update and fires nothing) adds its size to the image and one
  reference at the registry level;
- `usage_registry_added`: a blob new to a registry adds its size to the registry and one
  reference at the platform level; when that takes the registry above its quota,
  `RAISE(ABORT)` undoes the statement and the caller refuses the push (403 DENIED), decided
  in the database as before.

Removing references stays in catalog/usage.py. PostgreSQL keeps its one statement of
data-modifying CTEs (usage._POSTGRESQL_ADD) and gets the same keys. Nothing is recounted: the
figures stay as they were, each row given its blob's id.
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

# (table, the key column before the blob and the table it references)
_LEVELS = (("image_usage", "image_id", "images"), ("registry_usage", "registry_id", "registries"))
_FIGURES = "size BIGINT NOT NULL, refs INTEGER NOT NULL"
_COLUMNS = f"digest VARCHAR(160) NOT NULL, {_FIGURES}"
# A digest some level names but the platform's table lacks (none should) gets a row, so that
# every row keeps its figures.
_MISSING = """
    INSERT INTO blob_usage (digest, size, refs)
    SELECT digest, MAX(size), 0 FROM {table}
    WHERE digest NOT IN (SELECT digest FROM blob_usage) GROUP BY digest
"""


def _sqlite_upgrade() -> None:
    op.execute(
        f"CREATE TABLE blob_usage_new (id INTEGER PRIMARY KEY, {_COLUMNS}, "
        "CONSTRAINT uq_blob_usage_digest UNIQUE (digest))"
    )
    op.execute(
        "INSERT INTO blob_usage_new (digest, size, refs) "
        "SELECT digest, size, refs FROM blob_usage ORDER BY digest"
    )
    op.execute("DROP TABLE blob_usage")
    op.execute("ALTER TABLE blob_usage_new RENAME TO blob_usage")
    for table, key, parent in _LEVELS:
        op.execute(_MISSING.format(table=table))
        op.execute(
            f"CREATE TABLE {table}_new ("
            f"{key} INTEGER NOT NULL REFERENCES {parent} (id) ON DELETE CASCADE, "
            f"blob_id INTEGER NOT NULL, {_FIGURES}, PRIMARY KEY ({key}, blob_id)) WITHOUT ROWID"
        )
        op.execute(
            f"INSERT INTO {table}_new ({key}, blob_id, size, refs) "
            f"SELECT u.{key}, b.id, u.size, u.refs "
            f"FROM {table} u JOIN blob_usage b ON b.digest = u.digest"
        )
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
    for statement in _TRIGGERS.values():
        op.execute(statement)


def _sqlite_downgrade() -> None:
    """Back to 0016's tables: keyed by digest, clustered on their keys."""
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table, key, parent in (*_LEVELS, ("blob_usage", None, None)):
        columns = _COLUMNS
        if key is not None:
            columns = (
                f"{key} INTEGER NOT NULL REFERENCES {parent} (id) ON DELETE CASCADE, {columns}"
            )
        names = f"{key + ', ' if key else ''}digest, size, refs"
        primary = f"{key + ', ' if key else ''}digest"
        source = f"SELECT {names} FROM {table}"
        if key is not None:
            source = (
                f"SELECT u.{key}, b.digest, u.size, u.refs "
                f"FROM {table} u JOIN blob_usage b ON b.id = u.blob_id"
            )
        op.execute(f"CREATE TABLE {table}_new ({columns}, PRIMARY KEY ({primary})) WITHOUT ROWID")
        op.execute(f"INSERT INTO {table}_new ({names}) {source}")
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


def _postgresql_upgrade() -> None:
    op.execute("ALTER TABLE blob_usage ADD COLUMN id BIGINT GENERATED BY DEFAULT AS IDENTITY")
    op.execute("ALTER TABLE blob_usage DROP CONSTRAINT blob_usage_pkey")
    op.execute("ALTER TABLE blob_usage ADD PRIMARY KEY (id)")
    op.execute("ALTER TABLE blob_usage ADD CONSTRAINT uq_blob_usage_digest UNIQUE (digest)")
    for table, key, _parent in _LEVELS:
        op.execute(_MISSING.format(table=table))
        op.execute(f"ALTER TABLE {table} ADD COLUMN blob_id BIGINT")
        op.execute(
            f"UPDATE {table} u SET blob_id = b.id FROM blob_usage b WHERE b.digest = u.digest"
        )
        op.execute(f"ALTER TABLE {table} ALTER COLUMN blob_id SET NOT NULL")
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key}, blob_id)")
        op.execute(f"ALTER TABLE {table} DROP COLUMN digest")


def _postgresql_downgrade() -> None:
    for table, key, _parent in _LEVELS:
        op.execute(f"ALTER TABLE {table} ADD COLUMN digest VARCHAR(160)")
        op.execute(
            f"UPDATE {table} u SET digest = b.digest FROM blob_usage b WHERE b.id = u.blob_id"
        )
        op.execute(f"ALTER TABLE {table} ALTER COLUMN digest SET NOT NULL")
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        op.execute(f"ALTER TABLE {table} DROP COLUMN blob_id")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key}, digest)")
    op.execute("ALTER TABLE blob_usage DROP CONSTRAINT blob_usage_pkey")
    op.execute("ALTER TABLE blob_usage DROP CONSTRAINT uq_blob_usage_digest")
    op.execute("ALTER TABLE blob_usage DROP COLUMN id")
    op.execute("ALTER TABLE blob_usage ADD PRIMARY KEY (digest)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()
    else:
        _postgresql_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_downgrade()
    else:
        _postgresql_downgrade()
