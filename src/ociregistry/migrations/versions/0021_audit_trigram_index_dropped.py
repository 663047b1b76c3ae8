"""the audit log's trigram index of targets dropped: the B-tree of their tails serves `q`

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 19:10:00

Issue 14, the audit log. Migration 0017 indexed the events' targets by trigrams (an FTS5
table kept by triggers on SQLite, a `pg_trgm` GIN index on PostgreSQL); migration 0019 made
the search go through a B-tree of each target's tails that start a word instead, and left
the trigram index to a `q` that holds no word (`-/`, `://`). Such a `q` is in nearly every
target (every one holds `/`), so a scan of the log in its order finds a page of matches at
once, and the index served almost nothing while every event written paid for it: on SQLite
an event's insert took 311 µs with it and 220 without (`INSERT` and commit, one at a time,
10,000 events). A search of separators is now a scan, as one of one or two characters was
before; one that matches little (`://`, in no target) reads the whole log to say so, tens of
milliseconds at 100,000 events, where every event written saves 90 µs.

The way down makes the index again from the log (`rebuild`, CREATE INDEX).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRESQL_INDEX = "ix_audit_log_target_trgm"

# Migration 0017's, for the way down.
_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE audit_search USING fts5("
    "target, content='audit_log', content_rowid='id', tokenize='trigram')",
    "INSERT INTO audit_search(audit_search) VALUES ('rebuild')",
    "CREATE TRIGGER audit_search_in AFTER INSERT ON audit_log BEGIN "
    "INSERT INTO audit_search(rowid, target) VALUES (NEW.id, NEW.target); END",
    "CREATE TRIGGER audit_search_out AFTER DELETE ON audit_log BEGIN "
    "INSERT INTO audit_search(audit_search, rowid, target) "
    "VALUES ('delete', OLD.id, OLD.target); END",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {_POSTGRESQL_INDEX}")
        return
    op.execute("DROP TRIGGER IF EXISTS audit_search_in")
    op.execute("DROP TRIGGER IF EXISTS audit_search_out")
    op.execute("DROP TABLE IF EXISTS audit_search")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        for statement in _SQLITE_SEARCH:
            op.execute(statement)
        return
    # As 0017 made it: only where the extension is (without it, searches scanned).
    installed = bind.execute(
        sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
    ).scalar()
    if installed:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {_POSTGRESQL_INDEX} "
            "ON audit_log USING gin (target gin_trgm_ops)"
        )
