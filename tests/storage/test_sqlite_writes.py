"""Where SQLite's write transactions run (issue 15 goal 3, issue 11 point 5): a short one on
the event loop, with no thread hop (relaxed) or one hop for its durable commit; one that must
wait for another process's write lock, or that runs long, whole on the one writer thread.

Each test drives the real `Database` on a real SQLite file; "another process" is a real
process holding SQLite's write lock. Where a statement or a commit ran is observed from the
inside: the thread that runs the work, and SQLAlchemy's commit event.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from ociregistry.db import sqlite_writes, write_lock
from ociregistry.db.database import Database
from ociregistry.db.sqlite_writes import WRITER_THREAD

# A statement that runs for a second or so in SQLite's virtual machine.
_LONG_STATEMENT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)"
    " SELECT count(*) FROM c"
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "registry.db"


@pytest.fixture
async def db(path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.transaction(
        lambda conn: conn.exec_driver_sql("CREATE TABLE probe (n INTEGER, note TEXT)")
    )
    database.write_counts.clear()
    yield database
    await database.dispose()


@pytest.fixture
def commits(db: Database) -> Iterator[list[str]]:
    """The name of the thread that made each commit of the write engines."""
    names: list[str] = []

    def committed(_conn: Connection) -> None:
        names.append(threading.current_thread().name)

    engines = [db._sync_writer]
    for engine in engines:
        event.listen(engine, "commit", committed)
    yield names
    for engine in engines:
        event.remove(engine, "commit", committed)


def _insert(n: int, ran_on: list[str]) -> object:
    def work(conn: Connection) -> int:
        ran_on.append(threading.current_thread().name)
        conn.exec_driver_sql(f"INSERT INTO probe (n) VALUES ({n})")
        return conn.exec_driver_sql("PRAGMA synchronous").scalar_one()

    return work


async def _numbers(db: Database) -> list[int]:
    async with db.read() as conn:
        return [row[0] for row in await conn.run_sync(_all_numbers)]


def _all_numbers(conn: Connection) -> list[tuple[int]]:
    return [tuple(row) for row in conn.exec_driver_sql("SELECT n FROM probe ORDER BY n")]


async def test_a_relaxed_write_runs_whole_on_the_event_loop(
    db: Database, commits: list[str]
) -> None:
    """An upload session's bookkeeping (no fsync of its own) never leaves the event loop:
    no thread hop, so no GIL hand-off between the loop and a worker thread."""
    ran_on: list[str] = []
    synchronous = await db.transaction(_insert(1, ran_on), durable=False)

    loop_thread = threading.current_thread().name
    assert ran_on == [loop_thread]
    assert commits == [loop_thread]
    assert synchronous == 1  # NORMAL: the next durable commit syncs the WAL up to it
    assert db.write_counts == {"inline": 1}
    assert await _numbers(db) == [1]


async def test_a_durable_write_hops_once_for_its_commit(db: Database, commits: list[str]) -> None:
    """A durable transaction's statements run on the loop; only its commit, the one step
    that waits on the disk (synchronous=FULL: the WAL's fsync), goes to the writer thread,
    and the call returns after it."""
    ran_on: list[str] = []
    synchronous = await db.transaction(_insert(2, ran_on))

    assert ran_on == [threading.current_thread().name]
    assert len(commits) == 1 and commits[0].startswith(WRITER_THREAD)
    assert synchronous == 2  # FULL: the commit returns after the WAL's fsync
    assert db.write_counts == {"inline": 1, "commit on thread": 1}
    assert await _numbers(db) == [2]


async def test_relaxed_commits_never_checkpoint(db: Database) -> None:
    """A checkpoint syncs and copies pages: not a thing to do on the event loop, so the
    relaxed connections leave it to the durable commits, on the writer thread."""
    relaxed = await db.transaction(
        lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one(),
        durable=False,
    )
    durable = await db.transaction(
        lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    )
    assert (relaxed, durable) == (0, 1000)


async def test_both_kinds_of_commit_share_one_connection_each_as_asked(db: Database) -> None:
    """Durable and relaxed writes run on one sqlite3 connection, so that its page cache
    lasts from one write to the next (SQLite empties a connection's cache when another
    connection committed since its last transaction): in any order, on the loop or on the
    writer thread, each commits as asked. A durable commit that ran relaxed would lose a
    201's promise in a power cut; a relaxed one that checkpointed would stall the loop."""

    def commits_as(conn: Connection) -> tuple[int, int, int]:
        driver = conn.connection.driver_connection
        synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
        checkpoint_pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
        return id(driver), synchronous, checkpoint_pages

    def long(conn: Connection) -> tuple[int, int, int]:
        conn.exec_driver_sql(_LONG_STATEMENT).scalar_one()
        return commits_as(conn)

    seen = []
    for work, durable in [
        (commits_as, False),
        (commits_as, True),
        (commits_as, False),
        (long, True),  # run again on the writer thread
        (commits_as, False),
        (long, False),
        (commits_as, True),
    ]:
        seen.append(await db.transaction(work, durable=durable))

    assert len({connection for connection, _, _ in seen}) == 1
    assert [commit for _, *commit in seen] == [
        [1, 0],  # NORMAL, never a checkpoint
        [2, 1000],  # FULL, SQLite's automatic checkpoints
        [1, 0],
        [2, 1000],
        [1, 0],
        [1, 0],
        [2, 1000],
    ]
    assert db.write_counts["on thread"] == 2


async def test_a_failed_write_changes_nothing(db: Database) -> None:
    def fails(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO probe (n) VALUES (3)")
        raise ValueError("refused")

    for durable in (True, False):
        with pytest.raises(ValueError, match="refused"):
            await db.transaction(fails, durable=durable)
    await db.transaction(_insert(4, []))
    assert await _numbers(db) == [4]


async def test_a_long_write_runs_again_on_the_writer_thread(
    db: Database, commits: list[str]
) -> None:
    """A write that would hold the event loop past the budget (a garbage collection, a
    large deletion) is interrupted, rolled back and run again from the start on the writer
    thread: its rows are written once, and the loop served other tasks meanwhile."""
    ran_on: list[str] = []

    def long(conn: Connection) -> int:
        ran_on.append(threading.current_thread().name)
        conn.exec_driver_sql("INSERT INTO probe (n) VALUES (5)")
        return conn.exec_driver_sql(_LONG_STATEMENT).scalar_one()

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert await db.transaction(long) == 3_000_000
    finally:
        ticker.cancel()

    loop_thread = threading.current_thread().name
    assert ran_on[0] == loop_thread
    assert ran_on[1].startswith(WRITER_THREAD) and len(ran_on) == 2
    assert len(commits) == 1 and commits[0].startswith(WRITER_THREAD)
    assert db.write_counts == {"long": 1, "on thread": 1}
    assert ticks > 0  # the loop ran while the thread worked
    assert await _numbers(db) == [5]
    assert sqlite_writes.INLINE_BUDGET_SECONDS < 0.1


_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO probe (n) VALUES (6)")
print("holding", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("released", flush=True)
"""


class _Holder:
    """Another process that holds SQLite's write lock (with a row of its own in it) until
    told to commit."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "holding"

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        assert self._line() == "released"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


async def _until(db: Database, count: str, write: asyncio.Task[object]) -> None:
    for _ in range(1000):  # the loop turning all along
        await asyncio.sleep(0.01)
        if db.write_counts[count]:
            break
    assert db.write_counts[count]
    assert not write.done()


async def test_a_write_behind_another_process_waits_on_the_loop(
    db: Database, path: Path, commits: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process (a second worker, the CLI) holds SQLite's write lock for a
    moment, a write tries its BEGIN again between other tasks on the loop, never in the
    busy handler, and then runs there as usual: no thread hop."""
    monkeypatch.setattr(sqlite_writes, "BUSY_POLLS", 100_000)  # however slow the release
    holder = _Holder(path)
    try:
        ran_on: list[str] = []
        write = asyncio.create_task(db.transaction(_insert(7, ran_on), durable=False))
        await _until(db, "busy polls", write)
        holder.release()
        await write
    finally:
        holder.stop()

    assert ran_on == [threading.current_thread().name]
    assert commits == ran_on
    assert db.write_counts["inline"] == 1 and db.write_counts["busy polls"] >= 1
    assert set(db.write_counts) == {"inline", "busy polls"}
    assert await _numbers(db) == [6, 7]


async def test_a_write_behind_another_process_waits_long_on_the_thread(
    db: Database, path: Path, commits: list[str]
) -> None:
    """When the other process holds the lock past the tries on the loop, the write waits
    for it on the writer thread, in SQLite's busy handler; the loop goes on serving (here:
    it is what lets the other process go on)."""
    holder = _Holder(path)
    try:
        ran_on: list[str] = []
        write = asyncio.create_task(db.transaction(_insert(7, ran_on), durable=False))
        await _until(db, "busy", write)
        holder.release()
        await write
    finally:
        holder.stop()

    assert len(ran_on) == 1 and ran_on[0].startswith(WRITER_THREAD)
    assert len(commits) == 1 and commits[0].startswith(WRITER_THREAD)
    assert db.write_counts == {
        "busy polls": sqlite_writes.BUSY_POLLS,
        "busy": 1,
        "on thread": 1,
    }
    assert await _numbers(db) == [6, 7]


async def test_every_thread_hop_goes_to_one_writer_thread(db: Database, commits: list[str]) -> None:
    """Writers take turns, so one thread serves them all: concurrent durable writes on one
    process make one hop each, all to the same thread, and none to the default pool."""
    before = {thread.name for thread in threading.enumerate()}
    await asyncio.gather(*(db.transaction(_insert(n, [])) for n in range(10, 30)))

    started = {thread.name for thread in threading.enumerate()} - before
    assert len(commits) == 20 and len(set(commits)) == 1
    assert commits[0].startswith(WRITER_THREAD)
    assert not [name for name in started if not name.startswith(WRITER_THREAD)]
    assert db.write_counts == {"inline": 20, "commit on thread": 20}
    assert await _numbers(db) == list(range(10, 30))


@pytest.fixture
async def signalled(path: Path) -> AsyncIterator[tuple[Database, int]]:
    """A database of a worker that has other workers beside it: its writes share the
    supervisor's eventfd (`db/write_lock.py`), here the test's."""
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    write_lock.share(write_lock.WriteLockSignal(fd))
    try:
        database = Database(f"sqlite+aiosqlite:///{path}")
    finally:
        write_lock.share(None)
    await database.transaction(
        lambda conn: conn.exec_driver_sql("CREATE TABLE probe (n INTEGER, note TEXT)")
    )
    _drain(fd)
    database.write_counts.clear()
    yield database, fd
    await database.dispose()
    os.close(fd)


def _drain(fd: int) -> int:
    """What the eventfd counted since it was last read (0: nothing)."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


async def test_a_write_behind_another_worker_goes_as_soon_as_it_signals(
    signalled: tuple[Database, int], path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write waiting for another worker's write lock tries again as soon as that worker
    signals the lock released, not when its timer (a millisecond or two on uvloop) runs
    out: here the timer would take a minute, and the write is done within seconds."""
    db, fd = signalled
    monkeypatch.setattr(sqlite_writes, "BUSY_POLL_SECONDS", 60.0)
    holder = _Holder(path)
    try:
        write = asyncio.create_task(db.transaction(_insert(7, []), durable=False))
        await _until(db, "busy polls", write)
        holder.release()
        os.eventfd_write(fd, 1)  # what the other worker's SQLiteWrites does as it commits
        await asyncio.wait_for(write, 30)
    finally:
        holder.stop()

    assert db.write_counts["busy woken"] >= 1
    assert db.write_counts["inline"] == 1 and "busy" not in db.write_counts
    assert await _numbers(db) == [6, 7]


async def test_every_write_signals_the_lock_released(signalled: tuple[Database, int]) -> None:
    """Every way a write transaction ends releases SQLite's write lock, and signals it to
    the other workers: a relaxed commit on the loop, a durable one on the writer thread, a
    rollback, a transaction run whole on the thread (over its budget)."""
    db, fd = signalled

    def fails(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO probe (n) VALUES (9)")
        raise RuntimeError("the work fails")

    await db.transaction(_insert(1, []), durable=False)
    assert _drain(fd) == 1
    await db.transaction(_insert(2, []))
    assert _drain(fd) == 1
    with pytest.raises(RuntimeError):
        await db.transaction(fails)
    assert _drain(fd) == 1
    await db.transaction(lambda conn: conn.exec_driver_sql(_LONG_STATEMENT).scalar_one())
    assert db.write_counts["on thread"] == 1
    assert _drain(fd) == 2  # the one interrupted on the loop, then the thread's
    assert await _numbers(db) == [1, 2]
