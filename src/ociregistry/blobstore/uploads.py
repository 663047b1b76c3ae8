"""Blob uploads: sessions that receive bytes in one or many requests, then become a blob.

A session is a folder in storage, not process memory, so each request of a chunked upload may
land on any worker or instance. Bytes are hashed while they are written; the running hash is
kept per process as a speed-up, and whenever it is missing or behind (another worker took a
chunk), the missing bytes are read back from storage and hashed. A blob becomes visible only
by an atomic move of a complete, fsynced and verified file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from ociregistry.blobstore.digest import DEFAULT_ALGORITHM, Digest
from ociregistry.blobstore.driver import FileWriter, PathNotFound, StorageDriver
from ociregistry.blobstore.store import blob_path
from ociregistry.errors import BlobUploadInvalid, BlobUploadUnknown, DigestInvalid, RangeInvalid

DEFAULT_EXPIRY_SECONDS = 24 * 3600
FLUSH_BYTES = 4 << 20  # write and hash in 4 MiB steps: few thread hops, bounded memory
INLINE_HASH_BYTES = 64 << 10  # smaller steps are hashed on the event loop (tens of microseconds)
MAX_CACHED_HASHES = 1024


@dataclass(frozen=True, slots=True)
class UploadSession:
    id: str
    repository: str
    started_at: float


def upload_range(size: int) -> str:
    """The `Range` header value for `size` bytes received (`0-0` when none, as Distribution)."""
    return f"0-{max(size - 1, 0)}"


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


async def _in_thread(function, *args):  # type: ignore[no-untyped-def]
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))


class Uploads:
    """Start, extend, finish, cancel and expire upload sessions."""

    def __init__(
        self, driver: StorageDriver, *, expiry_seconds: float = DEFAULT_EXPIRY_SECONDS
    ) -> None:
        self.driver = driver
        self.expiry_seconds = expiry_seconds
        # upload id -> (bytes hashed, sha256 state); a cache, never the truth.
        self._hashes: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()

    @staticmethod
    def _info_path(upload_id: str) -> str:
        return f"uploads/{upload_id}/info"

    @staticmethod
    def _data_path(upload_id: str) -> str:
        return f"uploads/{upload_id}/data"

    async def start(self, repository: str) -> UploadSession:
        session = UploadSession(str(uuid.uuid4()), repository, time.time())
        info = {"repository": repository, "started_at": session.started_at}
        # Not synced: a session lost in a crash is simply started again; a 202 promises nothing.
        await self.driver.put_content(
            self._info_path(session.id), json.dumps(info).encode(), durable=False
        )
        return session

    async def get(self, upload_id: str, repository: str) -> UploadSession:
        """The live session `upload_id` of `repository`; BLOB_UPLOAD_UNKNOWN otherwise."""
        upload_id = _parse_upload_id(upload_id)
        try:
            info = json.loads(await self.driver.get_content(self._info_path(upload_id)))
        except PathNotFound:
            info = None
        if info is None or info.get("repository") != repository:
            # A session of another repository is as unknown here as a missing one.
            raise BlobUploadUnknown(f"upload {upload_id} is unknown in {repository}")
        session = UploadSession(upload_id, repository, float(info["started_at"]))
        if await self._last_activity(session) < time.time() - self.expiry_seconds:
            await self.cancel(session)
            raise BlobUploadUnknown(f"upload {upload_id} expired; start a new upload")
        return session

    async def size(self, session: UploadSession) -> int:
        info = await self.driver.stat(self._data_path(session.id))
        return 0 if info is None else info.size

    async def _last_activity(self, session: UploadSession) -> float:
        info = await self.driver.stat(self._data_path(session.id))
        return max(session.started_at, info.modified if info else 0.0)

    async def append(
        self,
        session: UploadSession,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Add a chunk; return the new size. `start`/`length` come from `Content-Range`."""
        writer = await self.driver.writer(self._data_path(session.id), append=True)
        async with writer:
            before = writer.size
            if start is not None and start != before:
                raise RangeInvalid(
                    f"chunk starts at byte {start} but the upload holds {before} bytes; "
                    f"send the next chunk from byte {before}",
                    detail={"expected_start": before, "received_start": start},
                    headers=self._progress_headers(session, before),
                )
            try:
                await self._receive(session, writer, body)
            except BaseException:  # a dropped connection leaves the upload as it was
                await self._undo(session, writer, before)
                raise
            received = writer.size - before
            if length is not None and received != length:
                await self._undo(session, writer, before)
                raise BlobUploadInvalid(
                    f"Content-Range announced {length} bytes but the body held {received}",
                    detail={"announced": length, "received": received},
                )
            return writer.size

    async def finish(
        self, session: UploadSession, digest: Digest, body: AsyncIterator[bytes] | None = None
    ) -> int:
        """Take a last chunk, check the digest and make the blob visible; return its size.

        On a digest mismatch the last chunk is taken back and the session stays as it was.
        """
        writer = await self.driver.writer(self._data_path(session.id), append=True)
        async with writer:
            before = writer.size
            if body is not None:
                try:
                    await self._receive(session, writer, body)
                except BaseException:
                    await self._undo(session, writer, before)
                    raise
            actual = await self._digest(session, digest.algorithm, writer.size)
            if actual != digest:
                await self._undo(session, writer, before)
                raise DigestInvalid(
                    f"the uploaded content has digest {actual}, not {digest}",
                    detail={"expected": str(digest), "actual": str(actual)},
                )
            size = writer.size
            await writer.commit()
        await self.driver.move(self._data_path(session.id), blob_path(digest))
        await self.cancel(session)
        return size

    async def put_whole(self, digest: Digest, body: AsyncIterator[bytes]) -> int:
        """A monolithic upload (`POST ?digest=`): the whole blob in one request, made visible
        only once complete, durable and of the digest the client named; return its size.

        It needs no session state, since no later request continues it: only its data file is
        written, which the purge of stale sessions removes if the server dies mid-request."""
        session = UploadSession(str(uuid.uuid4()), "", time.time())
        try:
            return await self.finish(session, digest, body)
        except BaseException:
            await self.cancel(session)
            raise

    async def cancel(self, session: UploadSession) -> None:
        self._hashes.pop(session.id, None)
        await self.driver.delete(f"uploads/{session.id}")

    async def purge_expired(self, now: float | None = None) -> int:
        """Remove sessions idle for longer than the expiry; return how many went."""
        cutoff = (now if now is not None else time.time()) - self.expiry_seconds
        purged = 0
        for name in await self.driver.list("uploads"):
            try:
                upload_id = _parse_upload_id(name)
            except BlobUploadUnknown:
                continue
            info = await self.driver.stat(self._info_path(upload_id))
            data = await self.driver.stat(self._data_path(upload_id))
            newest = max(info.modified if info else 0.0, data.modified if data else 0.0)
            if newest < cutoff:
                self._hashes.pop(upload_id, None)
                await self.driver.delete(f"uploads/{upload_id}")
                purged += 1
        return purged

    async def usage(self) -> tuple[int, int]:
        """How many upload sessions are unfinished, and the bytes they hold (the platform's
        storage figures show them apart from every registry's)."""
        sessions = held = 0
        for name in await self.driver.list("uploads"):
            try:
                upload_id = _parse_upload_id(name)
            except BlobUploadUnknown:
                continue
            data = await self.driver.stat(self._data_path(upload_id))
            sessions += 1
            held += data.size if data else 0
        return sessions, held

    def _progress_headers(self, session: UploadSession, size: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{session.repository}/blobs/uploads/{session.id}",
            "Range": upload_range(size),
            "Docker-Upload-UUID": session.id,
        }

    def progress_headers(self, session: UploadSession, size: int) -> dict[str, str]:
        return self._progress_headers(session, size)

    async def _receive(
        self, session: UploadSession, writer: FileWriter, body: AsyncIterator[bytes]
    ) -> None:
        """Stream `body` to the end of the file, hashing as it goes when the hash is current."""
        offset = writer.size
        cached = self._hashes.pop(session.id, None)
        if cached and cached[0] == offset:
            hasher: hashlib._Hash | None = cached[1]
        else:  # a new upload starts a hash; one that is behind is caught up at the end
            hasher = hashlib.new(DEFAULT_ALGORITHM) if offset == 0 else None
        try:
            pending: asyncio.Future[object] | None = None
            buffer = bytearray()
            async for chunk in body:
                buffer += chunk
                if len(buffer) >= FLUSH_BYTES:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(self._flush(writer, hasher, buffer))
                    buffer = bytearray()
            if pending is not None:
                await pending
            if buffer:
                await self._flush(writer, hasher, buffer)
        except BaseException:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            raise  # the hash state is dropped; it is recomputed from storage when needed
        if hasher is not None:
            self._remember(session.id, writer.size, hasher)

    @staticmethod
    async def _flush(writer: FileWriter, hasher: hashlib._Hash | None, data: bytearray) -> None:
        if hasher is None:
            await writer.write(data)
        elif len(data) <= INLINE_HASH_BYTES:  # microseconds: cheaper than a thread hop
            hasher.update(data)
            await writer.write(data)
        else:  # hashing and writing release the GIL: run them side by side
            await asyncio.gather(writer.write(data), _in_thread(hasher.update, data))

    def _remember(self, upload_id: str, offset: int, hasher: hashlib._Hash) -> None:
        self._hashes[upload_id] = (offset, hasher)
        self._hashes.move_to_end(upload_id)
        while len(self._hashes) > MAX_CACHED_HASHES:
            self._hashes.popitem(last=False)

    async def _digest(self, session: UploadSession, algorithm: str, size: int) -> Digest:
        """The digest of the first `size` bytes, reusing the running hash where it fits."""
        cached = self._hashes.get(session.id)
        if algorithm == DEFAULT_ALGORITHM and cached and cached[0] <= size:
            offset, hasher = cached[0], cached[1].copy()
        else:
            offset, hasher = 0, hashlib.new(algorithm)
        if offset < size:
            data = self.driver.reader(self._data_path(session.id), offset, size - offset)
            async for chunk in data:
                await _in_thread(hasher.update, chunk)
        return Digest(algorithm, hasher.hexdigest())

    async def _undo(self, session: UploadSession, writer: FileWriter, size: int) -> None:
        self._hashes.pop(session.id, None)
        await writer.truncate(size)
