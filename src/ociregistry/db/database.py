"""The metadata database: engine set-up, read and write connections, migrations.

SQLite (the embedded default) runs in WAL mode so readers never wait for the writer, with
`synchronous=FULL` so a committed push survives a power cut, and writes begin with
`BEGIN IMMEDIATE` so two processes never deadlock upgrading a read lock.

A transaction that acknowledges nothing by itself (an upload session's creation, its claim
and its progress: a 202, never a 201) may ask for `transaction(work, durable=False)`: on
SQLite it commits with `synchronous=NORMAL`, which appends to the WAL without an fsync. That
is safe because the WAL is one file written in order: the next FULL commit, of any connection
or process (the one that answers the 201 of the same push, at the latest), fsyncs the WAL up
to and including it, and a power cut before then only loses rows no client was promised (the
client sees BLOB_UPLOAD_UNKNOWN or a 416 with the true offset, and starts the upload again).
A process crash loses nothing either way: the commit is in the WAL, in the page cache. It
saves one fsync per such commit, two of the three per blob a small push pays otherwise.
PostgreSQL commits every transaction durably.

SQLite's write transactions run on the event loop when they are short and no other process
holds the write lock, their durable commits (and the others) on one writer thread:
`sqlite_writes` says how and why (a transaction on a pool thread handed the GIL back and
forth around every statement).

SQLite reads run inline on the event loop, on one connection per process: they are indexed
point lookups in a local file that take microseconds, less than a hop to a worker thread
would. Lists and counts (the console's searches, `COUNT` over subqueries) can take
milliseconds on a large catalog and would stall every request of the worker meanwhile: they
ask for `read(offload=True)` and run on a worker thread. PostgreSQL needs none of this and
gets plain async connections for both.

On PostgreSQL a read is one round trip per statement: reads run in autocommit (no `BEGIN` and
`ROLLBACK` around each; under READ COMMITTED every statement sees its own snapshot anyway),
and a pooled connection is pinged before use only when it sat idle for a while (a database
restart is noticed on the first use after it, without a ping on every checkout under load).

Lock order (PostgreSQL). Several instances and workers write side by side, and a write takes
row locks as it goes, until its commit. Two transactions that take the same rows in opposite
orders wait for each other forever: PostgreSQL finds the cycle after `deadlock_timeout`, kills
one (`deadlock detected`, SQLSTATE 40P01), and its client used to get a 503. So every write
transaction that touches several of the rows below takes them in this order, never going back
up a level it has passed (it may skip levels):

1. registries, by ascending id (their `size_bytes` and quota, their settings, and their
   `image_count`, which a trigger changes when an image gets its first tag or loses its
   last: so a transaction that inserts or deletes tags locks their registry first);
2. images, by ascending id (`size_bytes`, `pull_count`, `updated_at`; the row's lock also
   stands for everything under the image: its manifests, tags, blob links, `image_usage` and
   `pull_events` rows, which only a holder of the image's lock changes, tags by name order);
3. `registry_usage` rows (only ever changed under their registry's lock);
4. `blob_candidates`, then `blob_usage` rows, each by ascending digest.

`db/locks.py` takes levels 1 and 2 (and 4, for a change in several passes) with
`SELECT … ORDER BY id FOR NO KEY UPDATE` at the start of the transaction, before its first
change, so the statements after it (whose own row order is whatever the plan gives, a cascade
included) only take rows nobody else can be taking in another order. Who does what:

- a manifest push: its registry, its image (created first if new), then its tags, usage rows;
- a manifest, tag or image deletion, the untagged cleanup, retention, a registry's images
  being removed: the registries, then the images (`FOR UPDATE` where the image goes), then
  the blob-level rows they will change (`locks.blob_usage`), then the deletes;
- the pull counters: the images they count on, by id, then the tags, by name;
- the refresh of registry pull counts: the stale registries, by id;
- a blob link (the end of an upload, a mount): none; it inserts under the image, which only
  waits for a deletion of that image, and inserts or reads blob-level rows last.

The rest (upload sessions, audit events, leases, users, tokens) are rows no other kind of
transaction touches in another order.

As the backstop PostgreSQL's documentation asks for, `transaction(work)` runs `work` again
from the start, on a fresh transaction, when PostgreSQL kills it in a deadlock or a
serialization failure (SQLSTATE 40P01, 40001), up to `RETRY_ATTEMPTS` times in all; only then
does the error reach the caller (a 503 `UNAVAILABLE` with `Retry-After`). A `work` must hence
be a unit that can run twice: its only effects are its statements, and what it returns. The
`write()` block cannot be re-run, so it is kept for single statements and for transactions
that touch none of the rows above.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Executable, create_engine, event, exc, text
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.engine.result import ScalarResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ociregistry.db import write_lock
from ociregistry.db.sqlite_writes import SQLiteWrites

T = TypeVar("T")
log = logging.getLogger("ociregistry.db")
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000
_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "foreign_keys=ON",
)


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _apply_pragmas(dbapi_connection: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class InlineReader:
    """The async read interface of `AsyncConnection`, served synchronously by one sqlite3
    connection in autocommit mode. Safe without locks: each call runs to completion on the
    event loop thread, so no two coroutines ever share it mid-statement."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = create_engine(
            url.replace("sqlite+aiosqlite", "sqlite", 1),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(self._engine, "connect", lambda dbapi, _record: _apply_pragmas(dbapi))
        self._connection: Connection | None = None

    @property
    def dialect(self) -> Any:
        return self._engine.dialect

    def _conn(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return self._connection

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        return self._conn().execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self._conn().scalar(statement, parameters)

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]:
        return self._conn().scalars(statement, parameters)

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        return work(self._conn())

    def value(self, sql: str) -> Any:
        """The first column of the first row of a constant statement, straight from sqlite3:
        a few microseconds, where a statement through SQLAlchemy costs tens."""
        driver = self._conn().connection.driver_connection
        assert driver is not None
        row = driver.execute(sql).fetchone()
        return None if row is None else row[0]

    def first(self, sql: str, parameters: list[Any]) -> tuple[Any, ...] | None:
        """The first row of a compiled statement, straight from sqlite3 (see `value`)."""
        driver = self._conn().connection.driver_connection
        assert driver is not None
        row = driver.execute(sql, parameters).fetchone()
        return None if row is None else tuple(row)

    def rows(self, sql: str, parameters: list[Any]) -> list[tuple[Any, ...]]:
        driver = self._conn().connection.driver_connection
        assert driver is not None
        return driver.execute(sql, parameters).fetchall()

    def dispose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()


