"""SQLite's write transactions, run on the event loop where that is safe and one writer
thread where it is not: the write path without a thread storm.

Why not a worker thread for every transaction. A small push runs five write transactions,
and each used to go whole to the default thread pool (`asyncio.to_thread`). The hop itself
is cheap; the GIL is not: sqlite3 lets the GIL go around every statement, the busy event loop
takes it at once, and the worker must wait to get it back (a futex wait and wake each time,
and up to the 5 ms switch interval when the loop runs Python meanwhile), while the transaction
holds SQLite's write lock that every other writer waits for. Measured on one worker over 200
small pushes (strace): 501 futex calls per push before, 328 after, the rest being the blob
store's file writes on the default pool; voluntary context switches 90 to 75 per push. (The CPU per
push did not change measurably on a machine loaded by other work: 9.3 ms, medians of ten.)
So a transaction here:

1. begins on the event loop with `BEGIN IMMEDIATE` and no busy timeout. This process's
   writers take turns already (`Database._write_turn`), so only another process (a second
   worker, the CLI) can hold SQLite's write lock: then the `BEGIN` fails at once, is tried
   again every millisecond for a while, or as soon as another worker signals the lock
   released (`write_lock`; the loop serves other requests meanwhile), and when the lock is
   still held after that, the whole transaction runs on the writer thread, whose busy
   handler may wait. The loop never waits in the busy handler.
2. runs its work on the loop, under a budget of `INLINE_BUDGET_SECONDS` of CPU that a
   progress handler of sqlite3 checks while statements run. A work that takes longer (a garbage
   collection, the deletion of a large image) is interrupted, rolled back, and run again
   from the start on the writer thread, so no long write stalls the worker's requests. A
   work must therefore be a unit that can run twice: its only effects are its statements
   and what it returns (the rule PostgreSQL's retries already set, see `database`).
3. commits on the loop when the commit is relaxed (`durable=False`: `synchronous=NORMAL`,
   an append to the WAL in the page cache, no fsync). Such a commit never checkpoints
   (`wal_autocheckpoint=0`: a checkpoint syncs and copies pages), so the durable commits,
   off the loop, do.
4. commits on the writer thread when the commit is durable (`synchronous=FULL`): the one
   step that waits on the disk (the WAL's fdatasync), one hop with one statement in the
   thread, so the GIL changes hands twice, not twice per statement. The commit is SQLite's
   own FULL commit, so a 201 promises exactly what it promised before.

Not group commit (durable commits made with `synchronous=NORMAL` on the loop, then one
fdatasync of the WAL shared by every commit before it): a NORMAL commit is visible to every
reader, in every process, as soon as it is made, so a read could serve a manifest that a
power cut then loses; a FULL commit becomes visible only after its sync. Nor would it hold
across a WAL file created anew (a descriptor kept on the old one syncs nothing).

One connection for both kinds of commit, told before each `BEGIN` that differs in kind from
the one before (`_commit_as`: two PRAGMAs, which SQLite refuses inside a transaction). SQLite
empties a connection's page cache when another connection committed since its last
transaction: with a connection for each kind, as before, every change of kind read the pages
again from the file (a small push changes kind several times; a usage count after manifest
PUTs, catalog/usage_deferred.py, twice). Counted in-process over 256 manifest PUTs and their
counts (2,048 manifests in the database): 12,000 instructions per PUT fewer, a ninth of
what exact usage cost them.

One dedicated writer thread, not the default pool: writers take turns anyway, so one thread
serves them all, and the blob store's file writes in the default pool never queue behind a
commit (nor the commits behind them).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from ociregistry.db.write_lock import WriteLockSignal

T = TypeVar("T")

WRITER_THREAD = "ociregistry-sqlite-writer"
# The most CPU a write may spend on the event loop before it goes to the writer thread
# instead. CPU time of the loop's thread, not wall time: waits for the GIL (sqlite3 lets it
# go around each statement, and another thread may hold it for the 5 ms switch interval) and
# for the processor on a loaded machine say nothing of the work's size, and moved 1 % of a
# small push's transactions when they counted. A small push's transactions take well under a
# millisecond.
INLINE_BUDGET_SECONDS = 0.005
# SQLite virtual machine instructions between two checks of the budget (each a Python call
# of about a microsecond; a thousand instructions take some tens of microseconds).
PROGRESS_STEPS = 1000
# While another process holds the write lock: how often, and how many times, the event loop
# tries the BEGIN again before the transaction goes to the writer thread, whose busy handler
# then waits (up to SQLITE_BUSY_TIMEOUT_MS).
BUSY_POLL_SECONDS = 0.001  # libuv (uvloop) times in whole milliseconds
BUSY_POLLS = 20


# How a transaction commits, set on the connection before its `BEGIN` when the one before
# committed the other way (SQLite changes neither inside a transaction). Durable: the WAL's
# fsync, and a checkpoint once the WAL holds 1,000 pages (SQLite's default), on the writer
# thread. Relaxed: no fsync and never a checkpoint, since the commit runs on the event loop.
_COMMITS = {
    True: ("PRAGMA synchronous=FULL", "PRAGMA wal_autocheckpoint=1000"),
    False: ("PRAGMA synchronous=NORMAL", "PRAGMA wal_autocheckpoint=0"),
}


def _commit_as(connection: Connection, durable: bool) -> None:
    """Make the connection's next commit durable or relaxed (`_COMMITS`)."""
    pooled = connection.connection
    if pooled.info.get("durable") is not durable:  # `info` lives as long as the connection
        for pragma in _COMMITS[durable]:
            pooled.driver_connection.execute(pragma)  # type: ignore[union-attr]
        pooled.info["durable"] = durable


