"""Blob uploads: sessions that receive bytes in one or many requests, then become a blob.

Shaped for object storage, as Quay's uploads are. A session is a database row
(`blobstore/models.py`) holding the offset, the driver's opaque multipart state and the
serialised sha256 state, so each request of a chunked upload may land on any worker or
instance and continues both the data and the hash without reading a byte back. The row is the
lock: a request claims it by compare-and-set, and only the claimant advances it.

Each chunk becomes a part (`write_part`); a chunk that fails or is cut off is simply not
recorded. A driver with a minimum part size (S3) gets parts of at least that size: a smaller
chunk is staged as an object of its own (`uploads/<id>/tail-<offset>`) and joined with the
next one. Finishing checks the digest and composes the parts into the blob, server-side; a
digest mismatch cancels the session, as Distribution does. A monolithic upload (the whole blob
in the request that names its digest) streams straight to its place with `put_stream`,
verified before it becomes visible; when it finishes a session (POST, then PUT with the body:
how docker sends small blobs) it takes no claim, and one transaction drops the session by
compare-and-set and links the blob (`Uploads._finish_whole`).

The session's statements are module-level, compiled once and run on the driver
(`execute_on_driver`, `Database.first`): SQLAlchemy's execution of each would cost more CPU
than SQLite's work.

Only the commit that drops a finished session (with the blob's link, before the 201) is
durable on its own. The session's creation, claims and progress commit without an fsync
(`Database.transaction(durable=False)`): none of them answers a 201, and the drop's durable
commit syncs them too. A power cut before it loses only what no client was promised: the
session (the client starts again on BLOB_UPLOAD_UNKNOWN or a 416 with the true offset), or the
garbage candidate a claim records, which leaves at worst an unlinked blob that
`ociregistry fsck` reports. A process crash loses none of them. On SQLite that is one fsync
per small blob push instead of three; and a small blob pushed whole costs two transactions,
the POST's and the PUT's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ociregistry.blobstore.digest import DEFAULT_ALGORITHM, Digest
from ociregistry.blobstore.driver import StorageDriver, UploadState
from ociregistry.blobstore.hashing import Hasher, OneShotHash, ResumableSha256
from ociregistry.blobstore.models import UploadRow
from ociregistry.blobstore.store import blob_path
from ociregistry.db.database import Database, execute_on_driver
from ociregistry.db.models import as_utc, utcnow
from ociregistry.errors import BlobUploadInvalid, BlobUploadUnknown, DigestInvalid, RangeInvalid

DEFAULT_EXPIRY_SECONDS = 24 * 3600
FLUSH_BYTES = 4 << 20  # hash in batches of 4 MiB: few thread hops, bounded memory
INLINE_HASH_BYTES = 64 << 10  # smaller batches are hashed on the event loop (microseconds)
ORPHAN_GRACE_SECONDS = 3600  # a multipart upload no row owns is aborted once this old
CLAIM_LEASE_SECONDS = 60.0  # a claim not renewed for this long is taken over
CLAIM_RENEW_SECONDS = 20.0
UPLOADS_PREFIX = "uploads"

Hook = Callable[[Connection], None]
"""Work of the caller's (the catalog's) run inside one of the session's own transactions, so a
push pays for fewer commits: before the bytes (in the claim), after them (with the drop)."""


# The session's bookkeeping, a few statements per request of every push: module-level, so
# each is compiled once and run on the driver (`execute_on_driver`, `Database.first`).
_START = insert(UploadRow).values(
    id=bindparam("upload"),
    repository=bindparam("repo"),
    received=bindparam("offset"),
    parts=bindparam("part_count"),
    staged=bindparam("staged_bytes"),
    storage_state=bindparam("state"),
    hash_state=bindparam("hash"),
    started_at=bindparam("now"),
    active_at=bindparam("now"),
    writer=bindparam("holder"),
    writer_since=bindparam("holder_since"),
)
_SESSION = select(
    UploadRow.repository, UploadRow.received, UploadRow.started_at, UploadRow.active_at
).where(UploadRow.id == bindparam("upload"))
# A row no request holds: no writer, a stale one, or a dead one.
_FREE = or_(
    UploadRow.writer.is_(None),
    UploadRow.writer_since < bindparam("stale"),
    UploadRow.writer == bindparam("dead"),
)
# The compare-and-set that makes the row the lock: free, at the offset the request expects;
# its RETURNING is what the claimant continues from.
_CLAIM = (
    update(UploadRow)
    .where(
        UploadRow.id == bindparam("upload"),
        UploadRow.received == bindparam("expected"),
        _FREE,
    )
    .values(writer=bindparam("token"), writer_since=bindparam("now"), active_at=bindparam("now"))
    .returning(
        UploadRow.received,
        UploadRow.parts,
        UploadRow.staged,
        UploadRow.storage_state,
        UploadRow.hash_state,
    )
)
_HOLDER = select(UploadRow.received, UploadRow.writer).where(UploadRow.id == bindparam("upload"))
_RENEW = (
    update(UploadRow)
    .where(UploadRow.id == bindparam("upload"), UploadRow.writer == bindparam("token"))
    .values(writer_since=bindparam("now"))
)
_RELEASE = (
    update(UploadRow)
    .where(UploadRow.id == bindparam("upload"), UploadRow.writer == bindparam("token"))
    .values(writer=bindparam("holder"), writer_since=bindparam("holder_since"))
)
_ADVANCE = (
    update(UploadRow)
    .where(UploadRow.id == bindparam("upload"), UploadRow.writer == bindparam("token"))
    .values(
        received=bindparam("offset"),
        parts=bindparam("part_count"),
        staged=bindparam("staged_bytes"),
        storage_state=bindparam("state"),
        hash_state=bindparam("hash"),
        writer=bindparam("holder"),
        writer_since=bindparam("holder_since"),
        active_at=bindparam("now"),
    )
    .returning(UploadRow.id)
)
_DROP = delete(UploadRow).where(UploadRow.id == bindparam("upload"))
# A session finished by the request that carries its whole blob: dropped only if it is still
# as the request found it (nothing received, no live claim), by compare-and-set.
_DROP_FRESH = (
    delete(UploadRow)
    .where(
        UploadRow.id == bindparam("upload"),
        UploadRow.received == bindparam("empty"),
        _FREE,
    )
    .returning(UploadRow.storage_state)
)


def _moment(value: Any) -> datetime:
    """A stored time as the driver gives it (SQLite: text), as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    moment = as_utc(value)
    assert moment is not None
    return moment


