"""The ASGI application: one Starlette app, its routes, and its per-process lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ociregistry import api, v2
from ociregistry.api.common import api_error
from ociregistry.audit import AuditLogMiddleware
from ociregistry.authapi import token
from ociregistry.catalog.gc import GarbageCollector
from ociregistry.catalog.pulls import refresh_registry_counts
from ociregistry.config import Settings
from ociregistry.console import routes as console
from ociregistry.errors import RegistryError
from ociregistry.services import Services
from ociregistry.v2.common import ApiVersionHeader, http_error_handler, registry_error_handler

UPLOAD_PURGE_INTERVAL_SECONDS = 3600

log = logging.getLogger("ociregistry")


async def _purge_stale_uploads(services: Services) -> None:
    """Remove abandoned upload sessions now and then. Every worker runs this; purging is
    idempotent, and the jitter keeps them from all scanning at once."""
    while True:
        await asyncio.sleep(UPLOAD_PURGE_INTERVAL_SECONDS * random.uniform(0.5, 1.5))
        try:
            purged = await services.uploads.purge_expired()
            if purged:
                log.info("purged %d expired upload sessions", purged)
        except Exception:
            log.exception("purging expired uploads failed")


async def _refresh_registry_counts(services: Services) -> None:
    """Registry pull counts are sums over their images, refreshed on a schedule (SPEC §3)."""
    interval = services.settings.registry_count_refresh_seconds
    while True:
        try:
            await refresh_registry_counts(services.db, older_than_seconds=interval)
            await services.registries.finish_deletions()  # also after a crash mid-deletion
        except Exception:
            log.exception("refreshing registry pull counts failed")
        await asyncio.sleep(min(interval, 60) * random.uniform(0.5, 1.0))


async def _client_gone(request: Request, error: Exception) -> Response:
    """The client hung up mid-body: nothing to answer, nothing worth a traceback."""
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _collect_garbage(services: Services) -> None:
    """Reclaim the blob space deletions leave behind, now and then, off the request path."""
    interval = services.settings.gc_interval_seconds
    if interval <= 0:
        return
    collector = GarbageCollector(
        services.db, services.blobs.driver, grace_seconds=services.settings.gc_grace_seconds
    )
    while True:
        await asyncio.sleep(interval * random.uniform(0.5, 1.5))
        try:
            await collector.collect()
        except Exception:
            log.exception("garbage collection failed; will retry")


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.start(settings)
        app.state.services = services
        background = [
            asyncio.create_task(_purge_stale_uploads(services)),
            asyncio.create_task(_refresh_registry_counts(services)),
            asyncio.create_task(_collect_garbage(services)),
        ]
        services.pulls.start()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await services.pulls.stop()
            await services.close()

    async def on_registry_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RegistryError)
        if request.url.path.startswith(("/api/", "/console/")):
            return api_error(error)
        return await registry_error_handler(request, error)

    async def on_http_error(request: Request, error: Exception) -> Response:
        response = await http_error_handler(request, error)
        if request.url.path.startswith(("/api/", "/console/")):
            assert isinstance(error, HTTPException)
            message = json.loads(response.body)["errors"][0]["message"]
            code = "NOT_FOUND" if error.status_code == 404 else "METHOD_NOT_ALLOWED"
            return JSONResponse(
                {"error": {"code": code, "message": message}},
                status_code=error.status_code,
                headers=error.headers,
            )
        return response

    return Starlette(
        routes=[
            *v2.routes,
            *api.routes,
            *console.routes,
            Route("/auth/token", token.get_token, methods=["GET"]),
            Route("/auth/token", token.post_token, methods=["POST"]),
        ],
        middleware=[
            Middleware(ApiVersionHeader),
            Middleware(console.ConsoleHeaders),
            Middleware(AuditLogMiddleware),
        ],
        exception_handlers={
            RegistryError: on_registry_error,
            HTTPException: on_http_error,
            ClientDisconnect: _client_gone,
        },
        lifespan=lifespan,
    )


def create_app_from_environment() -> Starlette:
    """The uvicorn factory each worker process calls; `serve` put the settings in the
    environment."""
    return create_app(Settings.load())
