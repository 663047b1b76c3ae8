"""access generation: one counter every change to who may do what raises, for the caches of
the request path

Triggers raise it, in the very transaction of the change, on every write to what the access
policy and authentication read: users (name, admin, disabled), personal access tokens,
project groups and their members, and registries (name, kind, visibility, status, group).
Writes the policy does not read (a token's last use, a registry's counts or remark) leave it
alone. Being triggers, they catch every path that writes: the server, the CLI, SQL by hand.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "UPDATE access_generation SET value = value + 1 WHERE id = 1"
# (table, events): an `UPDATE OF` lists the columns whose change matters.
WATCHED = (
    ("users", ("INSERT", "DELETE", "UPDATE OF username, is_admin, disabled")),
    (
        "personal_access_tokens",
        ("INSERT", "DELETE", "UPDATE OF user_id, read_only, expires_at, revoked_at"),
    ),
    ("project_groups", ("INSERT", "DELETE")),
    ("group_members", ("INSERT", "DELETE", "UPDATE")),
    (
        "registries",
        ("INSERT", "DELETE", "UPDATE OF name, kind, public, status, project_group_id"),
    ),
)


def _trigger_name(table: str, event: str) -> str:
    return f"access_generation_{table}_{event.split()[0].lower()}"


def upgrade() -> None:
    op.create_table(
        "access_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO access_generation (id, value) VALUES (1, 1)")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(
            "CREATE FUNCTION access_generation_bump() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
    for table, events in WATCHED:
        for event in events:
            name = _trigger_name(table, event)
            if postgres:  # once per statement, however many rows it touched
                op.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION access_generation_bump()"
                )
            else:
                op.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN {BUMP}; END"
                )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, events in WATCHED:
        for event in events:
            name = _trigger_name(table, event)
            op.execute(f"DROP TRIGGER {name} ON {table}" if postgres else f"DROP TRIGGER {name}")
    if postgres:
        op.execute("DROP FUNCTION access_generation_bump()")
    op.drop_table("access_generation")
