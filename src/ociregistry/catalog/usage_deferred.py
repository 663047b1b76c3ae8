"""On SQLite a manifest's usage is counted after its PUT, with every manifest pushed since.

Why. SQLite takes one writer at a time, so what a PUT's transaction writes is time every other
writer waits. Counted in the PUT (catalog/usage.py), a manifest's references wrote some eight
pages more to the WAL than the PUT itself (about 25): the image's, the registry's and the
platform's rows, the registry's size, and the row and digest-index entry of the manifest's own
bytes. The next PUT wrote most of the same pages again. Counted for many manifests in one
transaction, each page is written once for all of them (migration 0022 has the figures).
PostgreSQL, whose writers run side by side, counts in the PUT as before.

How every figure stays exact:

- The mark (`usage_fold`): every manifest at or below it is counted, none above it. A count
  moves the mark in the transaction that counts, so a crash leaves either both or neither.
- A PUT checks, under its transaction's lock, that its image holds every blob the manifest
  names, as the count in the PUT did (`usage.check_held`), and leaves the counting to
  `UsageCounter.pushed`: a count on the same worker a moment later.
- Whatever reads a figure counts what is pending first (`UsageCounter.settle`).
- Whatever takes references away counts what is pending first, in its own transaction
  (`count_pending` in `usage.remove_*`, which garbage collection's deletions go through
  too), so it never takes away what was never counted.
- A registry with a quota is counted in the PUT, where the quota is enforced as the figure
  grows (`usage.count_now`). Setting a quota counts what is pending first, so a registry with a
  quota never has a manifest pending.
- A manifest deleted at or above the mark takes the mark down to the highest id left (a
  trigger, migration 0022): SQLite gives a new row the highest id plus one, so a manifest
  pushed later always lands above the mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ociregistry.db.database import Database
from ociregistry.manifests.parse import ParsedManifest

log = logging.getLogger("ociregistry.usage")

# Manifests counted per transaction: a few milliseconds of work, so that the count runs on the
# event loop (sqlite_writes.INLINE_BUDGET_SECONDS) and holds the write lock briefly.
BATCH = 64
# How long after a PUT its worker counts: the PUTs of that moment are counted together.
DELAY_SECONDS = 0.2
_LAST_ID = 2**63 - 1

_MARK = "SELECT manifest_id FROM usage_fold"
MOVE_MARK = "UPDATE usage_fold SET manifest_id = ?"
_PENDING = "SELECT EXISTS (SELECT 1 FROM manifests WHERE id > (SELECT manifest_id FROM usage_fold))"
_UPTO = (
    "SELECT max(id) FROM (SELECT id FROM manifests WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)"
)
# The manifests' own bytes are stored from now on (their `blob_usage` rows, which the link's
# trigger left to the count), then every blob each manifest references, itself included, one
# reference at the image level; the triggers of migrations 0018, 0020 and 0024 carry each blob
# new to its image up to the registry and the platform, as in the PUT. Every blob a manifest
# names has its row: it was linked into the image (the PUT checked it), and garbage
# collection removes no blob a manifest names. `UNION ALL`, not `UNION`: a pending manifest
# names each blob once (`counted_later`), so there is nothing to remove twice, and a
# `UNION`'s temporary B-tree cost a sixth of the count (migration 0023). Sizes are taken from
# the manifest and its descriptors, which the PUT checked against the bytes stored, so that
# SQLite reads the platform's rows by their digest index alone (3,800 instructions a manifest).
_STORED = """
    INSERT INTO blob_usage (digest, size, refs)
    SELECT digest, size, 0 FROM manifests WHERE id > ? AND id <= ? ORDER BY id
    ON CONFLICT (digest) DO NOTHING
"""
_COUNTED = """
    INSERT INTO image_usage (image_id, blob_id, size, refs)
    SELECT p.image_id, b.id, p.size, 1 FROM (
        SELECT id, image_id, digest, size FROM manifests WHERE id > ?1 AND id <= ?2
        UNION ALL
        SELECT m.id, m.image_id, r.digest, r.size FROM manifests AS m
        JOIN manifest_references AS r ON r.manifest_id = m.id AND r.kind = 'blob'
        WHERE m.id > ?1 AND m.id <= ?2
    ) AS p JOIN blob_usage AS b ON b.digest = p.digest
    WHERE true
    ON CONFLICT (image_id, blob_id) DO UPDATE SET refs = refs + 1
