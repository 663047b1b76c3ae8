"""storage usage: reference counts per image, registry and blob; quotas; immutable tags;
the audit log

Revision ID: 0010
Revises: 0012
Create Date: 2026-12-05 23:55:00

The counts are filled from the manifests already stored, so figures are exact from the first
start after the upgrade. Blobs that were uploaded and linked but are referenced by no manifest
are the bytes awaiting garbage collection.

`images.size_bytes` comes from 0009 (list counts), where triggers on `image_blobs` kept it as
the sum of the blobs linked to the image. From here on it has one writer, catalog/usage.py:
the distinct bytes the image's manifests reference, the same exact figure as the registry's.
The upgrade drops 0009's size triggers (its tag and image count triggers stay) and refills the
column; the downgrade puts them back and refills it as 0009 did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0009's writers of images.size_bytes, which catalog/usage.py replaces.
_SQLITE_SIZE_DROP = (
    "DROP TRIGGER IF EXISTS image_blobs_sized_in",
    "DROP TRIGGER IF EXISTS image_blobs_sized_out",
)
_POSTGRESQL_SIZE_DROP = (
    "DROP TRIGGER IF EXISTS image_blobs_sized ON image_blobs",
    "DROP FUNCTION IF EXISTS ociregistry_size_image()",
)
# …and as 0009 made them, for the downgrade.
_SQLITE_SIZE_TRIGGERS = (
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
_POSTGRESQL_SIZE_TRIGGERS = (
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


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _usage_table(name: str, key: str | None, parent: str | None) -> None:
    columns: list[sa.Column] = []
    if key is not None:
        columns.append(
            sa.Column(key, sa.Integer(), sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"))
        )
    columns += [
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("refs", sa.Integer(), nullable=False),
    ]
    keys = [key, "digest"] if key is not None else ["digest"]
    op.create_table(name, *columns, sa.PrimaryKeyConstraint(*keys))


def upgrade() -> None:
    with op.batch_alter_table("registries") as batch:
        batch.add_column(
            sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("quota_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("immutable_tags", sa.JSON(), nullable=False, server_default="[]")
        )
    # images.size_bytes exists (0009); its writer changes from triggers to catalog/usage.py.
    for statement in _POSTGRESQL_SIZE_DROP if _postgresql() else _SQLITE_SIZE_DROP:
        op.execute(statement)
    _usage_table("image_usage", "image_id", "images")
    _usage_table("registry_usage", "registry_id", "registries")
    _usage_table("blob_usage", None, None)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("registry", sa.String(length=63), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_registry_at", "audit_log", ["registry", "at"])
    # What each manifest references: itself, and its config and layers that its image holds
    # (a foreign layer is held by no image), each once per manifest.
    op.execute(
        """
        INSERT INTO image_usage (image_id, digest, size, refs)
        SELECT image_id, digest, MAX(size), COUNT(*) FROM (
            SELECT m.id AS manifest_id, m.image_id, m.digest, m.size FROM manifests m
            UNION
            SELECT m.id, m.image_id, r.digest, r.size
            FROM manifest_references r JOIN manifests m ON m.id = r.manifest_id
            WHERE r.kind = 'blob' AND EXISTS (
                SELECT 1 FROM image_blobs b WHERE b.image_id = m.image_id AND b.digest = r.digest
            )
        ) AS per_manifest
        GROUP BY image_id, digest
        """
    )
    op.execute(
        """
        INSERT INTO registry_usage (registry_id, digest, size, refs)
        SELECT i.registry_id, u.digest, MAX(u.size), COUNT(*)
        FROM image_usage u JOIN images i ON i.id = u.image_id
        GROUP BY i.registry_id, u.digest
        """
    )
    op.execute(
        """
        INSERT INTO blob_usage (digest, size, refs)
        SELECT digest, MAX(size), SUM(refs) FROM (
            SELECT digest, MAX(size) AS size, COUNT(*) AS refs FROM registry_usage GROUP BY digest
            UNION ALL
            SELECT digest, MAX(size), 0 FROM image_blobs GROUP BY digest
        ) AS stored
        GROUP BY digest
        """
    )
    op.execute(
        "UPDATE images SET size_bytes = "
        "(SELECT COALESCE(SUM(size), 0) FROM image_usage WHERE image_id = images.id)"
    )
    op.execute(
        "UPDATE registries SET size_bytes = "
        "(SELECT COALESCE(SUM(size), 0) FROM registry_usage WHERE registry_id = registries.id)"
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("blob_usage")
    op.drop_table("registry_usage")
    op.drop_table("image_usage")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch "move and copy" of
    # `registries` would cascade-delete every image under foreign_keys=ON.
    for table, column in (
        ("registries", "immutable_tags"),
        ("registries", "quota_bytes"),
        ("registries", "size_bytes"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    # images.size_bytes stays (0009's column), kept by 0009's triggers again, refilled as 0009
    # filled it.
    for statement in _POSTGRESQL_SIZE_TRIGGERS if _postgresql() else _SQLITE_SIZE_TRIGGERS:
        op.execute(statement)
    op.execute(
        "UPDATE images SET size_bytes = (SELECT coalesce(sum(size), 0) FROM image_blobs"
        " WHERE image_blobs.image_id = images.id)"
    )
