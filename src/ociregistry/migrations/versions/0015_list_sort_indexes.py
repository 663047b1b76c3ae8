"""indexes for every sort the lists offer, and a trigram index of image names

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 02:20:00

Issue 15, flat growth, on SQLite and PostgreSQL. The console sorts a registry's images by
push time, update time and pull count, and an image's tags by pull count: without an index
each such page sorted every image of the registry (every tag of the image), 4x to 36x the
cost at 100,000 items. Each index ends with the row id, the lists' tie-break, so a page is
an index range read in order and nothing is sorted. An image search (`name LIKE '%q%'`)
gets a trigram index as tag searches have (migration 0009): an FTS5 table `images_search`
kept by triggers on SQLite, `pg_trgm` on PostgreSQL (when the extension can be created).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_images_registry_created", "images", ["registry_id", "created_at", "id"]),
    ("ix_images_registry_updated", "images", ["registry_id", "updated_at", "id"]),
    ("ix_images_registry_pulls", "images", ["registry_id", "pull_count", "id"]),
    ("ix_tags_image_pulls", "tags", ["image_id", "pull_count", "id"]),
)
# Image names never change (a rename is a new image), so insert and delete keep the index.
_SQLITE_SEARCH = (
    """
    CREATE VIRTUAL TABLE images_search USING fts5(
        name, content='images', content_rowid='id', tokenize='trigram'
    )
    """,
    "INSERT INTO images_search(images_search) VALUES ('rebuild')",
    """
    CREATE TRIGGER images_searched_in AFTER INSERT ON images BEGIN
        INSERT INTO images_search(rowid, name) VALUES (NEW.id, NEW.name);
    END
    """,
    """
    CREATE TRIGGER images_searched_out AFTER DELETE ON images BEGIN
        INSERT INTO images_search(images_search, rowid, name) VALUES ('delete', OLD.id, OLD.name);
    END
    """,
)
_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS images_searched_in",
    "DROP TRIGGER IF EXISTS images_searched_out",
    "DROP TABLE IF EXISTS images_search",
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
    if op.get_bind().dialect.name == "postgresql":
        _trigram_index_on_image_names()
    else:
        for statement in _SQLITE_SEARCH:
            op.execute(statement)


def _trigram_index_on_image_names() -> None:
    """As migration 0009 does for tag names: without the extension, searches scan."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            bind.execute(
                sa.text("CREATE INDEX ix_images_name_trgm ON images USING gin (name gin_trgm_ops)")
            )
    except sa.exc.DBAPIError:
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_images_name_trgm")
    else:
        for statement in _SQLITE_DROP:
            op.execute(statement)
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
