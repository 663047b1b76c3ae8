"""usage tables clustered on their keys (SQLite WITHOUT ROWID)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 05:30:00

Issue 14: the cost of exact usage. `image_usage`, `registry_usage` and `blob_usage` are read
and written only by their primary keys ((image, digest), (registry, digest), digest). As rowid
tables on SQLite each row lived twice, in the table's b-tree and in the automatic index of its
key, so every reference a manifest push adds dirtied two pages per level and the commit wrote
both to the WAL (and the checkpoint to the database). As WITHOUT ROWID tables the key's b-tree
holds the row: one page per row written, and an image's or a registry's rows sit together.
Measured with the WAL's frames per manifest PUT (bench/usage_bench.py, bench/README.md).

PostgreSQL's tables are heaps with a separate key index whatever one declares, so nothing
changes there. The data is copied, not recomputed: the figures stay exactly as they were.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, the key column before digest and the table it references)
_TABLES = (
    ("image_usage", ("image_id", "images")),
    ("registry_usage", ("registry_id", "registries")),
    ("blob_usage", None),
)


def _rebuild(without_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    suffix = " WITHOUT ROWID" if without_rowid else ""
    for name, parent in _TABLES:
        columns = ["digest VARCHAR(160) NOT NULL", "size BIGINT NOT NULL", "refs INTEGER NOT NULL"]
        key = "digest"
        if parent is not None:
            column, table = parent
            columns.insert(
                0, f"{column} INTEGER NOT NULL REFERENCES {table} (id) ON DELETE CASCADE"
            )
            key = f"{column}, digest"
        names = ", ".join(c.split()[0] for c in columns)
        op.execute(f"CREATE TABLE {name}_new ({', '.join(columns)}, PRIMARY KEY ({key})){suffix}")
        op.execute(f"INSERT INTO {name}_new ({names}) SELECT {names} FROM {name}")
        op.execute(f"DROP TABLE {name}")
        op.execute(f"ALTER TABLE {name}_new RENAME TO {name}")


def upgrade() -> None:
    _rebuild(without_rowid=True)


def downgrade() -> None:
    _rebuild(without_rowid=False)
