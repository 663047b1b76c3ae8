"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def dialect_insert(connection: AsyncConnection, table: Table) -> Any:
    """An INSERT that knows ON CONFLICT for the connection's database."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_ignore(
    connection: AsyncConnection, table: Table, values: dict[str, Any], keys: list[str]
) -> None:
    """Insert a row unless one with the same `keys` exists (idempotent links)."""
    statement = dialect_insert(connection, table).values(**values)
    await connection.execute(statement.on_conflict_do_nothing(index_elements=keys))


@cache
def insert_ignore_statement(dialect: str, table: Table, keys: tuple[str, ...]) -> Any:
    """A prepared INSERT … ON CONFLICT DO NOTHING; the values come with each execution."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_nothing(index_elements=list(keys))


@cache
def upsert_statement(
    dialect: str, table: Table, keys: tuple[str, ...], replace: tuple[str, ...]
) -> Any:
    """A prepared INSERT … ON CONFLICT DO UPDATE of the `replace` columns."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_update(
        index_elements=list(keys), set_={name: insert.excluded[name] for name in replace}
    )


def escape_like(text: str) -> str:
    """Make `%`, `_` and `\\` match literally in a LIKE pattern (used with escape='\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
