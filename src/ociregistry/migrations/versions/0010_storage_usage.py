"""storage usage: reference counts per image, registry and blob; quotas; immutable tags;
the audit log

Revision ID: 0010
Revises: 0004
Create Date: 2026-12-05 23:55:00

The counts are filled from the manifests already stored, so figures are exact from the first
start after the upgrade. Blobs that were uploaded and linked but are referenced by no manifest
are the bytes awaiting garbage collection.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
    with op.batch_alter_table("images") as batch:
        batch.add_column(
            sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
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
        ("images", "size_bytes"),
        ("registries", "immutable_tags"),
        ("registries", "quota_bytes"),
        ("registries", "size_bytes"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