class SQLiteWrites:
    """Runs `work(connection)` as one transaction on `engine`'s one connection, committed
    durably (FULL) or relaxed (NORMAL), as the module docstring says. `counts` says where
    each one went: "inline" (begun and worked on the loop), "busy polls" (tries of the
    `BEGIN` again while another process held the write lock), "busy woken" (tries made at
    once because another worker signalled the lock released, `signal`), "busy" (it held the
    lock past them: run on the thread), "long" (over the budget: run again on the thread),
    "commit on thread" (a durable commit), "on thread" (every transaction the thread ran
    whole)."""

    def __init__(
        self,
        engine: Engine,
        busy_timeout_ms: int,
        signal: WriteLockSignal | None = None,
    ) -> None:
        self._engine = engine
        self._busy_timeout_ms = busy_timeout_ms
        self._signal = signal
        self._thread: ThreadPoolExecutor | None = None
        self.counts: Counter[str] = Counter()

    def _writer(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITER_THREAD)
        return self._thread

    async def run(self, work: Callable[[Connection], T], durable: bool) -> T:
        """Run `work` as one transaction (the caller holds this process's write turn)."""
        connection = self._engine.connect()
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        _commit_as(connection, durable)
        if not self._begin_now(driver) and not await self._begin_soon(driver, connection):
            connection.close()
            self.counts["busy"] += 1
            return await self._on_thread(work, durable)
        deadline = time.thread_time() + INLINE_BUDGET_SECONDS
        overran = False

        def over_budget() -> int:
            nonlocal overran
            overran = overran or time.thread_time() > deadline
            return 1 if overran else 0  # non-zero interrupts the statement

        transaction = connection.begin()  # SQLAlchemy's record of the BEGIN made above
        driver.set_progress_handler(over_budget, PROGRESS_STEPS)
        try:
            result = work(connection)
        except BaseException:
            driver.set_progress_handler(None, 0)
            self._abandon(transaction, connection)
            if not overran:
                raise
            result = None
        else:
            driver.set_progress_handler(None, 0)
            if overran:  # the work ran past an interrupted statement: not a result to keep
                self._abandon(transaction, connection)
        if overran:
            self.counts["long"] += 1
            return await self._on_thread(work, durable)
        self.counts["inline"] += 1

        def commit() -> None:
            try:
                transaction.commit()
            finally:
                connection.close()
                self._released()

        if not durable:
            commit()
            return result  # type: ignore[return-value]
        self.counts["commit on thread"] += 1
        # Should the caller be cancelled meanwhile, the thread still commits and hands the
        # connection back; the next writer's BEGIN finds the lock held and queues behind it.
        await asyncio.get_running_loop().run_in_executor(self._writer(), commit)
        return result  # type: ignore[return-value]

    def _begin_now(self, driver: sqlite3.Connection) -> bool:
        """`BEGIN IMMEDIATE` without waiting: False when another connection holds the lock."""
        driver.execute("PRAGMA busy_timeout=0")
        try:
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF not in (
                sqlite3.SQLITE_BUSY,
                sqlite3.SQLITE_LOCKED,
            ):
                raise
            return False
        finally:
            driver.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        return True

    async def _begin_soon(self, driver: sqlite3.Connection, connection: Connection) -> bool:
        """Try the `BEGIN` again every `BUSY_POLL_SECONDS` while the loop serves others,
        `BUSY_POLLS` times: another worker's transactions hold the lock for a millisecond or
        so, and SQLite's own busy handler would sleep 1, 2, 5, 10 ms between its tries, on a
        thread. False when the lock is still held after that."""
        try:
            for _ in range(BUSY_POLLS):
                self.counts["busy polls"] += 1
                if self._signal is None:
                    await asyncio.sleep(BUSY_POLL_SECONDS)
                elif await self._signal.wait(BUSY_POLL_SECONDS):
                    self.counts["busy woken"] += 1
                if self._begin_now(driver):
                    return True
        except BaseException:  # cancelled while waiting: nothing was begun
            connection.close()
            raise
        return False

    async def _on_thread(self, work: Callable[[Connection], T], durable: bool) -> T:
        """The whole transaction on the writer thread, its busy handler free to wait."""

        def run() -> T:
            try:
                with self._engine.connect() as connection:
                    _commit_as(connection, durable)
                    with connection.begin():
                        return work(connection)
            finally:
                self._released()

        self.counts["on thread"] += 1
        return await asyncio.get_running_loop().run_in_executor(self._writer(), run)

    def _abandon(self, transaction: Any, connection: Connection) -> None:
        try:
            transaction.rollback()
        finally:
            connection.close()
            self._released()

    def _released(self) -> None:
        """The write lock is free again: wake a worker waiting for it (`write_lock`)."""
        if self._signal is not None:
            self._signal.released()

    def dispose(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
