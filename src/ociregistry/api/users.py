"""`/api/v1/users…`: accounts (platform admins manage them; everyone sees themselves) and
personal access tokens (each user manages their own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ociregistry.api.common import (
    caller,
    encode_cursor,
    json_body,
    keyset_params,
    listing,
    no_content,
    platform_admin,
    rfc3339,
    services,
    writer,
)
from ociregistry.auth.accounts import TokenInfo, UserInfo
from ociregistry.auth.policy import Principal, is_platform_admin
from ociregistry.auth.throttle import account_key
from ociregistry.errors import InvalidArgument, NotFound


def _user_json(user: UserInfo, blocked: dict[str, datetime]) -> dict[str, Any]:
    return {
        "username": user.username,
        "is_admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": rfc3339(user.created_at),
        "blocked_until": rfc3339(blocked.get(account_key(user.username))),
    }


async def _blocked(request: Request, users: list[UserInfo]) -> dict[str, datetime]:
    """Which of these accounts failed sign-ins have blocked, and until when."""
    return await services(request).throttle.blocked_until([account_key(u.username) for u in users])


def _token_json(token: TokenInfo) -> dict[str, Any]:
    return {
        "id": token.public_id,
        "name": token.name,
        "read_only": token.read_only,
        "expires_at": rfc3339(token.expires_at),
        "revoked_at": rfc3339(token.revoked_at),
        "last_used_at": rfc3339(token.last_used_at),
        "created_at": rfc3339(token.created_at),
    }


def _admin(principal: Principal) -> None:
    platform_admin(principal, "manage users")


def _self_or_admin(request: Request, principal: Principal) -> str:
    username = request.path_params["username"]
    if username == "me":
        username = principal.username or ""
    if username != principal.username and not is_platform_admin(principal):
        raise NotFound(f"user {username!r} does not exist")
    return username


async def list_users(request: Request) -> JSONResponse:
    principal = await caller(request)
    _admin(principal)
    page, q, sort = keyset_params(request, "users")
    users, total, following = await services(request).accounts.user_page(q=q, sort=sort, page=page)
    blocked = await _blocked(request, users)
    return listing(
        [_user_json(u, blocked) for u in users],
        total,
        page,
        following=encode_cursor("users", sort, q, following),
    )


async def create_user(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    _admin(principal)
    body = await json_body(
        request,
        {"username": str, "password": str, "is_admin": bool},
        required=("username", "password"),
    )
    user = await services(request).accounts.create_user(
        body["username"], body["password"], is_admin=body.get("is_admin", False)
    )
    return JSONResponse(_user_json(user, {}), status_code=201)


async def get_user(request: Request) -> JSONResponse:
    principal = await caller(request)
    username = _self_or_admin(request, principal)
    user = await services(request).accounts.get_user(username)
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return JSONResponse(_user_json(user, await _blocked(request, [user])))


async def update_user(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    username = _self_or_admin(request, principal)
    body = await json_body(request, {"password": str, "disabled": bool})
    accounts = services(request).accounts
    if "disabled" in body:
        _admin(principal)
        await accounts.set_disabled(username, body["disabled"])
    if "password" in body:
        await accounts.set_password(username, body["password"])
    user = await accounts.get_user(username)
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return JSONResponse(_user_json(user, await _blocked(request, [user])))


async def unlock_user(request: Request) -> JSONResponse:
    """Lift the block that failed sign-ins put on an account (admins)."""
    principal = writer(await caller(request))
    _admin(principal)
    username = request.path_params["username"]
    accounts = services(request).accounts
    user = await accounts.get_user(username)
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    await services(request).throttle.unlock(account_key(username))
    return JSONResponse(_user_json(user, {}))


async def list_tokens(request: Request) -> JSONResponse:
    principal = await caller(request)
    username = _self_or_admin(request, principal)
    page, q, sort = keyset_params(request, "tokens")
    tokens, total, following = await services(request).accounts.token_page(
        username, q=q, sort=sort, page=page
    )
    return listing(
        [_token_json(t) for t in tokens],
        total,
        page,
        following=encode_cursor("tokens", sort, q, following),
    )


async def create_token(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    username = _self_or_admin(request, principal)
    body = await json_body(
        request,
        {"name": str, "read_only": bool, "expires_at": (str, type(None))},
        required=("name",),
    )
    expires_at = None
    if body.get("expires_at"):
        try:
            expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument(
                "expires_at must be an RFC 3339 time", detail={"field": "expires_at"}
            ) from None
        if expires_at.tzinfo is None:
            raise InvalidArgument("expires_at needs a time zone", detail={"field": "expires_at"})
        try:
            expires_at = expires_at.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
            raise InvalidArgument(
                "expires_at is out of range", detail={"field": "expires_at"}
            ) from None
    info, secret = await services(request).accounts.create_token(
        username, body["name"], read_only=body.get("read_only", False), expires_at=expires_at
    )
    return JSONResponse({**_token_json(info), "token": secret}, status_code=201)


async def revoke_token(request: Request) -> Response:
    principal = writer(await caller(request))
    username = _self_or_admin(request, principal)
    await services(request).accounts.revoke_token(username, request.path_params["token_id"])
    return no_content()