def _state(value: Any) -> UploadState | None:
    """A stored storage state as the driver gives it (SQLite: JSON text)."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class UploadSession:
    id: str
    repository: str
    offset: int  # bytes received, when the session was read
    started_at: float


def _parse_upload_id(text: str) -> str:
    try:
        upload_id = str(uuid.UUID(text, version=4))
    except ValueError:
        upload_id = None
    if upload_id != text:  # only the exact id we issued: UUID() also reads braces, upper case...
        raise BlobUploadUnknown(
            f"upload {text[:100]!r} is unknown: start an upload with POST .../blobs/uploads/"
        )
    return text


async def _in_thread(function: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))


def _process_start() -> str:
    """This process's start time in clock ticks since boot: with the pid, a name no later
    process on this machine has."""
    try:
        return Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return "0"


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_PROCESS = f"{_HOST}.{os.getpid()}.{_process_start()}"


def _holder_is_dead(writer: str) -> bool:
    """Whether a claim belongs to a process of this machine that no longer runs (a SIGKILL),
    so it can be taken over at once instead of after the lease."""
    host, _, rest = writer.partition(".")
    pid, _, rest = rest.partition(".")
    started, _, _ = rest.partition(".")
    if host != _HOST or not pid.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return fields[0] in ("Z", "X") or fields[19] != started


class _Receiver:
    """Passes a body through as it came (no copy, no re-cutting) while hashing it and
    counting it; renews the claim on long requests.

    The hash runs on a worker thread one batch of about `FLUSH_BYTES` behind, so the event
    loop receives the next batch meanwhile; hashlib releases the GIL while it hashes. Small
    bodies (a config, a small layer) are hashed inline: a thread hop would cost more."""

    def __init__(self, hasher: Hasher, renew: Any = None) -> None:
        self.hasher = hasher
        self.received = 0
        self._renew = renew
        self._renewed = time.monotonic()

    def _hash_all(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.hasher.update(piece)

    async def stream(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        pending: asyncio.Future[Any] | None = None
        batch: list[bytes] = []
        batched = 0
        try:
            async for piece in body:
                if not piece:
                    continue
                batch.append(piece)
                batched += len(piece)
                self.received += len(piece)
                yield piece
                if batched >= FLUSH_BYTES:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(_in_thread(self._hash_all, batch))
                    batch, batched = [], 0
                    if (
                        self._renew is not None
                        and time.monotonic() - self._renewed > CLAIM_RENEW_SECONDS
                    ):
                        self._renewed = time.monotonic()
                        await self._renew()
            if pending is not None:
                await pending
                pending = None
            if batched > INLINE_HASH_BYTES:
                await _in_thread(self._hash_all, batch)
            else:
                self._hash_all(batch)
        finally:
            if pending is not None and not pending.done():
                await asyncio.gather(pending, return_exceptions=True)


async def _verified(
    receiver: _Receiver, body: AsyncIterable[bytes], digest: Digest
) -> AsyncIterator[bytes]:
    """The body, raising DIGEST_INVALID at its very end when it is not `digest`: the driver
    then makes nothing visible."""
    async for piece in receiver.stream(body):
        yield piece
    _check(receiver.hasher.digest(), digest)


async def _joined(*sources: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    for source in sources:
        async for piece in source:
            yield piece


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _each(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@dataclass(slots=True)
class _Claimed:
    """A session row as its claimant sees it, and what the claimant will write back."""

    session: UploadSession
    token: str
    offset: int
    parts: int
    staged: int
    storage_state: UploadState | None
    hash_state: bytes | None


class Uploads:
    """Start, extend, finish, cancel and expire upload sessions."""

    def __init__(
        self,
        db: Database,
        driver: StorageDriver,
        *,
        expiry_seconds: float = DEFAULT_EXPIRY_SECONDS,
    ) -> None:
        self.db = db
        self.driver = driver
        self.expiry_seconds = expiry_seconds

    # -- sessions ------------------------------------------------------------------------------

    async def start(self, repository: str) -> UploadSession:
        now = utcnow()
        row = {
            "upload": str(uuid.uuid4()),
            "repo": repository,
            "offset": 0,
            "part_count": 0,
            "staged_bytes": 0,
            "state": None,
            "hash": None,
            "now": now,
            "holder": None,
            "holder_since": None,
        }
        await self.db.transaction(lambda conn: execute_on_driver(conn, _START, row), durable=False)
        return UploadSession(row["upload"], repository, 0, now.timestamp())

    async def get(self, upload_id: str, repository: str) -> UploadSession:
        """The live session `upload_id` of `repository`; BLOB_UPLOAD_UNKNOWN otherwise."""
        upload_id = _parse_upload_id(upload_id)
        row = await self.db.first(_SESSION, {"upload": upload_id})
        if row is None or row[0] != repository:
            # A session of another repository is as unknown here as a missing one.
            raise BlobUploadUnknown(f"upload {upload_id} is unknown in {repository}")
        _, received, started_at, active_at = row
        session = UploadSession(upload_id, repository, received, _moment(started_at).timestamp())
        if _moment(active_at).timestamp() < time.time() - self.expiry_seconds:
            await self.cancel(session)
            raise BlobUploadUnknown(f"upload {upload_id} expired; start a new upload")
        return session

    async def size(self, session: UploadSession) -> int:
        return session.offset

    @property
    def min_chunk_length(self) -> int | None:
        """The smallest chunk the store takes as one part (`OCI-Chunk-Min-Length`); smaller
        chunks work, but are staged and copied once. None when any size is as good."""
        return self.driver.min_part_size or None

    # -- receiving ------------------------------------------------------------------------------

    async def append(
        self,
        session: UploadSession,
        body: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Add a chunk; return the new size. `start`/`length` come from `Content-Range`."""
        claimed = await self._claim(session, session.offset if start is None else start)
        try:
            receiver = await self._receive(claimed, body, final=False)
            if length is not None and receiver.received != length:
                raise BlobUploadInvalid(
                    f"Content-Range announced {length} bytes but the body held {receiver.received}",
                    detail={"announced": length, "received": receiver.received},
                )
        except BaseException:
            await asyncio.shield(self._release(claimed))
            raise
        claimed.hash_state = (
            receiver.hasher.state() if isinstance(receiver.hasher, ResumableSha256) else None
        )
        await self._advance(claimed)
        return claimed.offset

    async def finish(
        self,
        session: UploadSession,
        digest: Digest,
        body: AsyncIterable[bytes] | None = None,
        *,
        before: Hook | None = None,
        after: Callable[[Connection, int], None] | None = None,
    ) -> int:
        """Take a last chunk, check the digest and make the blob visible; return its size.

        `before` runs in the transaction that claims the session (before any byte is
        written), `after(connection, size)` in the one that drops it, once the blob is
        visible and durable: if it fails, the session stays, and the client may finish again.
        A session that received nothing yet is finished without a claim (`_finish_whole`):
        one transaction then drops it and runs `after` (or `before`, if the drop lost). A
        digest mismatch cancels the session (the client starts again), as Distribution."""
        if session.offset == 0:
            return await self._finish_whole(session, digest, body, before, after)
        claimed = await self._claim(session, session.offset, before)
        try:
            size = await self._finish_parts(claimed, digest, body)
        except DigestInvalid:
            await asyncio.shield(self._drop(claimed.session.id, claimed.storage_state))
            raise
        except BaseException:
            await asyncio.shield(self._release(claimed))
            raise
        also = None if after is None else (lambda conn: after(conn, size))
        try:
            await self._drop(session.id, None, also=also)
        except BaseException:
            await asyncio.shield(self._release(claimed))
            raise
        return size

    async def _finish_whole(
        self,
        session: UploadSession,
        digest: Digest,
        body: AsyncIterable[bytes] | None,
        before: Hook | None,
        after: Callable[[Connection, int], None] | None,
    ) -> int:
        """The whole blob in the request that finishes a session nothing was written to (how
        docker sends every small blob: POST, then PUT with the body), with one transaction
        where a claim would take three (claim, drop, and a release on failure).

        No claim is needed while the bytes stream: they go straight to the blob's own place,
        verified, where nothing but these very bytes can ever be written. Then one durable
        transaction drops the session by compare-and-set (still empty, no live claim) and
        links the blob (`after`); a link is a reference, so no garbage candidate is recorded
        beside it. A request that wrote to the session meanwhile keeps it: this one then fails
        as a claim that lost would, and its blob, written but unlinked, is recorded as a
        garbage candidate (`before`) in that same transaction. The
        price: a process killed between the blob's rename and that commit (milliseconds)
        leaves an unlinked blob no candidate names, which `ociregistry fsck` reports and a
        push of the same digest links (a chunked upload still records it before the bytes)."""
        try:
            size = await self._put_verified(digest, body if body is not None else _once(b""))
        except DigestInvalid:  # cancel the session, unless another request took it over
            dropped, row = await asyncio.shield(self._drop_fresh(session, None, None, 0))
            if dropped and _state(row[0]) is not None:
                await asyncio.shield(self._discard_storage(session.id, _state(row[0])))
            raise
        try:
            won, row = await self._drop_fresh(session, before, after, size)
        except BaseException:
            if before is not None:  # the blob is written: keep it collectable, if we can
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.db.transaction(before, durable=False))
            raise
        if not won:
            if row is None:
                raise BlobUploadUnknown(f"upload {session.id} is unknown in {session.repository}")
            received, _ = row
            raise RangeInvalid(
                f"another request wrote to upload {session.id} while this one was received; "
                f"ask for its status and continue from byte {received}",
                detail={"upload": session.id},
                repository=session.repository,
                upload_id=session.id,
                received=received,
            )
        state = _state(row[0])
        if state is not None:  # an empty chunk began a multipart upload: abort it
            await self._discard_storage(session.id, state)
        return size

    async def _drop_fresh(
        self,
        session: UploadSession,
        before: Hook | None,
        after: Callable[[Connection, int], None] | None,
        size: int,
    ) -> tuple[bool, Any]:
        """Drop a session still empty and unclaimed and run `after(connection, size)` if it
        went, else `before` (or `before` when there is no `after`); (dropped, its storage
        state) or (False, the offset and claim found instead, or None when it is gone).

        `before` records the blob as a garbage candidate, `after` links it: a link is a
        reference the collector checks for, committed with the drop, so the candidate would
        only be dropped by the next collection. It is recorded where the blob stays unlinked."""
        stale = utcnow() - timedelta(seconds=CLAIM_LEASE_SECONDS)

        def drop(conn: Connection, dead: str | None) -> tuple[bool, Any]:
            values = {"upload": session.id, "empty": 0, "stale": stale, "dead": dead}
            dropped = execute_on_driver(conn, _DROP_FRESH, values)
            if before is not None and (not dropped or after is None):
                before(conn)
            if not dropped:
                found = execute_on_driver(conn, _HOLDER, {"upload": session.id})
                return False, found[0] if found else None
            if after is not None:
                after(conn, size)
            return True, dropped[0]

        won, row = await self.db.transaction(lambda conn: drop(conn, None))
        if not won and row is not None and row[1] and _holder_is_dead(row[1]):
            dead = row[1]
            won, row = await self.db.transaction(lambda conn: drop(conn, dead))
        return won, row

    async def put_whole(self, digest: Digest, body: AsyncIterable[bytes]) -> int:
        """A monolithic upload (`POST ?digest=`): the whole blob in one request, made visible
        only once complete, durable and of the digest the client named; return its size.
        It needs no session: nothing continues it."""
        return await self._put_verified(digest, body)

    async def cancel(self, session: UploadSession) -> None:
        async with self.db.read() as conn:
            state = await conn.scalar(
                select(UploadRow.storage_state).where(UploadRow.id == session.id)
            )
        await self._drop(session.id, state)

    async def purge_expired(self, now: float | None = None) -> int:
        """Remove sessions idle for longer than the expiry, and abort multipart uploads that no
        session owns (a server killed between starting one and saving its row); return how
        many sessions went."""
        now = now if now is not None else time.time()
        cutoff = datetime.fromtimestamp(now - self.expiry_seconds, UTC)

        def expire(conn: Connection) -> list[tuple[str, UploadState | None]]:
            rows = conn.execute(
                delete(UploadRow)
                .where(UploadRow.active_at < cutoff)
                .returning(UploadRow.id, UploadRow.storage_state)
            ).all()
            return [(row.id, row.storage_state) for row in rows]

        expired = await self.db.transaction(expire)
        for upload_id, state in expired:
            await self._discard_storage(upload_id, state)
        async with self.db.read() as conn:
            live = set((await conn.scalars(select(UploadRow.id))).all())
        async for pending in self.driver.pending_uploads(UPLOADS_PREFIX):
            upload_id = pending.path.rpartition("/")[2]
            # Young ones may belong to a session saved after `live` was read.
            if upload_id not in live and pending.started < now - ORPHAN_GRACE_SECONDS:
                await self.driver.abort(pending.state)
                await self.driver.delete(pending.path)
        return len(expired)

    async def usage(self) -> tuple[int, int]:
        """How many upload sessions are unfinished, and the bytes they hold (the platform's
        storage figures show them apart from every registry's): a sum over the session rows."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(UploadRow.received), 0))
                )
            ).one()
        return int(row[0]), int(row[1])

    # -- the row as a lock -------------------------------------------------------------------

    async def _claim(
        self, session: UploadSession, expected: int, also: Hook | None = None
    ) -> _Claimed:
        token = f"{_PROCESS}.{secrets.token_hex(3)}"
        now = utcnow()
        stale = now - timedelta(seconds=CLAIM_LEASE_SECONDS)

        def claim(conn: Connection, dead: str | None) -> tuple[bool, Any]:
            values = {"upload": session.id, "expected": expected, "stale": stale, "dead": dead}
            values.update(token=token, now=now)
            won = execute_on_driver(conn, _CLAIM, values)
            if not won:  # why not: the holder, or the offset the upload is at
                found = execute_on_driver(conn, _HOLDER, {"upload": session.id})
                return False, found[0] if found else None
            if also is not None:
                also(conn)
            return True, won[0]

        won, row = await self.db.transaction(lambda conn: claim(conn, None), durable=False)
        if not won and row is not None and row[1] and _holder_is_dead(row[1]):
            dead = row[1]
            won, row = await self.db.transaction(lambda conn: claim(conn, dead), durable=False)
        if row is None:
            raise BlobUploadUnknown(f"upload {session.id} is unknown in {session.repository}")
        if not won:
            received = row[0]
            if received != expected:
                raise RangeInvalid(
                    f"chunk starts at byte {expected} but the upload holds {received} "
                    f"bytes; send the next chunk from byte {received}",
                    detail={"expected_start": received, "received_start": expected},
                    repository=session.repository,
                    upload_id=session.id,
                    received=received,
                )
            raise RangeInvalid(
                f"another request is writing to upload {session.id} now; "
                f"send the next chunk once it is answered",
                detail={"upload": session.id},
                repository=session.repository,
                upload_id=session.id,
                received=received,
            )
        received, parts, staged, storage_state, hash_state = row
        return _Claimed(session, token, received, parts, staged, _state(storage_state), hash_state)

    async def _renew(self, claimed: _Claimed) -> None:
        values = {"upload": claimed.session.id, "token": claimed.token, "now": utcnow()}
        await self.db.transaction(
            lambda conn: execute_on_driver(conn, _RENEW, values), durable=False
        )

    async def _release(self, claimed: _Claimed) -> None:
        """Give the claim back; the row stays as it was, so the failed chunk is unrecorded."""
        values = {"upload": claimed.session.id, "token": claimed.token}
        values.update(holder=None, holder_since=None)
        await self.db.transaction(
            lambda conn: execute_on_driver(conn, _RELEASE, values), durable=False
        )

    async def _advance(self, claimed: _Claimed) -> None:
        values = {
            "upload": claimed.session.id,
            "token": claimed.token,
            "offset": claimed.offset,
            "part_count": claimed.parts,
            "staged_bytes": claimed.staged,
            "state": claimed.storage_state,
            "hash": claimed.hash_state,
            "holder": None,
            "holder_since": None,
            "now": utcnow(),
        }
        advanced = await self.db.transaction(
            lambda conn: execute_on_driver(conn, _ADVANCE, values), durable=False
        )
        if not advanced:
            raise RangeInvalid(
                f"upload {claimed.session.id} was taken over while this chunk was written; "
                "ask for its status and continue from there",
                detail={"upload": claimed.session.id},
                repository=claimed.session.repository,
                upload_id=claimed.session.id,
            )

    async def _drop(
        self,
        upload_id: str,
        state: UploadState | None,
        *,
        also: Hook | None = None,
    ) -> None:
        def drop(conn: Connection) -> None:
            execute_on_driver(conn, _DROP, {"upload": upload_id})
            if also is not None:
                also(conn)

        await self.db.transaction(drop)
        await self._discard_storage(upload_id, state)

    async def _discard_storage(self, upload_id: str, state: UploadState | None) -> None:
        if state is not None:
            await self.driver.abort(state)
        await self.driver.delete(f"{UPLOADS_PREFIX}/{upload_id}")  # a staged tail

    # -- bytes -----------------------------------------------------------------------------------

    def _tail_path(self, upload_id: str, offset: int) -> str:
        return f"{UPLOADS_PREFIX}/{upload_id}/tail-{offset}"

    async def _receive(self, claimed: _Claimed, body: AsyncIterable[bytes], *, final: bool) -> Any:
        """Write `body` after what the session holds, as a part (with a staged tail before it)
        or, below the driver's part size, as a new staged tail; update `claimed`."""
        receiver = _Receiver(ResumableSha256(claimed.hash_state), lambda: self._renew(claimed))
        minimum = self.driver.min_part_size
        upload_id = claimed.session.id
        source = receiver.stream(body)
        head: list[bytes] = []  # what was peeked, as it came: joined only to be staged
        if minimum > 0 and not final:
            # Peek until the tail and the body make a part, or the body ends first.
            peeked = 0
            async for piece in source:
                head.append(piece)
                peeked += len(piece)
                if claimed.staged + peeked >= minimum:
                    break
            if claimed.staged + peeked < minimum:  # the body ended: stage a bigger tail
                if peeked:
                    staged = await self._read_tail(claimed)
                    end = claimed.offset + peeked
                    data = b"".join([staged, *head])
                    await self.driver.put_content(self._tail_path(upload_id, end), data)
                    claimed.staged += peeked
                    claimed.offset = end
                return receiver
        if claimed.storage_state is None:
            claimed.storage_state = await self.driver.begin_upload(f"{UPLOADS_PREFIX}/{upload_id}")
        tail = await self._read_tail(claimed) if claimed.staged else b""
        counted = _Counter(_joined(_once(tail), _each(head), source))
        state = await self.driver.write_part(
            claimed.storage_state, claimed.parts + 1, counted.stream()
        )
        if counted.size == 0:  # an empty chunk: no part
            return receiver
        claimed.storage_state = state
        claimed.parts += 1
        claimed.offset += counted.size - len(tail)
        claimed.staged = 0
        return receiver

    async def _read_tail(self, claimed: _Claimed) -> bytes:
        if not claimed.staged:
            return b""
        return await self.driver.get_content(self._tail_path(claimed.session.id, claimed.offset))

    async def _put_verified(self, digest: Digest, body: AsyncIterable[bytes]) -> int:
        hasher: Hasher = OneShotHash(digest.algorithm)
        receiver = _Receiver(hasher)
        return await self.driver.put_stream(blob_path(digest), _verified(receiver, body, digest))

    async def _finish_parts(
        self, claimed: _Claimed, digest: Digest, body: AsyncIterable[bytes] | None
    ) -> int:
        receiver = await self._receive(
            claimed, body if body is not None else _once(b""), final=True
        )
        if claimed.storage_state is None:  # no part at all: an empty blob
            return await self._put_verified(digest, _once(b""))
        if digest.algorithm == DEFAULT_ALGORITHM:
            _check(receiver.hasher.digest(), digest)
            await self.driver.compose(claimed.storage_state, blob_path(digest))
            return claimed.offset
        # Only sha256 is hashed as chunks arrive: compose aside, hash from storage, copy.
        aside = f"{UPLOADS_PREFIX}/{claimed.session.id}.composed"  # outside what compose ends
        await self.driver.compose(claimed.storage_state, aside)
        claimed.storage_state = None
        try:
            return await self._put_verified(digest, self.driver.reader(aside))
        finally:
            await asyncio.shield(self.driver.delete(aside))


def _check(actual: Digest, expected: Digest) -> None:
    if actual != expected:
        raise DigestInvalid(
            f"the uploaded content has digest {actual}, not {expected}",
            detail={"expected": str(expected), "actual": str(actual)},
        )


class _Counter:
    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self.source = source
        self.size = 0

    async def stream(self) -> AsyncIterator[bytes]:
        async for piece in self.source:
            self.size += len(piece)
            yield piece
