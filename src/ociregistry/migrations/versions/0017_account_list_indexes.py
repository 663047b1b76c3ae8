"""indexes for the lists of users, groups, members, tokens and audit events; member counts

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 08:40:00

Issue 15, flat growth, for the management lists that paged by number with an exact COUNT(*)
per request. Each sort they offer gets an index that ends with the row id (the lists'
tie-break), so a page after a cursor is one index range read in order; each filter of the
audit log gets one too (its column, then the time, then the id).

`project_groups.member_count` is kept by triggers on `group_members`, as `images.tag_count`
is (migration 0009), so the group list no longer counts every group's members per row.
`group_members.username` keeps each member's username (usernames never change), so that a
group's members by name are one range of the index (group, username) instead of a sort of
every member.

Name searches (`LIKE '%q%'` of user, group and token names and of audit targets) get trigram
indexes as image and tag names have: FTS5 tables kept by triggers on SQLite, `pg_trgm` on
PostgreSQL (when the extension can be created). The indexed names and targets never change,
so insert and delete keep the tables.

A nullable sort column (a token's last use, its expiry) lists its NULLs first ascending (as
SQLite does); on PostgreSQL its index says so (`NULLS FIRST`), or it could not give that order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns); a column may carry PostgreSQL's NULLS FIRST
_INDEXES = (
    ("ix_users_created", "users", ("created_at", "id")),
    ("ix_project_groups_created", "project_groups", ("created_at", "id")),
    ("ix_tokens_user_created", "personal_access_tokens", ("user_id", "created_at", "id")),
    ("ix_tokens_user_used", "personal_access_tokens", ("user_id", "last_used_at*", "id")),
    ("ix_tokens_user_expires", "personal_access_tokens", ("user_id", "expires_at*", "id")),
    ("ix_audit_log_at_id", "audit_log", ("at", "id")),
    ("ix_audit_log_registry_at_id", "audit_log", ("registry", "at", "id")),
    ("ix_audit_log_actor_at", "audit_log", ("actor", "at", "id")),
    ("ix_audit_log_action_at", "audit_log", ("action", "at", "id")),
    ("ix_audit_log_outcome_at", "audit_log", ("outcome", "at", "id")),
)
# Superseded by the indexes above that end with the id.
_REPLACED = (
    ("ix_audit_log_at", "audit_log", ["at"]),
    ("ix_audit_log_registry_at", "audit_log", ["registry", "at"]),
)
# (FTS5 table and trigger prefix, table, searched column)
_SEARCHES = (
    ("users_search", "users", "username"),
    ("groups_search", "project_groups", "name"),
    ("tokens_search", "personal_access_tokens", "name"),
    ("audit_search", "audit_log", "target"),
)

_SQLITE_COUNTS = (
    """
    CREATE TRIGGER group_members_counted_in AFTER INSERT ON group_members BEGIN
        UPDATE project_groups SET member_count = member_count + 1 WHERE id = NEW.group_id;
    END
    """,
    """
    CREATE TRIGGER group_members_counted_out AFTER DELETE ON group_members BEGIN
        UPDATE project_groups SET member_count = member_count - 1 WHERE id = OLD.group_id;
    END
    """,
)
_POSTGRESQL_COUNTS = (
    """
    CREATE FUNCTION ociregistry_count_members() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE project_groups SET member_count = member_count + 1 WHERE id = NEW.group_id;
            RETURN NEW;
        END IF;
        UPDATE project_groups SET member_count = member_count - 1 WHERE id = OLD.group_id;
        RETURN OLD;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER group_members_counted AFTER INSERT OR DELETE ON group_members
        FOR EACH ROW EXECUTE FUNCTION ociregistry_count_members()
    """,
)


def _sqlite_search(search: str, table: str, column: str) -> tuple[str, ...]:
    return (
        f"CREATE VIRTUAL TABLE {search} USING fts5("
        f"{column}, content='{table}', content_rowid='id', tokenize='trigram')",
        f"INSERT INTO {search}({search}) VALUES ('rebuild')",
        f"CREATE TRIGGER {search}_in AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {search}(rowid, {column}) VALUES (NEW.id, NEW.{column}); END",
        f"CREATE TRIGGER {search}_out AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {search}({search}, rowid, {column}) "
        f"VALUES ('delete', OLD.id, OLD.{column}); END",
    )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table, columns in _INDEXES:
        terms = ", ".join(
            f"{column[:-1]} NULLS FIRST"
            if column.endswith("*") and postgresql
            else column.rstrip("*")
            for column in columns
        )
        op.execute(f"CREATE INDEX {name} ON {table} ({terms})")
    for name, table, _columns in _REPLACED:
        op.drop_index(name, table_name=table)
    # Plain ALTER TABLE on both databases: a batch copy of a table on SQLite drops the old
    # one, and dropping `project_groups` would cascade to every membership.
    op.add_column(
        "project_groups",
        sa.Column("member_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "group_members", sa.Column("username", sa.String(64), nullable=False, server_default="")
    )
    op.execute(
        "UPDATE group_members SET username = (SELECT username FROM users"
        " WHERE users.id = group_members.user_id)"
    )
    op.create_index(
        "ix_group_members_username", "group_members", ["group_id", "username", "user_id"]
    )
    op.execute(
        "UPDATE project_groups SET member_count = (SELECT count(*) FROM group_members"
        " WHERE group_members.group_id = project_groups.id)"
    )
    for statement in _POSTGRESQL_COUNTS if postgresql else _SQLITE_COUNTS:
        op.execute(statement)
    if postgresql:
        _trigram_indexes()
    else:
        for search in _SEARCHES:
            for statement in _sqlite_search(*search):
                op.execute(statement)


def _trigram_indexes() -> None:
    """As migration 0009 does for tag names: without the extension, searches scan."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            for _search, table, column in _SEARCHES:
                index = f"ix_{table}_{column}_trgm ON {table} USING gin ({column} gin_trgm_ops)"
                bind.execute(sa.text(f"CREATE INDEX {index}"))
    except sa.exc.DBAPIError:
        pass


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS group_members_counted ON group_members")
        op.execute("DROP FUNCTION IF EXISTS ociregistry_count_members()")
        for _search, table, column in _SEARCHES:
            op.execute(f"DROP INDEX IF EXISTS ix_{table}_{column}_trgm")
    else:
        op.execute("DROP TRIGGER IF EXISTS group_members_counted_in")
        op.execute("DROP TRIGGER IF EXISTS group_members_counted_out")
        for search, _table, _column in _SEARCHES:
            op.execute(f"DROP TRIGGER IF EXISTS {search}_in")
            op.execute(f"DROP TRIGGER IF EXISTS {search}_out")
            op.execute(f"DROP TABLE IF EXISTS {search}")
    op.drop_column("project_groups", "member_count")  # ALTER TABLE (SQLite 3.35+)
    op.drop_index("ix_group_members_username", table_name="group_members")
    op.drop_column("group_members", "username")
    for name, table, columns in _REPLACED:
        op.create_index(name, table, columns)
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
