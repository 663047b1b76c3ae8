"""maintained list counts and list indexes

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-05 23:55:00

`images.tag_count`, `registries.image_count` (images holding at least one tag) and
`images.size_bytes` (the bytes of the blobs an image may serve) are kept by triggers on every
path that adds or removes a tag or a blob link (a push, a tag or image deletion, a registry
deletion, garbage collection), so the management API's lists read a column instead of counting
or summing rows on every request (issue 15, flat growth). Indexes let the default sorts walk
an index instead of sorting every row: tags by push time within an image, images by name,
registries in catalog order. A tag search (`name LIKE '%q%'`) gets a trigram index: an FTS5
table `tags_search` (trigram tokenizer) kept by triggers on SQLite, `pg_trgm` on PostgreSQL
(when the extension can be created; without it searches scan, as before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A tag added to an image counts once in the image; an image's first tag makes it count once
# in its registry (and its last tag's removal uncounts it). When an image itself is deleted,
# the database cascades its tags after the image row is gone, so those updates find nothing,
# and the image's own trigger uncounts it from its registry instead.
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER tags_counted_in AFTER INSERT ON tags BEGIN
        UPDATE images SET tag_count = tag_count + 1 WHERE id = NEW.image_id;
        UPDATE registries SET image_count = image_count + 1 WHERE id =
            (SELECT registry_id FROM images WHERE id = NEW.image_id AND tag_count = 1);
    END
    """,
    """
    CREATE TRIGGER tags_counted_out AFTER DELETE ON tags BEGIN
        UPDATE images SET tag_count = tag_count - 1 WHERE id = OLD.image_id;
        UPDATE registries SET image_count = image_count - 1 WHERE id =
            (SELECT registry_id FROM images WHERE id = OLD.image_id AND tag_count = 0);
    END
    """,
    """
    CREATE TRIGGER images_counted_out AFTER DELETE ON images WHEN OLD.tag_count > 0 BEGIN
        UPDATE registries SET image_count = image_count - 1 WHERE id = OLD.registry_id;
    END
    """,
    """
    CREATE VIRTUAL TABLE tags_search USING fts5(
        name, content='tags', content_rowid='id', tokenize='trigram'
    )
    """,
    "INSERT INTO tags_search(tags_search) VALUES ('rebuild')",
    """
    CREATE TRIGGER tags_searched_in AFTER INSERT ON tags BEGIN
        INSERT INTO tags_search(rowid, name) VALUES (NEW.id, NEW.name);
    END
    """,
    """
    CREATE TRIGGER tags_searched_out AFTER DELETE ON tags BEGIN
        INSERT INTO tags_search(tags_search, rowid, name) VALUES ('delete', OLD.id, OLD.name);
    END
    """,
    """
    CREATE TRIGGER image_blobs_sized_in AFTER INSERT ON image_blobs BEGIN
        UPDATE images SET size_bytes = size_bytes + NEW.size WHERE id = NEW.image_id;
    END
    """,
    """
    CREATE TRIGGER image_blobs_sized_out AFTER DELETE ON image_blobs BEGIN
        UPDATE images SET size_bytes = size_bytes - OLD.size WHERE id = OLD.image_id;
    END
    """,
)
_POSTGRESQL_TRIGGERS = (
    """
    CREATE FUNCTION ociregistry_count_tags() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE images SET tag_count = tag_count + 1 WHERE id = NEW.image_id;
            UPDATE registries SET image_count = image_count + 1 WHERE id =
                (SELECT registry_id FROM images WHERE id = NEW.image_id AND tag_count = 1);
            RETURN NEW;
        END IF;
        UPDATE images SET tag_count = tag_count - 1 WHERE id = OLD.image_id;
        UPDATE registries SET image_count = image_count - 1 WHERE id =
            (SELECT registry_id FROM images WHERE id = OLD.image_id AND tag_count = 0);
        RETURN OLD;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER tags_counted AFTER INSERT OR DELETE ON tags
        FOR EACH ROW EXECUTE FUNCTION ociregistry_count_tags()
    """,
    """
    CREATE FUNCTION ociregistry_uncount_image() RETURNS trigger AS $$
    BEGIN
        UPDATE registries SET image_count = image_count - 1 WHERE id = OLD.registry_id;
        RETURN OLD;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER images_counted_out AFTER DELETE ON images
        FOR EACH ROW WHEN (OLD.tag_count > 0) EXECUTE FUNCTION ociregistry_uncount_image()
    """,
    """
    CREATE FUNCTION ociregistry_size_image() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE images SET size_bytes = size_bytes + NEW.size WHERE id = NEW.image_id;
            RETURN NEW;
        END IF;
        UPDATE images SET size_bytes = size_bytes - OLD.size WHERE id = OLD.image_id;
        RETURN OLD;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER image_blobs_sized AFTER INSERT OR DELETE ON image_blobs
        FOR EACH ROW EXECUTE FUNCTION ociregistry_size_image()
    """,
)
_POSTGRESQL_DROP = (
    "DROP TRIGGER IF EXISTS tags_counted ON tags",
    "DROP TRIGGER IF EXISTS images_counted_out ON images",
    "DROP TRIGGER IF EXISTS image_blobs_sized ON image_blobs",
    "DROP INDEX IF EXISTS ix_tags_name_trgm",
    "DROP FUNCTION IF EXISTS ociregistry_count_tags()",
    "DROP FUNCTION IF EXISTS ociregistry_uncount_image()",
    "DROP FUNCTION IF EXISTS ociregistry_size_image()",
)
_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS tags_counted_in",
    "DROP TRIGGER IF EXISTS tags_counted_out",
    "DROP TRIGGER IF EXISTS images_counted_out",
    "DROP TRIGGER IF EXISTS image_blobs_sized_in",
    "DROP TRIGGER IF EXISTS image_blobs_sized_out",
    "DROP TRIGGER IF EXISTS tags_searched_in",
    "DROP TRIGGER IF EXISTS tags_searched_out",
    "DROP TABLE IF EXISTS tags_search",
)


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("tag_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("registries") as batch:
        batch.add_column(sa.Column("image_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE images SET tag_count = (SELECT count(*) FROM tags WHERE tags.image_id = images.id)"
    )
    op.execute(
        "UPDATE images SET size_bytes = (SELECT coalesce(sum(size), 0) FROM image_blobs"
        " WHERE image_blobs.image_id = images.id)"
    )
    op.execute(
        "UPDATE registries SET image_count = (SELECT count(*) FROM images"
        " WHERE images.registry_id = registries.id AND images.tag_count > 0)"
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRESQL_TRIGGERS if postgresql else _SQLITE_TRIGGERS:
        op.execute(statement)
    op.create_index("ix_tags_image_created", "tags", ["image_id", "created_at"])
    op.create_index("ix_images_name", "images", ["name", "registry_id"])
    # The catalog walks registries in the order of `name || '/'` (catalog/images.py).
    op.execute("CREATE UNIQUE INDEX ix_registries_catalog ON registries ((name || '/'))")
    if postgresql:
        _trigram_index_on_tag_names()


def _trigram_index_on_tag_names() -> None:
    """`pg_trgm` is a trusted extension (PostgreSQL 13+), which the database's owner may
    create; a role that may not goes without the index, and its searches scan."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            bind.execute(
                sa.text("CREATE INDEX ix_tags_name_trgm ON tags USING gin (name gin_trgm_ops)")
            )
    except sa.exc.DBAPIError:
        pass


def downgrade() -> None:
    op.execute("DROP INDEX ix_registries_catalog")
    op.drop_index("ix_images_name", table_name="images")
    op.drop_index("ix_tags_image_created", table_name="tags")
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRESQL_DROP if postgresql else _SQLITE_DROP:
        op.execute(statement)
    with op.batch_alter_table("registries") as batch:
        batch.drop_column("image_count")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("size_bytes")
        batch.drop_column("tag_count")
