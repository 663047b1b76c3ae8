"""The ASGI application: one Starlette app, its routes, and its per-process lifespan."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ociregistry import api, errors, v2
from ociregistry.api.common import api_error
from ociregistry.authapi import token
from ociregistry.blobstore.driver import StorageError, StorageFull, StorageUnavailable
from ociregistry.catalog.leases import LeasedJobs
from ociregistry.catalog.pulls import refresh_registry_counts
from ociregistry.config import Settings
from ociregistry.console import routes as console
from ociregistry.content.gc import GarbageCollector
from ociregistry.db.database import is_retryable
from ociregistry.errors import RegistryError
from ociregistry.ops import access, audit, health, metrics, shutdown
from ociregistry.ops.unread_body import ReadUnreadBody
from ociregistry.services import Services
from ociregistry.v2.common import (
    ApiVersionHeader,
    error_response,
    http_error_handler,
    registry_error_handler,
    route_error,
)
from ociregistry.v2.fastpath import HotRoutes

log = logging.getLogger("ociregistry")


def _start_jobs(services: Services) -> LeasedJobs:
    """The background jobs, each under its lease (catalog/leases.py): every worker of every
    instance runs the loops, one at a time runs each job; the jitter spreads the attempts."""
    settings = services.settings
    jobs = LeasedJobs(services.db, settings.job_lease_seconds)

    async def purge_uploads() -> None:
        purged = await services.uploads.purge_expired()
        if purged:
            log.info("purged %d expired upload sessions", purged)

    purge_every = settings.upload_purge_interval_seconds
    jobs.start(
        "upload-purge",
        purge_uploads,
        first_delay=lambda: purge_every * random.uniform(0.5, 1.5),
        interval=lambda: purge_every * random.uniform(0.5, 1.5),
    )
    # Registry pull counts are sums over their images, refreshed on a schedule (SPEC §3).
    refresh_every = settings.registry_count_refresh_seconds
    jobs.start(
        "pull-count-refresh",
        lambda: refresh_registry_counts(services.db, older_than_seconds=refresh_every),
        interval=lambda: min(refresh_every, 60) * random.uniform(0.5, 1.0),
    )
    # Finishes deletions left `deleting`, also after a crash mid-deletion.
    jobs.start(
        "registry-deletions",
        services.registries.finish_deletions,
        interval=lambda: min(refresh_every, 60) * random.uniform(0.5, 1.0),
    )
    # Retention schedules (catalog/retention_plans.py): due plans made and applied.
    retention_every = settings.retention_check_seconds
    if retention_every > 0:
        jobs.start(
            "retention",
            services.retention.run_schedules,
            first_delay=lambda: retention_every * random.uniform(0.5, 1.0),
            interval=lambda: retention_every * random.uniform(0.5, 1.0),
        )
    gc_every = settings.gc_interval_seconds
    if gc_every > 0:  # reclaim the blob space deletions leave behind, off the request path
        collector = GarbageCollector(
            services.db, services.blobs.driver, grace_seconds=settings.gc_grace_seconds
        )

        async def collect_garbage() -> None:
            started = time.monotonic()
            try:
                report = await collector.collect()
            except Exception:
                metrics.GC_RUNS.labels("failed").inc()
                raise
            finally:
                metrics.GC_DURATION.observe(time.monotonic() - started)
            metrics.GC_RUNS.labels("done").inc()
            metrics.GC_RECLAIMED_BYTES.inc(report.bytes_freed)

        jobs.start(
            "garbage-collection",
            collect_garbage,
            first_delay=lambda: gc_every * random.uniform(0.5, 1.5),
            interval=lambda: gc_every * random.uniform(0.5, 1.5),
        )
    return jobs


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
            retry_after=error.retry_after,
        )
    return errors.StorageFailed(f"the registry's storage failed ({error}): nothing was stored")


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


DATABASE_RETRY_AFTER_SECONDS = 2


def database_failure(request: Request, error: Exception) -> RegistryError:
    """A database failure as the OCI error the client gets: 503 `UNAVAILABLE` when the
    database is away (restarting, failing over, refusing connections), which clients retry;
    500 for a statement it refused. Either way the transaction rolled back; logged once here."""
    log.error("database failed during %s %s: %s", request.method, request.url.path, error)
    if is_retryable(error):  # a deadlock or a serialization failure, retried in vain
        return errors.DatabaseUnavailable(
            "the registry's database gave way to conflicting changes, again on each retry: "
            "nothing changed; retry later",
            retry_after=DATABASE_RETRY_AFTER_SECONDS,
        )
    refused = isinstance(error, IntegrityError | ProgrammingError | DataError)
    if refused and not getattr(error, "connection_invalidated", False):
        return errors.DatabaseFailed("the registry's database refused the request: nothing changed")
    return errors.DatabaseUnavailable(
        "the registry's database is unavailable: nothing changed; retry later",
        retry_after=DATABASE_RETRY_AFTER_SECONDS,
    )


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
        jobs = _start_jobs(services)
        services.pulls.start()
        try:
            yield
        finally:
            await jobs.stop(settings.shutdown_timeout_seconds)
            await services.pulls.stop()
            await services.audit.flush()
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

    async def on_database_error(request: Request, error: Exception) -> Response:
        return await on_registry_error(request, database_failure(request, error))

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        known = route_error(request, error)
        if known is None:
            return await http_error_handler(request, error)
        _with_request_id(known)
        if request.url.path.startswith(("/api/", "/console/")):
            response: Response = api_error(known)
        else:
            response = error_response(request, known)
        response.headers.update(error.headers or {})  # `Allow` on a 405
        return response

    exception_handlers: dict[Any, Any] = {
        RegistryError: on_registry_error,
        HTTPException: on_http_error,
        ClientDisconnect: _client_gone,
        StorageError: on_storage_error,
        # A connection to PostgreSQL dropped or refused (asyncpg raises the OS error of a
        # refused connect as it is): the database is away, not the request wrong.
        DBAPIError: on_database_error,
        ConnectionError: on_database_error,
    }
    # The router tries routes in turn: the token service, asked before every docker pull,
    # comes before the sixty routes of the API and the console (they match no /auth path).
    routes = [
        *health.routes,
        *metrics.routes,
        Route("/auth/token", token.get_token, methods=["GET"]),
        Route("/auth/token", token.post_token, methods=["POST"]),
        Route("/auth/jwks.json", token.get_jwks, methods=["GET"]),
        *v2.routes,
        *api.routes,
        *console.routes,
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                access.AccessMiddleware,
                log_requests=settings.access_log,
                log_fields=settings.log_format == "json",
            ),
            # Pulls' hottest requests skip the rest of the stack (v2/fastpath.py says why
            # and what it keeps doing for them): keep it right after the access middleware.
            Middleware(HotRoutes, routes=routes, handlers=exception_handlers),
            # Answers that leave a body unread wait for it (ops/unread_body.py: nginx).
            Middleware(ReadUnreadBody),
            Middleware(ApiVersionHeader),
            Middleware(console.ConsoleHeaders),
            Middleware(audit.AuditLogMiddleware),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )


def create_app_from_environment() -> Starlette:
    """The uvicorn factory each worker process calls; `serve` put the settings in the
    environment."""
    return create_app(Settings.load())
