"""The `ociregistry` command: `serve`, and administration commands that work on the same data
folder and database as the server (while it runs, too)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ociregistry import __version__
from ociregistry.catalog import Database, Registries, migrate
from ociregistry.config import ConfigError, Settings
from ociregistry.errors import RegistryError


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.load(args.config, data_dir=args.data_dir, **overrides)


def _start_message(settings: Settings) -> str:
    address = settings.public_address or f"{settings.host}:{settings.port}"
    if settings.host in ("0.0.0.0", "::") and not settings.public_address:
        address = f"localhost:{settings.port}"
    database = settings.database_url or str(settings.data_path / "registry.db")
    return (
        f"ociregistry {__version__} listening on http://{settings.host}:{settings.port} "
        f"with {settings.workers} workers\n"
        f"  data:     {settings.storage_path}\n"
        f"  database: {database}\n"
        "Push a first image:\n"
        f"  ociregistry registry create team-a --data-dir {settings.data_path}\n"
        f"  docker tag busybox {address}/team-a/busybox:1.0\n"
        f"  docker push {address}/team-a/busybox:1.0\n"
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings(
        args, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
    )
    settings.storage_path.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    os.environ.update(settings.to_environment())
    print(_start_message(settings), flush=True)
    uvicorn.run(
        "ociregistry.app:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )
    return 0


def _run(settings: Settings, work: Callable[[Database], Coroutine[Any, Any, Any]]) -> Any:
    migrate(settings.resolved_database_url)

    async def main() -> Any:
        db = Database(settings.resolved_database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def registry_create(args: argparse.Namespace) -> int:
    kind = "platform" if args.platform else "user"
    info = _run(
        _settings(args),
        lambda db: Registries(db).create(
            args.name, public=args.public, kind=kind, remark=args.remark
        ),
    )
    print(f"created {info.kind} registry {info.name} ({info.resource_id}), "
          f"{'public' if info.public else 'private'}")
    return 0


def registry_list(args: argparse.Namespace) -> int:
    rows = _run(_settings(args), lambda db: Registries(db).list())
    if args.json:
        print(json.dumps([
            {"id": r.resource_id, "name": r.name, "kind": r.kind, "public": r.public,
             "status": r.status, "image_count": r.image_count, "remark": r.remark,
             "created_at": r.created_at.isoformat()}
            for r in rows
        ], indent=2))
        return 0
    print(f"{'NAME':<32} {'KIND':<9} {'VISIBILITY':<10} {'IMAGES':>6}  ID")
    for r in rows:
        visibility = "public" if r.public else "private"
        print(f"{r.name:<32} {r.kind:<9} {visibility:<10} {r.image_count:>6}  {r.resource_id}")
    return 0


def registry_delete(args: argparse.Namespace) -> int:
    _run(
        _settings(args),
        lambda db: Registries(db).delete(args.name, delete_images=args.delete_images),
    )
    print(f"deleted registry {args.name}")
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data folder (default ./data; OCIREGISTRY_DATA_DIR)")
    common.add_argument("--config", help="TOML config file; environment variables override it")

    parser = argparse.ArgumentParser(prog="ociregistry", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", parents=[common], help="run the registry")
    serve_parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="port to listen on (default 5000)")
    serve_parser.add_argument("--workers", type=int, help="worker processes (default: cores)")
    serve_parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=None,
        help="log every request (default on)",
    )
    serve_parser.set_defaults(handler=serve)

    registry = commands.add_parser("registry", help="create, list and delete registries")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    create = registry_commands.add_parser("create", parents=[common], help="create a registry")
    create.add_argument("name")
    create.add_argument("--public", action="store_true", help="anyone may view and pull")
    create.add_argument("--platform", action="store_true", help="a platform registry")
    create.add_argument("--remark", default="")
    create.set_defaults(handler=registry_create)
    listing = registry_commands.add_parser("list", parents=[common], help="list registries")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=registry_list)
    remove = registry_commands.add_parser("delete", parents=[common], help="delete a registry")
    remove.add_argument("name")
    remove.add_argument("--delete-images", action="store_true",
                        help="also delete every image it holds")
    remove.set_defaults(handler=registry_delete)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, RegistryError) as error:
        print(f"ociregistry: {error}", file=sys.stderr)
        return 2