class OffloadedReader:
    """The same read interface, each statement run on a worker thread on a pooled sqlite3
    connection, its rows fetched there: for queries too long to run on the event loop."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        frozen = await asyncio.to_thread(
            lambda: self._connection.execute(statement, parameters).freeze()
        )
        return frozen()

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return await asyncio.to_thread(self._connection.scalar, statement, parameters)

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]:
        return (await self.execute(statement, parameters)).scalars()

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(work, self._connection)


def _sqlite_read_engine(url: str) -> Engine:
    """Reads off the event loop: autocommit, so each statement sees the latest commit."""
    engine = create_engine(
        url.replace("sqlite+aiosqlite", "sqlite", 1),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        isolation_level="AUTOCOMMIT",
    )
    event.listen(engine, "connect", lambda dbapi, _record: _apply_pragmas(dbapi))
    return engine


def _sqlite_engine(url: str) -> AsyncEngine:
    """The write engine: every transaction takes the write lock up front."""
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver, so that BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        _apply_pragmas(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _sqlite_sync_engine(url: str) -> Engine:
    """The writer of `sqlite_writes`, whose one connection takes durable and relaxed
    commits alike; its transactions run on the event loop or whole on one worker thread: one
    thread hop per transaction, not three per statement as through the async driver."""
    engine = create_engine(
        url.replace("sqlite+aiosqlite", "sqlite", 1),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        _apply_pragmas(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A transaction begun on the event loop made its BEGIN already, without waiting.
        if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def execute_on_driver(
    connection: Connection, statement: Executable, parameters: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Inside the work of `Database.transaction`: run a module-level statement whose every
    value is a named bound parameter given in `parameters` (no literal, no column default),
    and return its rows (those of a `RETURNING`; none otherwise), as the driver returns them
    (see `Database.first`).

    On SQLite the statement, compiled by SQLAlchemy once, runs straight on the sqlite3
    connection of the transaction, its parameters converted by the column types' own bind
    processors: a few microseconds, where an execution through SQLAlchemy costs a hundred or
    more (an upload session's bookkeeping, a few statements per blob, is the hottest write of
    a push). Elsewhere SQLAlchemy runs it, its compiled form cached."""
    if connection.dialect.name != "sqlite":
        result = connection.execute(statement, parameters)
        return [tuple(row) for row in result.all()] if result.returns_rows else []
    return _on_driver(connection, statement, parameters).fetchall()


