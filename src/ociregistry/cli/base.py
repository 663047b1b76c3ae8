"""What the commands share: settings, a database for the length of one command, output."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from ociregistry.auth.accounts import Accounts
from ociregistry.auth.tokens import ensure_signing_key
from ociregistry.catalog.database import Database, migrate
from ociregistry.config import Settings
from ociregistry.services import Services


def settings_of(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.load(args.config, data_dir=args.data_dir, **overrides)


def run(settings: Settings, work: Callable[[Database], Coroutine[Any, Any, Any]]) -> Any:
    """Run `work` against the database, its schema brought up to date first."""
    migrate(settings.resolved_database_url)

    async def main() -> Any:
        db = Database(settings.resolved_database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def run_services(settings: Settings, work: Callable[[Services], Coroutine[Any, Any, Any]]) -> Any:
    """Run `work` with the registry's parts, built by the same composition root as each
    server worker (`Services.start`), so a command and a request run the same workflows."""
    migrate(settings.resolved_database_url)

    async def main() -> Any:
        db = Database(settings.resolved_database_url)
        try:
            async with db.startup_turn():  # the parts need a token-signing key
                await ensure_signing_key(db)
        finally:
            await db.dispose()
        parts = await Services.start(settings)
        try:
            return await work(parts)
        finally:
            await parts.close()

    return asyncio.run(main())


def prepare(settings: Settings) -> str | None:
    """Before any worker starts: the schema, the token-signing key and the first admin.
    Returns the admin password when one was generated."""

    async def bootstrap(db: Database) -> str | None:
        async with db.startup_turn():  # check-then-create, so one instance at a time
            await ensure_signing_key(db)
            return await Accounts(db).ensure_admin(settings.admin_password or None)

    return run(settings, bootstrap)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)


def output(args: argparse.Namespace, rows: Sequence[dict[str, Any]], columns: list[str]) -> None:
    """A table for people, or with --json the rows as JSON for scripts."""
    if getattr(args, "json", False):
        print(json.dumps(list(rows), indent=2, default=_json_default))
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def say(args: argparse.Namespace, message: str, **data: Any) -> None:
    """A one-line result, or its data as JSON."""
    if getattr(args, "json", False):
        print(json.dumps(data, default=_json_default))
    else:
        print(message)
