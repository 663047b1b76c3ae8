"""`ociregistry user|group|token …`: users, project groups and personal access tokens."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ociregistry.cli.base import output, run_services, say, settings_of


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass("password: ")


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
    users, _ = run_services(settings_of(args), lambda parts: parts.accounts.list_users())
    rows = [
        {
            "username": u.username,
            "is_admin": u.is_admin,
            "disabled": u.disabled,
            "created_at": u.created_at,
        }
        for u in users
    ]
    output(args, rows, ["username", "is_admin", "disabled", "created_at"])
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
    tokens = run_services(settings_of(args), lambda parts: parts.accounts.list_tokens(args.user))
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
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    run_services(settings_of(args), lambda parts: parts.accounts.revoke_token(args.user, args.id))
    say(args, f"revoked token {args.id} of {args.user}", id=args.id, revoked=True)
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    user = commands.add_parser("user", help="users").add_subparsers(
        dest="user_command", required=True
    )
    add = user.add_parser("add", parents=[common], help="add a user")
    add.add_argument("username")
    add.add_argument("--admin", action="store_true", help="a platform admin")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=user_add)
    user.add_parser("list", parents=[common], help="list users").set_defaults(handler=user_list)
    passwd = user.add_parser("passwd", parents=[common], help="change a password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=user_passwd)
    for name in ("disable", "enable"):
        toggle = user.add_parser(name, parents=[common], help=f"{name} a user")
        toggle.add_argument("username")
        toggle.set_defaults(handler=user_disable, command_name=name)

    group = commands.add_parser("group", help="project groups").add_subparsers(
        dest="group_command", required=True
    )
    create = group.add_parser("create", parents=[common], help="create a group")
    create.add_argument("name")
    create.add_argument("--owner", default="admin")
    create.set_defaults(handler=group_create)
    group.add_parser("list", parents=[common], help="list groups").set_defaults(handler=group_list)
    members = group.add_parser("members", parents=[common], help="list a group's members")
    members.add_argument("group")
    members.set_defaults(handler=group_members)
    member = group.add_parser(
        "member", parents=[common], help="set a member's role (none removes them)"
    )
    member.add_argument("group")
    member.add_argument("username")
    member.add_argument("role", choices=["owner", "developer", "guest", "none"])
    member.set_defaults(handler=group_member)

    token = commands.add_parser("token", help="personal access tokens").add_subparsers(
        dest="token_command", required=True
    )
    create_token = token.add_parser("create", parents=[common], help="create a token")
    create_token.add_argument("user")
    create_token.add_argument("name")
    create_token.add_argument("--read-only", action="store_true", help="pull only")
    create_token.add_argument("--expires-days", type=int)
    create_token.set_defaults(handler=token_create)
    tokens = token.add_parser("list", parents=[common], help="list a user's tokens")
    tokens.add_argument("user")
    tokens.set_defaults(handler=token_list)
    revoke = token.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("user")
    revoke.add_argument("id")
    revoke.set_defaults(handler=token_revoke)
