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
from ociregistry.config import ConfigError, Settings
from ociregistry.db.database import Database, migrate
from ociregistry.services import Services


class DataFolderMissing(ConfigError):
    """An administration command found no registry where it looked: it must not create an
    empty one (its empty answers would look as if the data were gone)."""


def settings_of(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.load(args.config, data_dir=args.data_dir, **overrides)


def check_data_folder(settings: Settings) -> None:
    """Refuse to work on a data folder that holds no registry; only `serve` creates one."""
    if settings.database_url:
        return  # the database is elsewhere (PostgreSQL); it says itself whether it exists
    database = settings.data_path / "registry.db"
    if not database.is_file():
        raise DataFolderMissing(
            f"no registry in {settings.data_path} (there is no {database.name} there). "
            "Run this command from the folder `scripts/serve` was started in, or point at the "
            "data folder with --data-dir DIR, OCIREGISTRY_DATA_DIR=DIR or --config FILE "
            '(data_dir = "DIR"); only `ociregistry serve` creates a new one.'
        )


def run(
    settings: Settings,
    work: Callable[[Database], Coroutine[Any, Any, Any]],
    *,
    create: bool = False,
) -> Any:
    """Run `work` against the database, its schema brought up to date first. Unless `create`
    (the server's own start), the data folder must already hold a registry."""
    if not create:
        check_data_folder(settings)
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
    server worker (`Services.start`), so a command and a request run the same workflows. The
    data folder must already hold a registry."""
    check_data_folder(settings)
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

    return run(settings, bootstrap, create=True)


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
