"""`ociregistry user|group|token …`: users, project groups and personal access tokens."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ociregistry.auth.accounts import UserInfo
from ociregistry.auth.throttle import account_key
from ociregistry.catalog.listings import Page
from ociregistry.cli.base import output, run_services, say, settings_of
from ociregistry.config import ConfigError
from ociregistry.errors import AccountUnknown
from ociregistry.services import Services


def _password(args: argparse.Namespace) -> str:
    """The new password: from stdin with --password-stdin, else asked at the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ConfigError(
            "no terminal to ask for the password on: pipe it in with --password-stdin, "
            "e.g. `printf '%s\\n' \"$PASSWORD\" | ociregistry user add NAME --password-stdin`"
        )
    try:
        first = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
    except EOFError:
        raise ConfigError("no password given") from None
    if first != again:
        raise ConfigError("the two passwords differ; nothing changed")
    return first


def user_add(args: argparse.Namespace) -> int:
    password = _password(args)
    user = run_services(
        settings_of(args),
        lambda parts: parts.accounts.create_user(args.username, password, is_admin=args.admin),
    )
    say(
        args,
        f"created user {user.username}{' (platform admin)' if user.is_admin else ''}",
        username=user.username,
        is_admin=user.is_admin,
    )
    return 0


def user_list(args: argparse.Namespace) -> int:
    async def work(parts: Services) -> tuple[list[UserInfo], dict[str, Any]]:
        users, _ = await parts.accounts.list_users()
        blocked = await parts.throttle.blocked_until([account_key(u.username) for u in users])
        return users, blocked

    users, blocked = run_services(settings_of(args), work)
    rows = [
        {
            "username": u.username,
            "is_admin": u.is_admin,
            "disabled": u.disabled,
            "blocked_until": blocked.get(account_key(u.username)),
            "created_at": u.created_at,
        }
        for u in users
    ]
    output(args, rows, ["username", "is_admin", "disabled", "blocked_until", "created_at"])
    return 0


def user_unlock(args: argparse.Namespace) -> int:
    async def work(parts: Services) -> bool:
        if await parts.accounts.get_user(args.username) is None:
            raise AccountUnknown(f"user {args.username!r} does not exist")
        return await parts.throttle.unlock(account_key(args.username))

    cleared = run_services(settings_of(args), work)
    note = "" if cleared else " (it had no failed sign-ins on record)"
    say(args, f"unlocked user {args.username}{note}", username=args.username, cleared=cleared)
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    run_services(
        settings_of(args), lambda parts: parts.accounts.set_password(args.username, password)
    )
    say(args, f"changed the password of {args.username}", username=args.username)
    return 0


def user_disable(args: argparse.Namespace) -> int:
    enable = args.command_name == "enable"
    run_services(
        settings_of(args), lambda parts: parts.accounts.set_disabled(args.username, not enable)
    )
    say(
        args,
        f"{'enabled' if enable else 'disabled'} user {args.username}",
        username=args.username,
        disabled=not enable,
    )
    return 0


def group_create(args: argparse.Namespace) -> int:
    run_services(settings_of(args), lambda parts: parts.groups.create(args.name, args.owner))
    say(
        args,
        f"created project group {args.name}, owned by {args.owner}",
        name=args.name,
        owner=args.owner,
    )
    return 0


def group_list(args: argparse.Namespace) -> int:
    names = run_services(settings_of(args), lambda parts: parts.groups.list())
    output(args, [{"name": name} for name in names], ["name"])
    return 0


def group_members(args: argparse.Namespace) -> int:
    members = run_services(settings_of(args), lambda parts: parts.groups.members(args.group))
    output(args, [{"username": m.username, "role": m.role} for m in members], ["username", "role"])
    return 0


def group_member(args: argparse.Namespace) -> int:
    if args.role == "none":
        run_services(
            settings_of(args), lambda parts: parts.groups.remove_member(args.group, args.username)
        )
        say(args, f"removed {args.username} from {args.group}", removed=True)
    else:
        run_services(
            settings_of(args),
            lambda parts: parts.groups.set_member(args.group, args.username, args.role),
        )
        say(args, f"{args.username} is now {args.role} of {args.group}", role=args.role)
    return 0


def token_create(args: argparse.Namespace) -> int:
    expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None
    info, secret = run_services(
        settings_of(args),
        lambda parts: parts.accounts.create_token(
            args.user, args.name, read_only=args.read_only, expires_at=expires
        ),
    )
    say(
        args,
        f"token {info.name} ({info.public_id}) for {args.user}; shown this once:\n{secret}",
        id=info.public_id,
        name=info.name,
        token=secret,
        read_only=info.read_only,
    )
    return 0


