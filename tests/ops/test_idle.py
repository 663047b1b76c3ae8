"""Idle means idle: with nothing to count, the pull counter's flush loop opens no write
transaction (on SQLite each one takes the write lock that pushes wait on); and the event loop
stays free for requests: list and count queries run on a worker thread.

In-process, so that a SQLAlchemy event can count the transactions the worker begins; the loop
runs as in a server worker. Nothing here is timed: the test waits a number of flush periods and
counts what was written in them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ociregistry.catalog.pulls import FLUSH_SECONDS, SETTLE_SECONDS
from support.inprocess import InProcessRegistry, push_image
from support.oci import make_image

IDLE_FLUSH_PERIODS = 15


@pytest.fixture
def registry(tmp_path: Any) -> Iterator[InProcessRegistry]:
    running = InProcessRegistry(tmp_path / "data")
    yield running
    running.close()


def _count_transactions(registry: InProcessRegistry) -> list[str]:
    """Every transaction the worker's database writers begin, from now on."""
    db = registry.services.db
    begun: list[str] = []
    engines = [db._writer.sync_engine]
    if db._sync_writer is not None:  # durable commits and those without an fsync alike
        engines.append(db._sync_writer)
    for engine in engines:
        event.listen(engine, "begin", lambda _conn, name=engine.url: begun.append(str(name)))
    return begun


async def _pull_and_settle(registry: InProcessRegistry) -> int:
    """Push and pull an image, and wait until the pull is counted; its pull count."""
    client = registry.client
    await push_image(client, "idle/app", make_image("idle"), "1.0")
    pulled = await client.get("/v2/idle/app/manifests/1.0")
    assert pulled.status_code == 200, pulled.text
    for _ in range(200):
        await asyncio.sleep(FLUSH_SECONDS)
        image = await client.get("/api/v1/registries/idle/images/app")
        if image.json()["pull_count"] == 1:
            break
    await asyncio.sleep(SETTLE_SECONDS + 2 * FLUSH_SECONDS)  # the digest look-back settles
    return image.json()["pull_count"]


def test_an_idle_worker_writes_nothing(registry: InProcessRegistry) -> None:
    registry.run(registry.services.registries.create("idle", public=True))
    assert registry.run(_pull_and_settle(registry)) == 1  # the counter is running

    begun = _count_transactions(registry)
    registry.run(asyncio.sleep(IDLE_FLUSH_PERIODS * FLUSH_SECONDS))
    assert begun == [], f"{len(begun)} write transactions over {IDLE_FLUSH_PERIODS} idle flushes"

    # Not a counter that stopped: the next pull is written, and counted.
    pulled = registry.run(registry.client.get("/v2/idle/app/manifests/1.0"))
    assert pulled.status_code == 200
    registry.run(asyncio.sleep(3 * FLUSH_SECONDS))
    assert begun, "a pull was never written"


def test_lists_and_counts_run_off_the_event_loop(registry: InProcessRegistry) -> None:
    registry.run(registry.services.registries.create("lists", public=True))
    loop_thread = threading.get_ident()
    counted: list[bool] = []  # per COUNT statement: did it run on the event loop's thread?

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "count(" in statement.lower():
            counted.append(threading.get_ident() == loop_thread)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        for path in (
            "/api/v1/registries",
            "/api/v1/shared/registries",
            "/api/v1/platform/images",
            "/api/v1/registries/lists/images",
            "/api/v1/users",
            "/api/v1/project-groups",
        ):
            response = registry.run(registry.client.get(path, params={"q": "li"}))
            assert response.status_code == 200, response.text
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    assert counted, "no COUNT query was seen"
    assert not any(counted), f"{sum(counted)} of {len(counted)} COUNT queries ran on the loop"
