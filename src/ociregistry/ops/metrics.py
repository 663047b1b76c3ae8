"""Prometheus metrics, correct across every uvicorn worker process.

prometheus-client's multiprocess mode: `serve` points PROMETHEUS_MULTIPROC_DIR at an empty
folder before any worker starts (see `prepare_multiprocess_dir`); each worker writes its
samples to files there, and a scrape, whichever worker answers it, sums them all. So N requests
raise a counter by exactly N whichever workers served them. Gauges of live things (requests in
flight, uploads, database connections) count only live processes: a worker's files are marked
dead when it stops, and a starting worker marks those of workers that died without a word.

Labels are bounded on purpose: a route template such as `/v2/{name}/manifests/{reference}`,
never a raw path, repository, tag or user name, so a scrape leaks no private names and the
number of series stays fixed.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ociregistry import __version__
from ociregistry.blobstore.base import Observer

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

REQUESTS = Counter(
    "ociregistry_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
REQUEST_DURATION = Histogram(
    "ociregistry_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response",
    ["method", "route"],
    buckets=_DURATION_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "ociregistry_http_requests_in_flight", "Requests being served now", multiprocess_mode="livesum"
)
BLOB_BYTES_RECEIVED = Counter(
    "ociregistry_blob_received_bytes", "Blob bytes received by uploads (POST, PATCH, PUT)"
)
BLOB_BYTES_SENT = Counter("ociregistry_blob_sent_bytes", "Blob bytes sent by blob GETs")
UPLOADS_IN_PROGRESS = Gauge(
    "ociregistry_uploads_in_progress",
    "Upload requests streaming blob bytes in now",
    multiprocess_mode="livesum",
)
PUSHES = Counter("ociregistry_manifest_pushes", "Manifests pushed (PUT answered 201)")
PULLS = Counter("ociregistry_manifest_pulls", "Manifests pulled (GET answered 200)")
STORAGE_DURATION = Histogram(
    "ociregistry_storage_operation_duration_seconds",
    "Time one storage driver operation took",
    ["driver", "operation"],
    buckets=_DURATION_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "ociregistry_storage_errors", "Storage driver operations that failed", ["driver", "operation"]
)
GC_RUNS = Counter("ociregistry_gc_runs", "Garbage-collection runs by the server", ["result"])
GC_DURATION = Histogram(
    "ociregistry_gc_duration_seconds",
    "Time one garbage-collection run took",
    buckets=(1, 5, 30, 60, 300, 900, 3600),
)
GC_RECLAIMED_BYTES = Counter(
    "ociregistry_gc_reclaimed_bytes", "Blob bytes garbage collection freed"
)
SIGNIN_FAILURES = Counter(
    "ociregistry_signin_failures", "Sign-ins refused for a wrong name, password or token"
)
DATABASE_CONNECTIONS_IN_USE = Gauge(
    "ociregistry_database_connections_in_use",
    "Database connections checked out of the pools now",
    multiprocess_mode="livesum",
)
BUILD_INFO = Gauge(
    "ociregistry_build_info", "The running version (always 1)", ["version"], multiprocess_mode="max"
)

_PID_FILE = re.compile(r"_(\d+)\.db$")


def prepare_multiprocess_dir() -> Path | None:
    """In `serve`, before the workers start: an empty folder for the workers' samples. An
    operator's PROMETHEUS_MULTIPROC_DIR is used (and emptied); otherwise a private temporary
    folder (not the data folder, which several instances may share). Returns the folder to
    remove after the server stops, if we made it."""
    chosen = os.environ.get(MULTIPROCESS_ENV)
    if chosen:
        folder = Path(chosen)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return None
    folder = Path(tempfile.mkdtemp(prefix="ociregistry-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


def remove_multiprocess_dir(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_started() -> None:
    """In each worker: publish the version, and forget the live gauges of dead workers."""
    BUILD_INFO.labels(version=__version__).set(1)
    folder = os.environ.get(MULTIPROCESS_ENV)
    if not folder:
        return
    for path in Path(folder).glob("gauge_live*.db"):
        match = _PID_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), folder)


def worker_stopped() -> None:
    folder = os.environ.get(MULTIPROCESS_ENV)
    if folder:
        multiprocess.mark_process_dead(os.getpid(), folder)


def watch_pool(engine: Any) -> None:
    """Count the connections a SQLAlchemy (sync) engine's pool has handed out."""
    from sqlalchemy import event

    event.listen(engine, "checkout", lambda *_: DATABASE_CONNECTIONS_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: DATABASE_CONNECTIONS_IN_USE.dec())


@contextmanager
def storage_operation(driver: str, operation: str) -> Iterator[None]:
    """Record one storage driver operation: its duration, and an error if it raises. The one
    place a driver wrapper needs to call."""
    start = time.perf_counter()
    try:
        yield
    except BaseException as error:
        if not isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            STORAGE_ERRORS.labels(driver, operation).inc()
        raise
    finally:
        STORAGE_DURATION.labels(driver, operation).observe(time.perf_counter() - start)


def storage_observer(storage: str, then: Observer | None = None) -> Observer:
    """The storage wrapper's observer (`blobstore.base.CheckedDriver`): each operation's
    duration and errors, labelled by the kind of driver `storage` names (`filesystem`,
    `memory`, `s3`: a bounded label, never a path); `then` is called after."""
    driver = "s3" if storage.startswith("s3://") else storage

    def observe(operation: str, path: str, seconds: float, error: BaseException | None) -> None:
        STORAGE_DURATION.labels(driver, operation).observe(seconds)
        if error is not None and not isinstance(error, GeneratorExit | asyncio.CancelledError):
            STORAGE_ERRORS.labels(driver, operation).inc()
        if then is not None:
            then(operation, path, seconds, error)

    return observe


def _exposition() -> bytes:
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def scrape(request: Request) -> Response:
    """GET /metrics. With `metrics_token` set, only for `Authorization: Bearer <token>`."""
    wanted = request.app.state.services.settings.metrics_token
    if wanted:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), wanted.encode()
        ):
            return Response(
                "metrics need Authorization: Bearer <metrics_token>\n",
                status_code=401,
                media_type="text/plain",
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )
    body = await asyncio.to_thread(_exposition)  # reads every worker's files
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})


routes = [Route("/metrics", scrape, methods=["GET"])]