def token_list(args: argparse.Namespace) -> int:
    page = Page(args.page, args.page_size)
    tokens, total = run_services(
        settings_of(args),
        lambda parts: parts.accounts.list_tokens(
            args.user, q=args.q, offset=page.offset, limit=page.size
        ),
    )
    rows = [
        {
            "id": t.public_id,
            "name": t.name,
            "read_only": t.read_only,
            "expires_at": t.expires_at,
            "revoked_at": t.revoked_at,
            "last_used_at": t.last_used_at,
            "created_at": t.created_at,
        }
        for t in tokens
    ]
    output(args, rows, ["id", "name", "read_only", "expires_at", "revoked_at", "last_used_at"])
    if not getattr(args, "json", False) and total > page.offset + len(rows):
        more = page.number + 1
        print(f"(page {page.number}: {len(rows)} of {total} tokens; --page {more} for more)")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    run_services(settings_of(args), lambda parts: parts.accounts.revoke_token(args.user, args.id))
    say(args, f"revoked token {args.id} of {args.user}", id=args.id, revoked=True)
    return 0


def _positive(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    user = commands.add_parser("user", help="users").add_subparsers(
        dest="user_command", required=True
    )
    add = user.add_parser("add", parents=[common], help="add a user")
    add.add_argument("username", help="1-64 characters of a-z 0-9 . _ -")
    add.add_argument("--admin", action="store_true", help="a platform admin")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else it is asked at the terminal)",
    )
    add.set_defaults(handler=user_add)
    user.add_parser(
        "list", parents=[common], help="list users, with any sign-in block"
    ).set_defaults(handler=user_list)
    passwd = user.add_parser("passwd", parents=[common], help="change a password")
    passwd.add_argument("username", help="whose password")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else it is asked at the terminal)",
    )
    passwd.set_defaults(handler=user_passwd)
    for name in ("disable", "enable"):
        toggle = user.add_parser(name, parents=[common], help=f"{name} a user")
        toggle.add_argument("username", help=f"the user to {name}")
        toggle.set_defaults(handler=user_disable, command_name=name)
    unlock = user.add_parser(
        "unlock", parents=[common], help="lift the block that failed sign-ins put on a user"
    )
    unlock.add_argument("username", help="the user to unlock")
    unlock.set_defaults(handler=user_unlock)

    group = commands.add_parser("group", help="project groups").add_subparsers(
        dest="group_command", required=True
    )
    create = group.add_parser("create", parents=[common], help="create a group")
    create.add_argument("name", help="the group's name")
    create.add_argument("--owner", default="admin", help="its first owner (default admin)")
    create.set_defaults(handler=group_create)
    group.add_parser("list", parents=[common], help="list groups").set_defaults(handler=group_list)
    members = group.add_parser("members", parents=[common], help="list a group's members")
    members.add_argument("group", help="the project group")
    members.set_defaults(handler=group_members)
    member = group.add_parser(
        "member", parents=[common], help="set a member's role (none removes them)"
    )
    member.add_argument("group", help="the project group")
    member.add_argument("username", help="the user")
    member.add_argument(
        "role",
        choices=["owner", "developer", "guest", "none"],
        help="owner, developer (push, delete), guest (pull), or none (remove)",
    )
    member.set_defaults(handler=group_member)

    token = commands.add_parser("token", help="personal access tokens").add_subparsers(
        dest="token_command", required=True
    )
    create_token = token.add_parser("create", parents=[common], help="create a token")
    create_token.add_argument("user", help="the token's owner (the username to sign in with)")
    create_token.add_argument("name", help="what the token is for, e.g. ci")
    create_token.add_argument("--read-only", action="store_true", help="pull only")
    create_token.add_argument(
        "--expires-days",
        type=_positive,
        help="valid for this many days (default: until revoked)",
    )
    create_token.set_defaults(handler=token_create)
    tokens = token.add_parser("list", parents=[common], help="list a user's tokens")
    tokens.add_argument("user", help="whose tokens")
    tokens.add_argument("--q", help="only tokens whose name contains this")
    tokens.add_argument("--page", type=_positive, default=1, help="which page (default 1)")
    tokens.add_argument(
        "--page-size", type=_positive, default=100, help="tokens per page (default 100)"
    )
    tokens.set_defaults(handler=token_list)
    revoke = token.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("user", help="the token's owner")
    revoke.add_argument("id", help="the token's id, as `token list` shows it")
    revoke.set_defaults(handler=token_revoke)