def changes_on_driver(
    connection: Connection, statement: Executable, parameters: dict[str, Any]
) -> int:
    """`execute_on_driver` for a write whose answer is only how many rows it changed: what a
    `RETURNING` would tell, without the temporary table SQLite fills for one (about as much
    work as a small statement of its own)."""
    if connection.dialect.name != "sqlite":
        return connection.execute(statement, parameters).rowcount
    return _on_driver(connection, statement, parameters).rowcount


def _on_driver(connection: Connection, statement: Executable, parameters: dict[str, Any]) -> Any:
    sql, binds = _driver_statement(statement, connection.dialect)
    args = [
        parameters[name] if process is None else process(parameters[name])
        for name, process in binds
    ]
    driver = connection.connection.driver_connection
    assert driver is not None
    return driver.execute(sql, args)


_driver_statements: dict[Executable, tuple[str, list[tuple[str, Any]]]] = {}


def _driver_statement(statement: Executable, dialect: Any) -> tuple[str, list[tuple[str, Any]]]:
    """A statement's SQLite SQL, and per positional parameter its name and bind processor
    (None when the driver takes the value as it is). Only SQLite's are cached here: one
    dialect, one compiled form per statement."""
    compiled = _driver_statements.get(statement)
    if compiled is None:
        done = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if "POSTCOMPILE" in done.string or done.positiontup is None:
            raise ValueError("`execute_on_driver` takes plain statements only")
        binds = [
            (name, done.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in done.positiontup
        ]
        compiled = (done.string, binds)
        _driver_statements[statement] = compiled
    return compiled


class Database:
    """Hands out connections: `read()` for queries, `write()` for one atomic transaction, and
    `transaction(work)` to run a synchronous function as one transaction off the event loop
    (the fastest way to write several statements at once)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._inline: InlineReader | None = None
        self._sync_writer: Engine | None = None
        self._sqlite_writes: SQLiteWrites | None = None
        self._offloaded: Engine | None = None
        # SQLite takes one writer at a time; queueing this process's writers here costs
        # nothing, while letting them collide costs busy-handler sleeps of milliseconds.
        self._write_turn = asyncio.Lock()
        self._compiled_statements: dict[Executable, tuple[str, list[str], dict[str, Any]]] = {}
        if _is_sqlite(url):
            # Reads run in autocommit mode: each statement sees the latest committed state.
            self._inline = InlineReader(url)
            self._writer = _sqlite_engine(url)
            self._sync_writer = _sqlite_sync_engine(url)
            self._sqlite_writes = SQLiteWrites(
                self._sync_writer,
                SQLITE_BUSY_TIMEOUT_MS,
                write_lock.shared(),
            )
            self._offloaded = _sqlite_read_engine(url)
        else:
            self._writer = create_async_engine(url, pool_size=POSTGRES_POOL_SIZE, max_overflow=0)
            _ping_when_idle(self._writer.sync_engine)
        # PostgreSQL reads: autocommit, so a read is its statements and nothing more.
        self._reader = self._writer.execution_options(isolation_level="AUTOCOMMIT")

    async def transaction(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """Run `work(connection)` inside one transaction and return what it returns.

        `durable=False` is for a transaction whose commit answers no client's 201 and whose
        loss in a power cut loses nothing acknowledged: SQLite then skips its fsync, and the
        next durable commit syncs it (see the module's docstring).

        On PostgreSQL a `work` that PostgreSQL kills in a deadlock or a serialization failure
        runs again from the start, in a new transaction (RETRY_ATTEMPTS runs in all): it must
        have no effect but its statements and what it returns. SQLite needs no retry, since
        its writers take turns.

        On SQLite the work runs on the event loop when it is short and no other process
        holds the write lock, else on one writer thread; a durable commit is made on that
        thread (see `sqlite_writes`). So there too a `work` must be able to run twice."""
        if self._sqlite_writes is not None:
            async with self._write_turn:
                return await self._sqlite_writes.run(work, durable)
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                async with self._writer.begin() as connection:
                    return await connection.run_sync(work)
            except exc.DBAPIError as error:
                if attempt == RETRY_ATTEMPTS or not is_retryable(error):
                    raise
                log.warning(
                    "a transaction lost a %s (attempt %d of %d); running it again",
                    "deadlock" if sqlstate(error) == DEADLOCK else "serialization conflict",
                    attempt,
                    RETRY_ATTEMPTS,
                )
                # A short random pause, so the two sides do not meet again at once.
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def read(
        self, *, offload: bool = False
    ) -> AsyncIterator[AsyncConnection | InlineReader | OffloadedReader]:
        """A connection for queries. On SQLite they run on the event loop, which suits point
        lookups; `offload=True` runs them on a worker thread instead, for lists and counts."""
        if self._offloaded is not None and offload:
            engine = self._offloaded
            connection = await asyncio.to_thread(engine.connect)
            try:
                yield OffloadedReader(connection)
            finally:
                await asyncio.to_thread(connection.close)
            return
        if self._inline is not None:
            yield self._inline
            return
        async with self._reader.connect() as connection:
            yield connection

    def _compiled(self, statement: Executable) -> tuple[str, list[str], dict[str, Any]]:
        """A statement compiled once for this database: its SQL, the names of its parameters
        in order, and the values of those the statement itself fixes."""
        compiled = self._compiled_statements.get(statement)
        if compiled is None:
            dialect = self._inline.dialect if self._inline is not None else self._writer.dialect
            done = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            if "POSTCOMPILE" in done.string or done.positiontup is None:
                raise ValueError("`first` takes plain point lookups only")
            compiled = (done.string, list(done.positiontup), dict(done.params))
            self._compiled_statements[statement] = compiled
        return compiled

    async def first(
        self, statement: Executable, parameters: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row of a point lookup (a module-level statement with plain parameters),
        as the driver returns it (SQLite gives booleans as 0 and 1, and dates as text).

        The hottest reads of the request path come here: SQLAlchemy's execution costs more
        CPU than the statement itself (about 40 µs on SQLite, 350 µs on asyncpg), so the
        statement is compiled by SQLAlchemy once and then run by the driver."""
        sql, names, fixed = self._compiled(statement)
        args = [parameters[name] if name in parameters else fixed[name] for name in names]
        if self._inline is not None:
            return self._inline.first(sql, args)
        ran, row = await self._on_driver(lambda driver: driver.fetchrow(sql, *args))
        if ran:
            return None if row is None else tuple(row)
        async with self._reader.connect() as connection:
            found = (await connection.execute(statement, parameters)).first()
            return None if found is None else tuple(found)

    async def rows(
        self, statement: Executable, parameters: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row of an indexed read (a short list, such as a page of tags), as `first`
        runs it."""
        sql, names, fixed = self._compiled(statement)
        args = [parameters[name] if name in parameters else fixed[name] for name in names]
        if self._inline is not None:
            return self._inline.rows(sql, args)
        ran, found = await self._on_driver(lambda driver: driver.fetch(sql, *args))
        if ran and found is not None:
            return [tuple(row) for row in found]
        async with self._reader.connect() as connection:
            return [tuple(row) for row in (await connection.execute(statement, parameters)).all()]

    async def _on_driver(self, call: Callable[[Any], Awaitable[T]]) -> tuple[bool, T | None]:
        """`call(asyncpg connection)` on a pooled connection, without SQLAlchemy's
        `Connection` around it (about 130 µs of CPU where that costs 350); (False, None) when
        it failed, and the connection is then discarded, never pooled again. The caller then
        runs the statement through SQLAlchemy, which either succeeds on a sound connection or
        raises the error the app knows (503 for a lost database, see app.py)."""
        try:
            pooled = await self._writer.raw_connection()
        except Exception:  # no connection: SQLAlchemy's path says why, as the app knows it
            return False, None
        try:
            return True, await call(pooled.driver_connection)
        except BaseException as error:
            pooled.invalidate()
            if not isinstance(error, Exception):
                raise
            return False, None
        finally:
            pooled.close()

    async def value(self, sql: str) -> Any:
        """The first column of the first row of a constant read statement, by the shortest
        path each database offers (for the hottest lookups, such as a generation counter)."""
        if self._inline is not None:
            return self._inline.value(sql)
        ran, value = await self._on_driver(lambda driver: driver.fetchval(sql))
        if ran:
            return value
        async with self._reader.connect() as connection:
            return await connection.scalar(text(sql))

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._sync_writer is None:  # PostgreSQL: writers run side by side
            async with self._writer.begin() as connection:
                yield connection
            return
        async with self._write_turn, self._writer.begin() as connection:
            yield connection

    @asynccontextmanager
    async def startup_turn(self) -> AsyncIterator[None]:
        """Hold the start-up lock for the length of the block, so that instances starting
        together on PostgreSQL create the signing key and the first admin one at a time, as
        they migrate. SQLite writers take turns already."""
        if self._sync_writer is not None:
            yield
            return
        async with self._writer.begin() as connection:  # the lock goes with this transaction
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            yield

    def watch_pools(self, watch: Callable[[Engine], None]) -> None:
        """Hand each pool-backed engine to `watch` (the metrics count connections in use)."""
        watch(self._writer.sync_engine)
        if self._sync_writer is not None:
            watch(self._sync_writer)

    @property
    def write_counts(self) -> Counter[str]:
        """Where SQLite's write transactions ran (see `SQLiteWrites.counts`); empty elsewhere."""
        return Counter() if self._sqlite_writes is None else self._sqlite_writes.counts

    async def dispose(self) -> None:
        if self._sqlite_writes is not None:
            self._sqlite_writes.dispose()
        if self._inline is not None:
            self._inline.dispose()
        if self._sync_writer is not None:
            self._sync_writer.dispose()
        if self._offloaded is not None:
            self._offloaded.dispose()
        await self._writer.dispose()


# PostgreSQL's SQLSTATEs for a transaction it killed to let another one go on, which the
# application is expected to run again: a deadlock, a serialization failure.
DEADLOCK = "40P01"
SERIALIZATION_FAILURE = "40001"
RETRY_ATTEMPTS = 3  # runs of one unit of work in all, the first included


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (asyncpg's, through SQLAlchemy's wrapper), or None."""
    for candidate in (getattr(error, "orig", None), error.__cause__, error):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_retryable(error: BaseException) -> bool:
    """A deadlock or a serialization failure: nothing was committed, and the same work run
    again from the start may succeed."""
    return sqlstate(error) in (DEADLOCK, SERIALIZATION_FAILURE)


IDLE_PING_SECONDS = 2.0
# Connections each process keeps open to PostgreSQL, all of them kept: SQLAlchemy's default
# (5 kept, 10 more opened and closed again as needed) had busy workers open a new connection,
# and prepare every statement again on it, for most requests. The ceiling (15 per process) is
# the default's, so a server needs no more of PostgreSQL's `max_connections` than before.
POSTGRES_POOL_SIZE = 15


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it sat idle IDLE_PING_SECONDS or more:
    a connection in steady use needs no ping (SQLAlchemy's `pool_pre_ping` costs a round
    trip on every checkout), while one that waited through a database restart is found dead
    here and replaced, rather than failing the request that drew it. A connection that breaks
    while in use fails its statement; SQLAlchemy then invalidates every older connection of
    the pool, so one request at most sees the outage (as 503, see app.py)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as error:  # the pool retries the checkout with a new connection
            raise exc.DisconnectionError(f"a pooled connection is dead: {error}") from error


MIGRATION_LOCK_ID = 7_270_001  # any constant: instances starting together take turns


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    if connection.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serialises
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _migrate(url: str) -> None:
    engine = _sqlite_engine(url) if _is_sqlite(url) else create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        await engine.dispose()


def migrate(url: str) -> None:
    """Bring the schema up to date (Alembic `upgrade head`); safe to run on every start."""
    if _is_sqlite(url):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(_migrate(url))
