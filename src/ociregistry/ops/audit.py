"""The audit log (issue 14, point 5): who changed what, when, from where, and how it ended.

One ASGI middleware records every request that changes something, whatever the route: the
management API's POST, PUT, PATCH and DELETE (registries, visibility, labels, quotas and
immutable rules, images and tags, groups and members, users, tokens), deletions through /v2
(manifests, tags, blobs), console sign-ins and sign-outs, and failed sign-ins at the token
service. Denied and failed attempts are recorded too: their outcome says so. Being one place,
no route can forget it. The event is committed before the response starts (an answered change
is an audited one), by group commit: the events of the moment share one transaction, so a
flood of audited requests never queues one database write each (catalog/audit.py).

Each event holds the actor (the authenticated user, else the user name tried), the time, the
client address (as uvicorn resolved it behind trusted proxies), the request id (the one the
access middleware gave the request, ops/access.py), the action and target, the registry it
concerns (registry owners see their registries' events), the HTTP status and outcome, and a
little detail a handler may add (`note`). Rows older than `audit_log_retention_days` go, at
most once an hour per worker, in the transaction that writes events.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ociregistry.catalog.audit import AUDIT_SORTS, AuditLog, AuditRecord
from ociregistry.ops import access

log = logging.getLogger("ociregistry.audit")
NOTE_KEY = "ociregistry.audit"
_REG = r"/api/v1/registries/(?P<registry>[^/:]+)"
_IMAGE = _REG + r"/images/(?P<image>.+?)"
_V2 = r"/v2/(?P<registry>[^/]+)/(?P<image>.+)"
# (method, path, action); the first match names the request. Paths as the client sent them.
_ACTIONS = [
    (m, re.compile(f"^{p}$"), a)
    for m, p, a in (
        ("POST", r"/api/v1/registries", "registry.create"),
        ("POST", r"/api/v1/registries:batchDelete", "registry.batch_delete"),
        ("PATCH", _REG, "registry.update"),
        ("DELETE", _REG, "registry.delete"),
        ("PUT", _REG + r"/labels", "registry.labels"),
        ("PUT", _REG + r"/retention", "retention.policy"),
        ("POST", _REG + r"/retention/plans", "retention.plan"),
        ("POST", _REG + r"/retention/plans/[^/]+:apply", "retention.apply"),
        ("POST", _REG + r"/images:batchDelete", "image.batch_delete"),
        ("POST", _IMAGE + r"/-/tags:batchDelete", "tag.batch_delete"),
        ("DELETE", _IMAGE + r"/-/tags/(?P<tag>[^/]+)", "tag.delete"),
        ("DELETE", _IMAGE, "image.delete"),
        ("POST", r"/api/v1/project-groups", "group.create"),
        ("PUT", r"/api/v1/project-groups/[^/]+/members/[^/]+", "member.set"),
        ("DELETE", r"/api/v1/project-groups/[^/]+/members/[^/]+", "member.remove"),
        ("POST", r"/api/v1/users", "user.create"),
        ("PATCH", r"/api/v1/users/[^/]+", "user.update"),
        ("POST", r"/api/v1/users/[^/]+/tokens", "token.create"),
        ("DELETE", r"/api/v1/users/[^/]+/tokens/[^/]+", "token.revoke"),
        ("DELETE", _V2 + r"/manifests/(?P<reference>[^/]+)", "manifest.delete"),
        ("DELETE", _V2 + r"/blobs/(?P<digest>[^/]+)", "blob.delete"),
        ("POST", r"/console/session", "session.sign_in"),
        ("DELETE", r"/console/session", "session.sign_out"),
        ("GET", r"/auth/token", "token.sign_in"),
        ("POST", r"/auth/token", "token.sign_in"),
        ("POST", r"/api/v1/[^/]+.*", "api.change"),
        ("PUT", r"/api/v1/[^/]+.*", "api.change"),
        ("PATCH", r"/api/v1/[^/]+.*", "api.change"),
        ("DELETE", r"/api/v1/[^/]+.*", "api.change"),
    )
]
ONLY_FAILURES = {"token.sign_in"}  # every docker command fetches tokens; failures matter


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    return "denied" if status in (401, 403) else "failure"


def note(request: Request, **values: Any) -> None:
    """Add to this request's audit event: `actor` (a user name tried), `registry`,
    `detail` (a small JSON object: what changed)."""
    request.scope.setdefault(NOTE_KEY, {}).update(values)


def _basic_username(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value[:6].lower() == b"basic ":
            try:
                return base64.b64decode(value[6:], validate=True).decode().partition(":")[0][:128]
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")[:64]
    return None


class AuditLogMiddleware:
    """Records the requests `_ACTIONS` names. The event is committed before the response
    starts, so an answered change is an audited one and a client that reads the log next
    finds it; its write is shared with the other events of the moment (catalog/audit.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        action = None
        for action_method, pattern, name in _ACTIONS:
            if action_method == method and (found := pattern.match(path)) is not None:
                action = name, found
                break
        if action is None:
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {}
        name, match = action

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start" and "status" not in seen:
                seen["status"] = status = message["status"]
                request_id = _header(message.get("headers", []), b"x-request-id")
                if not (name in ONLY_FAILURES and status < 400):
                    await self._record_safely(scope, name, match, status, request_id)
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            if "status" not in seen:  # no answer went out (the app failed): a 500
                await self._record_safely(scope, name, match, 500, None)

    async def _record_safely(
        self, scope: Scope, action: str, match: re.Match[str], status: int, request_id: str | None
    ) -> None:
        try:
            await self._record(scope, action, match, status, request_id)
        except Exception:  # losing an event must not fail the answer
            log.exception("recording an audit event failed")

    async def _record(
        self, scope: Scope, action: str, match: re.Match[str], status: int, request_id: str | None
    ) -> None:
        services = scope["app"].state.services
        noted = scope.get(NOTE_KEY, {})
        principal = scope.get("ociregistry.principal")
        actor = getattr(principal, "username", None) or noted.get("actor")
        if actor is None:
            actor = _basic_username(scope)
        groups = match.groupdict()
        registry = noted.get("registry") or groups.get("registry")
        client = scope.get("client")
        headers = scope.get("headers", [])
        await services.audit.record(
            AuditRecord(
                actor=actor,
                client=client[0] if client else "",
                request_id=request_id
                or access.current_request_id()
                or _header(headers, b"x-request-id"),
                action=action,
                method=scope["method"],
                target=unquote(scope["path"])[:512],
                registry=unquote(registry)[:63] if registry else None,
                status=status,
                outcome=outcome_of(status),
                detail=noted.get("detail"),
            )
        )


__all__ = ["AUDIT_SORTS", "AuditLog", "AuditLogMiddleware", "AuditRecord", "note", "outcome_of"]
