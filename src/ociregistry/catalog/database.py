"""The metadata database: engine set-up, read and write connections, migrations.

SQLite (the embedded default) runs in WAL mode so readers never wait for the writer, with
`synchronous=FULL` so a committed push survives a power cut, and writes begin with
`BEGIN IMMEDIATE` so two processes never deadlock upgrading a read lock. PostgreSQL needs none
of this and gets plain transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_engine(url: str, begin: str | None) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver, so that BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        if begin:
            connection.exec_driver_sql(begin)

    return engine


class Database:
    """Hands out connections: `read()` for queries, `write()` for one atomic transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        if _is_sqlite(url):
            # Reads run in autocommit mode: each statement sees the latest committed state.
            self._reader = _sqlite_engine(url, begin=None)
            self._writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
        else:
            self._reader = self._writer = create_async_engine(url, pool_pre_ping=True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as connection:
            yield connection

    async def dispose(self) -> None:
        await self._reader.dispose()
        if self._writer is not self._reader:
            await self._writer.dispose()


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _migrate(url: str) -> None:
    engine = (
        _sqlite_engine(url, begin="BEGIN IMMEDIATE") if _is_sqlite(url) else create_async_engine(url)
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        await engine.dispose()


def migrate(url: str) -> None:
    """Bring the schema up to date (Alembic `upgrade head`); safe to run on every start."""
    asyncio.run(_migrate(url))
