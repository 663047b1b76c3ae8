"""`/livez` and `/readyz`: the probes an orchestrator or load balancer asks.

Liveness checks nothing but that the process answers, so a database outage never makes the
orchestrator restart every instance at once. Readiness checks what a request needs (the
database answers, its schema is at the migration this code expects, the storage answers)
and says 503 as soon as shutdown begins, so traffic drains away before the listener closes.
Its result is cached for a few seconds per worker: probes then cost nothing. Neither body says
anything private (no error text, no path, no address): failures are logged for the operator.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ociregistry.blobstore.driver import StorageDriver
from ociregistry.db.database import MIGRATIONS, Database

READINESS_CACHE_SECONDS = 2.0
CHECK_TIMEOUT_SECONDS = 5.0
NO_STORE = {"cache-control": "no-store"}

log = logging.getLogger("ociregistry.health")


def migration_head() -> str:
    """The head revision this code expects the schema at: the one revision of
    `migrations/versions/` that no other names as its `down_revision`.

    Read from the files' literal assignments rather than through Alembic's ScriptDirectory,
    which would import Alembic, Mako and Pygments into every worker (8 MiB each) for one
    string; `serve` has run the migrations with Alembic already, and a test checks that both
    find the same head."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if "revision" in names:
                    revisions.add(ast.literal_eval(node.value))
                elif "down_revision" in names:
                    down = ast.literal_eval(node.value)
                    downs.update([down] if isinstance(down, str) else down or ())
    heads = revisions - downs
    assert len(heads) == 1, f"migrations must have one head, not {sorted(heads)}"
    return heads.pop()


class Readiness:
    """The readiness of one worker: cached checks, and the shutdown flag that overrides them."""

    def __init__(self, db: Database, driver: StorageDriver) -> None:
        self.db = db
        self.driver = driver
        self.head = migration_head()
        self.draining = False
        self._checked_at = -READINESS_CACHE_SECONDS
        self._failing: list[str] = []
        self._lock = asyncio.Lock()
        self._probe_path = f"health/probe-{os.getpid()}"

    async def _database(self) -> None:
        async with self.db.read() as conn:
            await conn.scalar(text("SELECT 1"))

    async def _schema(self) -> None:
        async with self.db.read() as conn:
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        if version != self.head:
            raise RuntimeError(f"schema at {version}, this code needs {self.head}")

    async def _storage(self) -> None:
        await self.driver.put_content(self._probe_path, b"ok")
        await self.driver.delete(self._probe_path)

    async def failing(self) -> list[str]:
        """Names of the checks that fail now (from a result at most a few seconds old)."""
        async with self._lock:  # one round of checks at a time, the others wait for it
            if time.monotonic() - self._checked_at < READINESS_CACHE_SECONDS:
                return self._failing
            checks: dict[str, Callable[[], Awaitable[None]]] = {
                "database": self._database,
                "schema": self._schema,
                "storage": self._storage,
            }
            failing = []
            for name, check in checks.items():
                try:
                    await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
                except Exception as error:
                    log.warning("readiness check %s fails: %r", name, error)
                    failing.append(name)
            self._failing, self._checked_at = failing, time.monotonic()
            return failing


async def livez(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    if readiness.draining:
        return JSONResponse(
            {"status": "unavailable", "checks": {"shutdown": "shutting down"}},
            status_code=503,
            headers=NO_STORE,
        )
    failing = await readiness.failing()
    checks = {name: ("failing" if name in failing else "ok") for name in _CHECK_NAMES}
    if failing:
        return JSONResponse(
            {"status": "unavailable", "checks": checks}, status_code=503, headers=NO_STORE
        )
    return JSONResponse({"status": "ok", "checks": checks}, headers=NO_STORE)


_CHECK_NAMES = ("database", "schema", "storage")

routes = [
    Route("/livez", livez, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