"""


# Migration 0024: a blob new to a registry adds its size to the registry's line of
# `usage_delta` (a trigger), not to the registry's row, which is wide: after the statement
# that inserted references, the lines grow the rows, each once, and are cleared.
_SIZES_GROWN = """
    UPDATE registries SET size_bytes = size_bytes + (
        SELECT bytes FROM usage_delta WHERE registry_id = registries.id
    ) WHERE id IN (SELECT registry_id FROM usage_delta)
"""
_SIZES_CLEARED = "DELETE FROM usage_delta"


def grow_sizes(run: Callable[..., Any]) -> None:
    """Grow each registry's `size_bytes` by the blobs the statements before added to it, on
    SQLite, in the transaction that added them (`run` runs a statement in it)."""
    run(_SIZES_GROWN)
    run(_SIZES_CLEARED)


def counted_later(parsed: ParsedManifest, entries: Mapping[str, int]) -> bool:
    """Whether a manifest pushed into a registry without a quota may be left to the count:
    when it names each of its blobs once, so that `entries` (`usage.manifest_entries`: the
    manifest and its blobs, each once) is one longer than its list of blobs. One that names
    a layer twice (some builders repeat an empty layer) is counted in its PUT, whose
    statements take each blob once: the count adds every reference it finds, with no search
    for duplicates (`_COUNTED`)."""
    return len(entries) == 1 + sum(not descriptor.foreign for descriptor in parsed.blobs)


def count_pending(conn: Connection, *, through: int = _LAST_ID, limit: int = -1) -> bool:
    """Count the manifests above the mark (those up to id `through`, at most `limit` of
    them, every one by default) and move the mark past them. False when none was pending;
    nothing on PostgreSQL, which counts in the PUT."""
    if conn.dialect.name != "sqlite":
        return False
    run = _runner(conn)
    (mark,) = run(_MARK).fetchone()
    (upto,) = run(_UPTO, (mark, through, limit)).fetchone()
    if upto is None:
        return False
    run(_STORED, (mark, upto))
    run(_COUNTED, (mark, upto))
    grow_sizes(run)
    run(MOVE_MARK, (upto,))
    return True


def _runner(conn: Connection) -> Callable[..., Any]:
    """How the count runs a statement: on the transaction's sqlite3 connection when it has
    one (`Database.transaction`), since through SQLAlchemy a statement costs some 12 µs more
    and a count runs seven; its errors raised as SQLAlchemy raises them, for the callers'
    handlers (a full disk is a clean 503 to a client whose deletion counts first)."""
    driver = conn.connection.driver_connection
    if not isinstance(driver, sqlite3.Connection):
        return conn.exec_driver_sql

    def run(sql: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return driver.execute(sql, parameters)
        except sqlite3.Error as error:
            raise DBAPIError.instance(sql, parameters, error, sqlite3.Error) from error

    return run


class UsageCounter:
    """A worker's counting of the manifests its PUTs left pending (on SQLite; on PostgreSQL
    it does nothing). State is in the database; this holds only the worker's next count."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._deferred = db.url.startswith("sqlite")
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def pushed(self) -> None:
        """A PUT left a manifest pending: count it in a moment, with the others then."""
        if not self._deferred:
            return
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._count_soon())

    async def _count_soon(self) -> None:
        while self._again:
            self._again = False
            await asyncio.sleep(DELAY_SECONDS)
            await self.settle()

    async def settle(self) -> None:
        """Count every manifest pushed so far: a figure read after this is exact. When the
        database takes no write (its disk full, say), the reader is served all the same, its
        figures short of the manifests not counted yet, which the next PUT or read counts."""
        if not self._deferred:
            return
        try:
            while await self._db.value(_PENDING):
                await self._db.transaction(
                    lambda conn: count_pending(conn, limit=BATCH), durable=False
                )
        except DBAPIError as error:
            log.warning("usage of new manifests not counted yet (%s); figures lag", error.orig)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
