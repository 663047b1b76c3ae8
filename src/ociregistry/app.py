"""The ASGI application: one Starlette app, its routes, and its per-process lifespan."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ociregistry import api, errors, v2
from ociregistry.api.common import api_error
from ociregistry.authapi import token
from ociregistry.blobstore.driver import StorageError, StorageFull, StorageUnavailable
from ociregistry.catalog.gc import GarbageCollector
from ociregistry.catalog.pulls import refresh_registry_counts
from ociregistry.config import Settings
from ociregistry.console import routes as console
from ociregistry.errors import RegistryError
from ociregistry.ops import access, health, metrics, shutdown
from ociregistry.services import Services
from ociregistry.v2.common import ApiVersionHeader, http_error_handler, registry_error_handler

UPLOAD_PURGE_INTERVAL_SECONDS = 3600

log = logging.getLogger("ociregistry")


async def _purge_stale_uploads(services: Services, jobs: shutdown.BackgroundJobs) -> None:
    """Remove abandoned upload sessions now and then. Every worker runs this; purging is
    idempotent, and the jitter keeps them from all scanning at once."""
    while await jobs.pause(UPLOAD_PURGE_INTERVAL_SECONDS * random.uniform(0.5, 1.5)):
        try:
            purged = await services.uploads.purge_expired()
            if purged:
                log.info("purged %d expired upload sessions", purged)
        except Exception:
            log.exception("purging expired uploads failed")


async def _refresh_registry_counts(services: Services, jobs: shutdown.BackgroundJobs) -> None:
    """Registry pull counts are sums over their images, refreshed on a schedule (SPEC §3)."""
    interval = services.settings.registry_count_refresh_seconds
    while True:
        try:
            await refresh_registry_counts(services.db, older_than_seconds=interval)
            await services.registries.finish_deletions()  # also after a crash mid-deletion
        except Exception:
            log.exception("refreshing registry pull counts failed")
        if not await jobs.pause(min(interval, 60) * random.uniform(0.5, 1.0)):
            return


async def _client_gone(request: Request, error: Exception) -> Response:
    """The client hung up mid-body: nothing to answer, nothing worth a traceback."""
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=400)


def storage_failure(request: Request, error: Exception) -> RegistryError:
    """A storage failure as the OCI error the client gets: 507 when full, 503 when the store
    is unavailable, 500 otherwise; each says what failed, and is logged once here."""
    log.error("storage failed during %s %s: %s", request.method, request.url.path, error)
    if isinstance(error, StorageFull):
        return errors.StorageFull(
            f"the registry's storage is full ({error}): nothing was stored; retry once space "
            "is freed"
        )
    if isinstance(error, StorageUnavailable):
        return errors.StorageUnavailable(
            f"the registry's storage is unavailable ({error}); retry later",
            headers={"Retry-After": str(error.retry_after)},
        )
    return errors.StorageFailed(f"the registry's storage failed ({error}): nothing was stored")


async def _collect_garbage(services: Services, jobs: shutdown.BackgroundJobs) -> None:
    """Reclaim the blob space deletions leave behind, now and then, off the request path."""
    interval = services.settings.gc_interval_seconds
    if interval <= 0:
        return
    collector = GarbageCollector(
        services.db, services.blobs.driver, grace_seconds=services.settings.gc_grace_seconds
    )
    while await jobs.pause(interval * random.uniform(0.5, 1.5)):
        started = time.monotonic()
        try:
            report = await collector.collect()
        except Exception:
            metrics.GC_RUNS.labels("failed").inc()
            log.exception("garbage collection failed; will retry")
        else:
            metrics.GC_RUNS.labels("done").inc()
            metrics.GC_RECLAIMED_BYTES.inc(report.bytes_freed)
        metrics.GC_DURATION.observe(time.monotonic() - started)


def _request_detail() -> dict[str, str]:
    request_id = access.current_request_id()
    return {"request_id": request_id} if request_id else {}


def _with_request_id(error: RegistryError) -> None:
    """Put the request id in the error's detail, so a user's report can be found in the logs.
    A detail that is not an object (a spec-defined shape) is left as it is."""
    if error.detail is None:
        error.detail = _request_detail() or None
    elif isinstance(error.detail, dict):
        error.detail = {**error.detail, **_request_detail()}


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.start(settings)
        app.state.services = services
        readiness = app.state.readiness = health.Readiness(services.db, services.blobs.driver)
        shutdown.on_terminate(
            lambda: setattr(readiness, "draining", True), settings.shutdown_delay_seconds
        )
        metrics.worker_started()
        services.db.watch_pools(metrics.watch_pool)
        jobs = shutdown.BackgroundJobs()
        for job in (_purge_stale_uploads, _refresh_registry_counts, _collect_garbage):
            jobs.start(job(services, jobs))
        services.pulls.start()
        try:
            yield
        finally:
            await jobs.stop(settings.shutdown_timeout_seconds)
            await services.pulls.stop()
            await services.close()
            metrics.worker_stopped()

    async def on_registry_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RegistryError)
        _with_request_id(error)
        if request.url.path.startswith(("/api/", "/console/")):
            return api_error(error)
        return await registry_error_handler(request, error)

    async def on_storage_error(request: Request, error: Exception) -> Response:
        return await on_registry_error(request, storage_failure(request, error))

    async def on_http_error(request: Request, error: Exception) -> Response:
        response = await http_error_handler(request, error)
        if request.url.path.startswith(("/api/", "/console/")):
            assert isinstance(error, HTTPException)
            message = json.loads(response.body)["errors"][0]["message"]
            code = "NOT_FOUND" if error.status_code == 404 else "METHOD_NOT_ALLOWED"
            return JSONResponse(
                {"error": {"code": code, "message": message, "detail": _request_detail()}},
                status_code=error.status_code,
                headers=error.headers,
            )
        body = json.loads(response.body)
        body["errors"][0].setdefault("detail", _request_detail())
        return JSONResponse(body, status_code=response.status_code, headers=error.headers)

    return Starlette(
        routes=[
            *health.routes,
            *metrics.routes,
            *v2.routes,
            *api.routes,
            *console.routes,
            Route("/auth/token", token.get_token, methods=["GET"]),
            Route("/auth/token", token.post_token, methods=["POST"]),
        ],
        middleware=[
            Middleware(access.AccessMiddleware, log_requests=settings.access_log),
            Middleware(ApiVersionHeader),
            Middleware(console.ConsoleHeaders),
        ],
        exception_handlers={
            RegistryError: on_registry_error,
            HTTPException: on_http_error,
            ClientDisconnect: _client_gone,
            StorageError: on_storage_error,
        },
        lifespan=lifespan,
    )


def create_app_from_environment() -> Starlette:
    """The uvicorn factory each worker process calls; `serve` put the settings in the
    environment."""
    return create_app(Settings.load())
