"""The hottest /v2 requests, served without walking Starlette's router and middleware chain.

Every pull starts with `GET /v2/` and is mostly manifest `GET` and `HEAD`; on those, finding
the route (fifteen regular expressions tried in turn), the exception middleware and three
pass-through middlewares cost about as much CPU as the answer itself (issue 15). This pure
ASGI middleware, placed right after the access middleware (request id, metrics, the access
log: ops/access.py), recognises those three requests by their method and path and calls their
usual endpoints itself: the same handlers, so the same authentication and the same access
decision (`requires`, auth/policy.py), the same errors rendered by the app's own exception
handlers. Everything else goes down the ordinary stack.

What it stands in for, and so must keep doing for these routes: the router's `route`,
`endpoint` and `path_params` in the scope (the access log and metrics name the route by its
template), the `Docker-Distribution-API-Version` header (`ApiVersionHeader`), and the
exception handlers (`ExceptionMiddleware`). `ConsoleHeaders` (/console) and the audit log
(changes only) never apply to these requests. tests/v2/test_fast_path.py checks that these
answers are exactly those of the ordinary stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ociregistry.v2 import base, manifests
from ociregistry.v2.common import API_VERSION_HEADER

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
MANIFESTS = "/manifests/"


def _route_of(routes: list[Any], endpoint: Callable[..., Any]) -> Route:
    return next(r for r in routes if isinstance(r, Route) and r.endpoint is endpoint)


class HotRoutes:
    """`GET /v2/` and `GET`/`HEAD /v2/<name>/manifests/<reference>` straight to their
    endpoints; anything else, and anything this cannot tell apart with certainty, goes on to
    the app unchanged."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: list[Any],
        handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        self.app = app
        self.handlers = handlers
        self._version_check = _route_of(routes, base.api_version_check)
        self._manifest = {
            "GET": _route_of(routes, manifests.get_manifest),
            "HEAD": _route_of(routes, manifests.head_manifest),
        }

    def _match(self, scope: Scope) -> tuple[Route, dict[str, str]] | None:
        """The route and its path parameters, as the router would find them; None when not a
        hot request. The router's patterns: `/v2/` exactly, and `^/v2/(?P<name>.*)/manifests/
        (?P<reference>[^/]+)$`, which no other /v2 route can match (each ends in its own
        literal segment before the last)."""
        path: str = scope["path"]
        method: str = scope["method"]
        if scope.get("root_path"):
            return None
        if path == "/v2/":
            return (self._version_check, {}) if method == "GET" else None
        route = self._manifest.get(method)
        if route is None or not path.startswith("/v2/"):
            return None
        head, found, reference = path.rpartition(MANIFESTS)
        if not found or not reference or "/" in reference or len(head) <= len("/v2/"):
            return None
        return route, {"name": head[len("/v2/") :], "reference": reference}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._match(scope) if scope["type"] == "http" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, path_params = matched
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = path_params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as error:
            handler = self._handler_for(error)
            if handler is None:
                raise
            response = await handler(request, error)
            error.__traceback__ = None  # as Starlette: a reused error must not pile frames up
        response.raw_headers.append(API_VERSION_HEADER)
        await response(scope, receive, send)

    def _handler_for(self, error: Exception) -> ExceptionHandler | None:
        for kind in type(error).__mro__:
            handler = self.handlers.get(kind)
            if handler is not None:
                return handler
        return None
