"""Alembic steps run on a test's database as the server's migration runs them: through its
engine (SQLite with foreign keys enforced), on the same connection the step used."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from ociregistry.db.database import MIGRATIONS, _sqlite_engine


def migration_step(
    url: str,
    step: Callable[[Config, str], Any],
    target: str,
    then: Callable[[Any], Any] | None = None,
) -> Any:
    """`step` (alembic.command.upgrade or downgrade) to `target`; then `then(connection)`, in
    the same transaction, whose result is returned (None without it)."""

    async def go() -> Any:
        engine = _sqlite_engine(url) if url.startswith("sqlite") else create_async_engine(url)
        try:
            async with engine.begin() as conn:

                def work(sync: Any) -> Any:
                    config = Config()
                    config.set_main_option("script_location", str(MIGRATIONS))
                    config.attributes["connection"] = sync
                    step(config, target)
                    return then(sync) if then is not None else None

                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())
