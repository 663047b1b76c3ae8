"""One pure-ASGI middleware for what every request owes the operator: a request id, one
access-log line, and the request metrics.

It wraps `receive` and `send` to count bytes and catch the status, and never buffers a body
(blobs stream through it untouched, as through Starlette's gzip middleware). It awaits nothing
of its own: the log line and the metrics are written when the response ends.

The request id is the client's or proxy's `X-Request-Id` when it is well formed, otherwise a new
one; it is echoed in the response and put in error bodies (see `current_request_id`). The log
line names the route template, the path without its query string (where presigned URLs keep
their signatures), and never a header value but the user agent.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ociregistry.ops import metrics

REQUEST_ID_HEADER = b"x-request-id"
_WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
_UPLOAD_PATH = re.compile(r"/blobs/uploads/?[^/]*$")
_UNMATCHED = "unmatched"
_MAX_LABEL_SETS = 1024
_LINE = '%s %s "%s %s" %d %dB in %dB out %.1fms id=%s'

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ociregistry_request_id", default=None
)
access_log = logging.getLogger("ociregistry.access")


def current_request_id() -> str | None:
    """The id of the request being served, for error bodies."""
    return _request_id.get()


def route_template(scope: Scope) -> str:
    """`/v2/{name}/manifests/{reference}` for the route that served the request: a bounded
    label, never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return _UNMATCHED
    return path.replace(":path", "")


def _request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _WELL_FORMED_ID.fullmatch(value):
                return value.decode("ascii")
            break
    # 128 random bits, as unique as a uuid4; an id needs no secrecy, so the process's own
    # generator (seeded from the system's, and reseeded in a forked child) rather than a
    # system call per request.
    return f"{random.getrandbits(128):032x}"


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")[:256]
    return ""


class AccessMiddleware:
    def __init__(self, app: ASGIApp, *, log_requests: bool = True, log_fields: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests
        # The line's fields as attributes of its record, for the JSON format; the text
        # format shows only the message, and setting eleven attributes a line costs.
        self.log_fields = log_fields
        # The labelled children of the request metrics, looked up once per label set rather
        # than on every request (prometheus-client's `labels()` costs as much as an `inc()`).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id_of(scope)
        reset = _request_id.set(request_id)
        method: str = scope["method"]
        uploading = method in ("POST", "PATCH", "PUT") and bool(_UPLOAD_PATH.search(scope["path"]))
        counts = {"in": 0, "out": 0, "status": 500}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        metrics.REQUESTS_IN_FLIGHT.inc()
        if uploading:
            metrics.UPLOADS_IN_PROGRESS.inc()
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            duration = time.perf_counter() - started
            metrics.REQUESTS_IN_FLIGHT.dec()
            if uploading:
                metrics.UPLOADS_IN_PROGRESS.dec()
            self._record(scope, method, counts, duration, uploading)
            _request_id.reset(reset)

    def _metrics_of(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The request counter and duration histogram for these labels."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                metrics.REQUESTS.labels(method, route, str(status)),
                metrics.REQUEST_DURATION.labels(method, route),
            )
            if len(self._children) < _MAX_LABEL_SETS:  # methods are the client's to choose
                self._children[key] = children
        return children

    def _record(
        self,
        scope: Scope,
        method: str,
        counts: dict[str, int],
        duration: float,
        uploading: bool,
    ) -> None:
        route = route_template(scope)
        status = counts["status"]
        requests, durations = self._metrics_of(method, route, status)
        requests.inc()
        durations.observe(duration)
        if uploading:
            metrics.BLOB_BYTES_RECEIVED.inc(counts["in"])
        elif route.endswith("/blobs/{digest}") and method == "GET":
            metrics.BLOB_BYTES_SENT.inc(counts["out"])
        elif route.endswith("/manifests/{reference}"):
            if method == "PUT" and status == 201:
                metrics.PUSHES.inc()
            elif method == "GET" and status == 200:
                metrics.PULLS.inc()
        if not self.log_requests or not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        principal = scope.get("ociregistry.principal")
        user = getattr(principal, "username", None) or "anonymous"
        address = client[0] if client else ""
        duration_ms = round(duration * 1000, 3)
        request_id = _request_id.get()
        path = scope["path"]
        args = (address, user, method, path, status, counts["in"], counts["out"])
        args += (duration_ms, request_id)
        fields: dict[str, Any] | None = None
        if self.log_fields:
            fields = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "bytes_in": counts["in"],
                "bytes_out": counts["out"],
                "client": address,
                "user": user,
                "user_agent": _header(scope, b"user-agent"),
            }
        # `info()` without its search of the stack for the caller's file and line, which no
        # log format here shows: a third of the line's cost (issue 15).
        access_log.handle(
            access_log.makeRecord(
                access_log.name,
                logging.INFO,
                __file__,
                0,
                _LINE,
                args,
                None,
                extra=fields,
            )
        )
