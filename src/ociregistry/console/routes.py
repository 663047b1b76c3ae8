"""`/console/…`: the page, its static files, and signing in and out.

Signing in sets an HttpOnly, SameSite=Strict cookie holding a session token (a JWT of its own
kind, signed like registry tokens). The page never sees the cookie; it gets the session's
CSRF token instead and sends it as `X-CSRF-Token` with every change (see
authapi/credentials.py). Every console response forbids inline scripts through its
Content-Security-Policy.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ociregistry.api.common import caller, json_body, services
from ociregistry.auth.tokens import SESSION_TOKEN
from ociregistry.authapi.credentials import SESSION_COOKIE, check_password
from ociregistry.errors import Unauthenticated
from ociregistry.ops.audit import note

STATIC = Path(__file__).parent / "static"
SESSION_SECONDS = 12 * 3600
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def _session_json(request: Request, username: str, is_admin: bool, csrf: str) -> dict[str, Any]:
    """The signed-in user, and the settings the console's texts quote (the interval of the
    registry pull-count refresh), so that they say what this registry does."""
    settings = services(request).settings
    return {
        "username": username,
        "is_admin": is_admin,
        "csrf_token": csrf,
        "registry_count_refresh_seconds": settings.registry_count_refresh_seconds,
    }


async def sign_in(request: Request) -> JSONResponse:
    body = await json_body(
        request, {"username": str, "password": str}, required=("username", "password")
    )
    parts = services(request)
    note(request, actor=body["username"][:128])
    found = await check_password(parts, request, body["username"], body["password"])
    if found.token_id is not None:
        raise Unauthenticated("sign in to the console with a password, not an access token")
    csrf = secrets.token_urlsafe(24)
    token, ttl = parts.signer.issue(
        found.user.username,
        [],
        ttl_seconds=SESSION_SECONDS,
        kind=SESSION_TOKEN,
        extra={"csrf": csrf},
    )
    response = JSONResponse(_session_json(request, found.user.username, found.user.is_admin, csrf))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def current_session(request: Request) -> JSONResponse:
    principal = await caller(request)
    if principal.csrf_token is None:
        raise Unauthenticated("not signed in to the console")
    return JSONResponse(
        _session_json(request, principal.username or "", principal.is_admin, principal.csrf_token)
    )


async def sign_out(request: Request) -> Response:
    principal = await caller(request, required=False)  # checks the CSRF token of a session
    token = request.cookies.get(SESSION_COOKIE)
    if principal.csrf_token is not None and token:
        parts = services(request)
        claims = parts.signer.verify(token, SESSION_TOKEN)
        await parts.accounts.revoke_session(
            str(claims.claims["jti"]), datetime.fromtimestamp(claims.expires_at, UTC)
        )
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


async def to_console(request: Request) -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


class ConsoleHeaders:
    """Security headers on every /console response, streamed through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (
            scope["path"].startswith("/console") or scope["path"] == "/"
        ):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


routes = [
    Route("/", to_console, methods=["GET"]),
    Route("/console", to_console, methods=["GET"]),
    Route("/console/", page, methods=["GET"]),
    Route("/console/session", sign_in, methods=["POST"]),
    Route("/console/session", current_session, methods=["GET"]),
    Route("/console/session", sign_out, methods=["DELETE"]),
    Mount("/console/static", app=StaticFiles(directory=STATIC), name="console-static"),
]
