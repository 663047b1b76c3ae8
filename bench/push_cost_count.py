"""Counts, for `push_cost_bench.py`, the transactions and SQL statements of small pushes in one
registry served in-process (run by the Python of the checkout under test, so it imports only
`ociregistry` and its dependencies).

    python bench/push_cost_count.py DATA_DIR PUSHES

Prints one JSON line: [request kind, what, count] for the measured pushes (after two warm-up
pushes). With PUSH_COST_SHOW=1 it prints each statement on stderr; with PUSH_COST_PROFILE=1 a
cProfile of the event loop's thread (the writers' threads are not in it).
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import json
import os
import pstats
import sqlite3
import sys
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from ociregistry.app import create_app
from ociregistry.cli import prepare
from ociregistry.config import Settings

PASSWORD = "count-admin-password"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SHOW = bool(os.environ.get("PUSH_COST_SHOW"))
OUTSIDE = ("setup", "warm")
SKIPPED = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "--")

counts: Counter[tuple[str, str]] = Counter()
kind = ["setup"]
last = [""]


def _show(how: str, sql: str) -> None:
    if SHOW and kind[0] not in OUTSIDE:
        print(f"{kind[0]:12} | {how} | {' '.join(sql.split())[:160]}", file=sys.stderr)


def _traced(sql: str) -> None:
    """Every statement sqlite3 runs, by SQLAlchemy or straight on the driver."""
    if sql == last[0]:  # sqlite3 reports an upsert again as it steps through it
        return
    last[0] = sql
    if not sql.lstrip().upper().startswith(SKIPPED):
        counts.update([(kind[0], "statements")])
        _show("  ", sql)


def _connected(dbapi: Any, _record: Any) -> None:
    if isinstance(dbapi, sqlite3.Connection):
        dbapi.set_trace_callback(_traced)


def _executed(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
    if sql.lstrip().upper().startswith(SKIPPED):
        return
    counts.update([(kind[0], "sqlalchemy")])
    _show("SA", sql)
    if not isinstance(conn.connection.driver_connection, sqlite3.Connection):
        counts.update([(kind[0], "statements")])  # aiosqlite's or asyncpg's, not traced


event.listen(Pool, "connect", _connected)
event.listen(Engine, "before_cursor_execute", _executed)
event.listen(Engine, "begin", lambda _conn: counts.update([(kind[0], "transactions")]))


async def _push(client: httpx.AsyncClient, index: int, measured: bool) -> None:
    layer = os.urandom(2048)
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": index}).encode()
    descriptors = []
    for blob in (layer, config):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        kind[0] = "POST" if measured else "warm"
        started = await client.post("/v2/cost/app/blobs/uploads/")
        assert started.status_code == 202, started.text
        kind[0] = "PUT blob" if measured else "warm"
        done = await client.put(
            started.headers["location"],
            params={"digest": digest},
            content=blob,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        descriptors.append({"digest": digest, "size": len(blob)})
    config_type = "application/vnd.oci.image.config.v1+json"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, **descriptors[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descriptors[0]}],
    }
    kind[0] = "PUT manifest" if measured else "warm"
    put = await client.put(
        f"/v2/cost/app/manifests/t{index}",
        content=json.dumps(manifest).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    kind[0] = "setup"


async def main(settings: Settings, pushes: int) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.services.registries.create("cost", public=True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://registry.test"
        ) as client:
            # A Bearer token, as docker uses after `docker login` (and as the CPU run does).
            challenge = (await client.get("/v2/")).headers["www-authenticate"]
            service = challenge.split('service="')[1].split('"')[0]
            scope = "repository:cost/app:pull,push"
            answer = await client.get(
                "/auth/token", params={"service": service, "scope": scope}, auth=("admin", PASSWORD)
            )
            client.headers["Authorization"] = "Bearer " + answer.json()["token"]
            profile = cProfile.Profile() if os.environ.get("PUSH_COST_PROFILE") else None
            for index in range(2):
                await _push(client, index, measured=False)
            if profile is not None:
                profile.enable()
            for index in range(2, pushes + 2):
                await _push(client, index, measured=True)
            if profile is not None:
                profile.disable()
                stats = pstats.Stats(profile, stream=sys.stderr)
                stats.sort_stats("cumulative").print_stats(80)


if __name__ == "__main__":
    settings = Settings(data_dir=sys.argv[1], admin_password=PASSWORD)
    prepare(settings)
    asyncio.run(main(settings, int(sys.argv[2])))
    print(json.dumps([[kind_, what, n] for (kind_, what), n in counts.items()]))
