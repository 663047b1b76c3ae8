"""The `ociregistry` command: `serve`, and administration commands that work on the same data
folder and database as the server (while it runs, too)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from ociregistry import __version__
from ociregistry.auth.accounts import Accounts
from ociregistry.auth.groups import Groups
from ociregistry.auth.tokens import ensure_signing_key
from ociregistry.catalog.database import Database, migrate
from ociregistry.catalog.registries import Registries
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
    generated = prepare(settings)
    os.environ.update(settings.to_environment())
    print(_start_message(settings), flush=True)
    if generated:
        print(
            f"Created the admin account. Its password, shown this once: {generated}\n"
            "  (set OCIREGISTRY_ADMIN_PASSWORD before the first start to choose it)\n",
            flush=True,
        )
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


def prepare(settings: Settings) -> str | None:
    """Before any worker starts: the schema, the token-signing key and the first admin.
    Returns the admin password when one was generated."""

    async def bootstrap(db: Database) -> str | None:
        await ensure_signing_key(db)
        return await Accounts(db).ensure_admin(settings.admin_password or None)

    return _run(settings, bootstrap)


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
            args.name,
            public=args.public,
            kind=kind,
            remark=args.remark,
            owner=args.owner,
            group=args.group,
        ),
    )
    print(
        f"created {info.kind} registry {info.name} ({info.resource_id}), "
        f"{'public' if info.public else 'private'}"
    )
    return 0


def registry_list(args: argparse.Namespace) -> int:
    rows = _run(_settings(args), lambda db: Registries(db).list())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.resource_id,
                        "name": r.name,
                        "kind": r.kind,
                        "public": r.public,
                        "status": r.status,
                        "image_count": r.image_count,
                        "remark": r.remark,
                        "created_at": r.created_at.isoformat(),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
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


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass("password: ")


def user_add(args: argparse.Namespace) -> int:
    password = _read_password(args)
    info = _run(
        _settings(args),
        lambda db: Accounts(db).create_user(args.username, password, is_admin=args.admin),
    )
    print(f"created user {info.username}{' (platform admin)' if info.is_admin else ''}")
    return 0


def user_list(args: argparse.Namespace) -> int:
    users = _run(_settings(args), lambda db: Accounts(db).list_users())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "username": u.username,
                        "admin": u.is_admin,
                        "disabled": u.disabled,
                        "created_at": u.created_at.isoformat(),
                    }
                    for u in users
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'USERNAME':<32} {'ADMIN':<6} {'DISABLED':<8}")
    for u in users:
        print(
            f"{u.username:<32} {'yes' if u.is_admin else 'no':<6} "
            f"{'yes' if u.disabled else 'no':<8}"
        )
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args)
    _run(_settings(args), lambda db: Accounts(db).set_password(args.username, password))
    print(f"changed the password of {args.username}")
    return 0


def user_disable(args: argparse.Namespace) -> int:
    enable = args.command_name == "enable"
    _run(_settings(args), lambda db: Accounts(db).set_disabled(args.username, not enable))
    print(f"{'enabled' if enable else 'disabled'} user {args.username}")
    return 0


def group_create(args: argparse.Namespace) -> int:
    _run(_settings(args), lambda db: Groups(db).create(args.name, args.owner))
    print(f"created project group {args.name}, owned by {args.owner}")
    return 0


def group_member(args: argparse.Namespace) -> int:
    if args.role == "none":
        _run(_settings(args), lambda db: Groups(db).remove_member(args.group, args.username))
        print(f"removed {args.username} from {args.group}")
    else:
        _run(
            _settings(args), lambda db: Groups(db).set_member(args.group, args.username, args.role)
        )
        print(f"{args.username} is now {args.role} of {args.group}")
    return 0


def token_create(args: argparse.Namespace) -> int:
    expires = None
    if args.expires_days:
        expires = datetime.now(UTC) + timedelta(days=args.expires_days)
    info, secret = _run(
        _settings(args),
        lambda db: Accounts(db).create_token(
            args.user, args.name, read_only=args.read_only, expires_at=expires
        ),
    )
    if args.json:
        print(json.dumps({"id": info.public_id, "name": info.name, "token": secret}))
    else:
        print(f"token {info.name} ({info.public_id}) for {args.user}; shown this once:\n{secret}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    _run(_settings(args), lambda db: Accounts(db).revoke_token(args.user, args.id))
    print(f"revoked token {args.id} of {args.user}")
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
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
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
    create.add_argument("--owner", default="admin", help="owning user (default admin)")
    create.add_argument("--group", help="project group (default: the owner's own group)")
    create.set_defaults(handler=registry_create)
    listing = registry_commands.add_parser("list", parents=[common], help="list registries")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=registry_list)
    remove = registry_commands.add_parser("delete", parents=[common], help="delete a registry")
    remove.add_argument("name")
    remove.add_argument(
        "--delete-images", action="store_true", help="also delete every image it holds"
    )
    remove.set_defaults(handler=registry_delete)

    user = commands.add_parser("user", help="add, list, change and disable users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", parents=[common], help="add a user")
    add.add_argument("username")
    add.add_argument("--admin", action="store_true", help="a platform admin")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=user_add)
    users = user_commands.add_parser("list", parents=[common], help="list users")
    users.add_argument("--json", action="store_true")
    users.set_defaults(handler=user_list)
    passwd = user_commands.add_parser("passwd", parents=[common], help="change a password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=user_passwd)
    for name in ("disable", "enable"):
        toggle = user_commands.add_parser(name, parents=[common], help=f"{name} a user")
        toggle.add_argument("username")
        toggle.set_defaults(handler=user_disable, command_name=name)

    group = commands.add_parser("group", help="project groups and their members")
    group_commands = group.add_subparsers(dest="group_command", required=True)
    new_group = group_commands.add_parser("create", parents=[common], help="create a group")
    new_group.add_argument("name")
    new_group.add_argument("--owner", default="admin")
    new_group.set_defaults(handler=group_create)
    member = group_commands.add_parser(
        "member", parents=[common], help="set a member's role (none removes them)"
    )
    member.add_argument("group")
    member.add_argument("username")
    member.add_argument("role", choices=["owner", "developer", "guest", "none"])
    member.set_defaults(handler=group_member)

    token = commands.add_parser("token", help="personal access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    new_token = token_commands.add_parser("create", parents=[common], help="create a token")
    new_token.add_argument("user")
    new_token.add_argument("name")
    new_token.add_argument("--read-only", action="store_true", help="pull only")
    new_token.add_argument("--expires-days", type=int)
    new_token.add_argument("--json", action="store_true")
    new_token.set_defaults(handler=token_create)
    revoke = token_commands.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("user")
    revoke.add_argument("id")
    revoke.set_defaults(handler=token_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, RegistryError) as error:
        print(f"ociregistry: {error}", file=sys.stderr)
        return 2
