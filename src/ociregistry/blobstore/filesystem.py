"""The local-filesystem storage driver: the embedded default.

Durability rules, because a 201 is a promise that must survive a SIGKILL or a power cut:
every object is written to a temporary file in `.incoming/`, fsynced, renamed into place and
its directory fsynced, so a reader (and a crash) sees the whole object or nothing. What a
killed server leaves in `.incoming/` is swept by the purge of stale uploads.

A multipart upload is one file (`<upload folder>/data`) whose parts are written at their
offsets and synced part by part; the state records the size of each part. Composing is a sync
and a rename: finishing a chunked upload copies no byte again. The bytes of a part that failed
half-way are cut off at once (or, after a crash, lie past the recorded size, where the next
part overwrites them or compose cuts them off); they are never read.

Streams are written around the page cache (`O_DIRECT`), through a reused, page-aligned bounce
buffer, in the aligned middle of each batch; only the head up to the first 4 KiB boundary and
the tail after the last one go through the page cache. A buffered write makes the kernel find
a fresh page of cache for every 4 KiB and copy into it: on this machine that copy
(`copy_folio_from_iter_atomic`) was the largest single cost of an upload (30 % of a
monolithic upload's CPU, 45 % of a chunked one's, in `perf`), 0.3 to 0.9 ms of CPU per MiB
against 0.15 ms for the copy into the bounce buffer and a direct write. The price: a fresh
blob is not in the cache, so its first GET reads the disk (measured: 2.0 ms of CPU per MiB for
that first GET, 0.4-0.5 for one from the cache); a push pulled at once from this machine costs
about what it did, one pulled after its pages would have left the cache anyway costs less, and
the push itself, what a 201 waits for, costs a third less. A filesystem that refuses
`O_DIRECT` (tmpfs) is written through the cache as before.
The bytes are durable only after the same `fsync`/`fdatasync` as before (`O_DIRECT` bypasses
the cache, not the disk's own): the rules above do not change.

All blocking calls run in a worker thread, several system calls per hop, so the event loop
never waits on the disk. An object that ends within one batch (a manifest, a config, a small
layer) is written whole in one hop once its last byte arrived: created, written, synced,
renamed, its folder synced. Temporary files start with a dot, a name no registry path has, so
`walk` never yields them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import mmap
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from ociregistry.blobstore.driver import (
    FileInfo,
    PathNotFound,
    PendingUpload,
    StorageDriver,
    StorageError,
    UploadState,
)

READ_CHUNK_BYTES = 1 << 20  # large enough that one thread hop per chunk costs nothing
WRITE_BATCH_BYTES = 4 << 20  # incoming chunks are written together, one `pwritev` per batch
WRITE_BATCH_PIECES = 512  # and at most this many in one (the system's IOV_MAX is 1,024)
DIRECT_FROM_BYTES = 64 << 10  # an object written whole goes around the cache from this size
DIRECT_ALIGNMENT = 4096  # what O_DIRECT wants of addresses, offsets and lengths (a page)
DIRECT_BUFFER_BYTES = 4 << 20  # a batch (a larger one is written in two); reused
FREE_BUFFERS_KEPT = 2  # for the next streams; more streams at once map more, then unmap them
UPLOAD_DATA = "data"
INCOMING = ".incoming"  # objects being written; a name no registry path has
INCOMING_EXPIRY_SECONDS = 24 * 3600  # what a killed server left there goes after this

T = TypeVar("T")


async def _in_thread(function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))


def _fsync_directory(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_folder(folder: Path) -> None:
    """Create `folder` and the folders above it that are missing, each new name made durable
    (its parent synced), as a renamed file's is."""
    if folder.is_dir():
        return
    _make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:  # made meanwhile by another request; its own synced it
        return
    _fsync_directory(folder.parent)


def _publish(temporary: str | Path, target: str | Path) -> None:
    """Rename a synced file into place and make the new name durable. The target's folder
    is made only when the rename finds none: a blob's folder (one of 256 per algorithm)
    almost always exists, and trying to make it first costs two system calls per blob."""
    folder = os.path.dirname(target)
    try:
        os.replace(temporary, target)
    except FileNotFoundError:  # the target's folder is missing: the temporary file is there
        _make_folder(Path(folder))
        os.replace(temporary, target)
    _fsync_directory(folder)


def _write_whole(temporary: str, target: str, pieces: list[bytes], size: int) -> None:
    """Write a whole object of `size` bytes (a small blob, a manifest) into place, all in one
    thread hop: the temporary file written, synced, renamed and its folder synced. Above
    `DIRECT_FROM_BYTES` the bytes go around the page cache, as a stream's do."""
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            if size >= DIRECT_FROM_BYTES:
                writer = _StreamWriter(fd, 0)
                try:
                    writer.write(pieces)
                except BaseException:
                    writer.release()
                    raise
                writer.close()
            else:
                _write_batch(fd, pieces, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(temporary, target)
    except BaseException:
        _unlink(temporary)
        raise


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def _delete(target: Path) -> None:
    try:
        target.unlink()
        return
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):  # how unlink(2) refuses a folder
        if not target.is_dir() or target.is_symlink():
            raise
    try:
        target.rmdir()  # an upload's folder is often empty by now: one call, not a walk
    except FileNotFoundError:
        return
    except OSError:  # not empty
        try:
            shutil.rmtree(target)
        except FileNotFoundError:
            return


def _stat(target: Path) -> os.stat_result | None:
    try:
        result = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if os.path.isdir(target) else result


def _write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _write_batch(fd: int, pieces: list[bytes], offset: int) -> None:
    """Write `pieces` one after the other from `offset` with one system call (a short write
    finishes piece by piece): the bytes are never joined into one buffer."""
    written = os.pwritev(fd, pieces, offset) if len(pieces) > 1 else 0
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
        else:
            _write_all(fd, memoryview(piece)[written:], offset + written)
            written = 0
        offset += len(piece)


_free_buffers: list[mmap.mmap] = []  # bounce buffers no stream uses now, their pages mapped
_buffers_lock = threading.Lock()


def _take_buffer() -> mmap.mmap:
    with _buffers_lock:
        if _free_buffers:
            return _free_buffers.pop()
    return mmap.mmap(-1, DIRECT_BUFFER_BYTES)  # page-aligned, as O_DIRECT wants


def _give_back(buffer: mmap.mmap) -> None:
    with _buffers_lock:
        if len(_free_buffers) < FREE_BUFFERS_KEPT:
            _free_buffers.append(buffer)
            return
    buffer.close()


def _set_direct(fd: int, direct: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; False when the filesystem refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = flags | os.O_DIRECT if direct else flags & ~os.O_DIRECT
    if wanted != flags:
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            return False
    return True


class _StreamWriter:
    """Writes one stream's batches to `fd` from `offset` on, one after the other (never two at
    once), the aligned middle with O_DIRECT through a bounce buffer, the unaligned head and
    tail through the page cache; `close()` writes the tail and must be called after the last
    batch (also after a failure: it gives the buffer back)."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.offset = offset  # where the bounce buffer's first byte goes
        self.head = -offset % DIRECT_ALIGNMENT  # bytes before the first aligned offset
        self.buffer: mmap.mmap | None = _take_buffer() if hasattr(os, "O_DIRECT") else None
        self.filled = 0
        self.direct = False

    def write(self, pieces: list[bytes]) -> None:
        if self.buffer is None:
            _write_batch(self.fd, pieces, self.offset)
            self.offset += sum(len(piece) for piece in pieces)
            return
        buffer = self.buffer
        for piece in pieces:
            view = memoryview(piece)
            if self.head:
                first = view[: self.head]
                self._buffered(first)
                self.head -= len(first)
                view = view[len(first) :]
            while view:
                take = min(len(view), DIRECT_BUFFER_BYTES - self.filled)
                buffer[self.filled : self.filled + take] = view[:take]
                self.filled += take
                view = view[take:]
                if self.filled == DIRECT_BUFFER_BYTES:
                    self._flush_aligned()
        self._flush_aligned()

    def _buffered(self, data: memoryview) -> None:
        if self.direct:
            _set_direct(self.fd, False)
            self.direct = False
        _write_all(self.fd, data, self.offset)
        self.offset += len(data)

    def _flush_aligned(self) -> None:
        assert self.buffer is not None
        aligned = self.filled - self.filled % DIRECT_ALIGNMENT
        if not aligned:
            return
        with memoryview(self.buffer) as view:
            try:
                if not self.direct:
                    self.direct = _set_direct(self.fd, True)
                if self.direct:
                    _write_all(self.fd, view[:aligned], self.offset)
                    self.offset += aligned
                    rest = self.filled - aligned
                    view[:rest] = view[aligned : self.filled]  # under 4 KiB: the next start
                    self.filled = rest
                    return
            except OSError as error:  # a filesystem that takes the flag, not the writes
                if error.errno != errno.EINVAL:
                    raise
                _set_direct(self.fd, False)
                self.direct = False
            # Refused (tmpfs): the page cache, for good.
            _write_all(self.fd, view[: self.filled], self.offset)
            self.offset += self.filled
            self.filled = 0
        self.release()

    def release(self) -> None:
        """Give the buffer back, unwritten (after a failure, or once O_DIRECT was refused)."""
        buffer, self.buffer = self.buffer, None
        if buffer is not None:
            _give_back(buffer)

    def close(self) -> None:
        """Write what is left (under 4 KiB, through the page cache) and give the buffer back."""
        buffer, self.buffer = self.buffer, None
        if buffer is None:
            return
        try:
            if self.filled:
                with memoryview(buffer) as view:
                    self._buffered(view[: self.filled])
                self.filled = 0
        finally:
            if self.direct:
                _set_direct(self.fd, False)
                self.direct = False
            _give_back(buffer)


def _sync_and_publish(fd: int, temporary: str, target: str) -> None:
    os.fsync(fd)
    _publish(temporary, target)


def _scan(directory: Path, hidden: bool = False) -> list[tuple[str, bool, int, float]]:
    """(name, is a folder, size, mtime) of each visible entry of one folder."""
    entries = []
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.name.startswith(".") and not hidden:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        entries.append((entry.name, True, 0, 0.0))
                    else:
                        info = entry.stat(follow_symlinks=False)
                        entries.append((entry.name, False, info.st_size, info.st_mtime))
                except FileNotFoundError:
                    continue  # deleted while we looked
    except (FileNotFoundError, NotADirectoryError):
        return []
    return entries


async def _joined(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk


class FilesystemDriver(StorageDriver):
    """Stores every path as a file under one root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        (self.root / INCOMING).mkdir(parents=True, exist_ok=True)
        self._incoming_folder = str(self.root / INCOMING)

    def _full(self, path: str) -> Path:
        return self.root / path

    def _incoming(self) -> str:
        """A new temporary file's name (a string: built per object written, where joining
        `Path`s costs several times as much)."""
        return f"{self._incoming_folder}/{uuid.uuid4().hex}"

    async def get_content(self, path: str) -> bytes:
        try:
            return await _in_thread(self._full(path).read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes) -> None:
        target = f"{self.root}/{path}"
        await _in_thread(_write_whole, self._incoming(), target, [data], len(data))

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            fd = await _in_thread(os.open, self._full(path), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        try:
            if length is None:
                length = os.fstat(fd).st_size - offset
            remaining = length
            while remaining > 0:
                chunk = await _in_thread(os.pread, fd, min(READ_CHUNK_BYTES, remaining), offset)
                if not chunk:
                    break
                offset += len(chunk)
                remaining -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def stat(self, path: str) -> FileInfo | None:
        result = await _in_thread(_stat, self._full(path))
        if result is None:
            return None
        return FileInfo(path=path, size=result.st_size, modified=result.st_mtime)

    async def walk(self, prefix: str) -> AsyncIterator[FileInfo]:
        top = self._full(prefix)
        single = await _in_thread(_stat, top)
        if single is not None:
            yield FileInfo(prefix, single.st_size, single.st_mtime)
            return
        folders = [prefix]
        while folders:
            folder = folders.pop()
            for name, is_folder, size, modified in await _in_thread(_scan, self._full(folder)):
                if is_folder:
                    folders.append(f"{folder}/{name}")
                else:
                    yield FileInfo(f"{folder}/{name}", size, modified)

    async def delete(self, path: str) -> None:
        await _in_thread(_delete, self._full(path))

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """A stream that ends within its first batch (a config, a small layer: most blobs
        by count) is written whole in one thread hop (`_write_whole`) once it ended, where
        creating, writing, closing the writer and syncing took four. A longer one is
        written batch by batch as it arrives, its first batch included."""
        target = f"{self.root}/{path}"
        temporary = self._incoming()
        source = aiter(chunks)
        first: list[bytes] = []
        size = 0
        async for chunk in source:
            if chunk:
                first.append(chunk)
                size += len(chunk)
                if size >= WRITE_BATCH_BYTES or len(first) >= WRITE_BATCH_PIECES:
                    break
        else:
            await _in_thread(_write_whole, temporary, target, first, size)
            return size
        fd = await _in_thread(os.open, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            size = await self._write_from(fd, 0, _joined(first, source))
            await _in_thread(_sync_and_publish, fd, temporary, target)
            return size
        except BaseException:
            await asyncio.shield(_in_thread(_unlink, temporary))
            raise
        finally:
            os.close(fd)

    @staticmethod
    async def _write_from(fd: int, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Write a stream at `offset`, in batches of about `WRITE_BATCH_BYTES` (one thread
        hop and one system call each); the next batch arrives while the last one is written."""
        start = offset
        writer = _StreamWriter(fd, offset)
        pending: asyncio.Future[None] | None = None
        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                batch.append(chunk)
                batched += len(chunk)
                if batched < WRITE_BATCH_BYTES and len(batch) < WRITE_BATCH_PIECES:
                    continue
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(_in_thread(writer.write, batch))
                offset += batched
                batch, batched = [], 0
            if pending is not None:
                await pending
            if batch:
                pending = asyncio.ensure_future(_in_thread(writer.write, batch))
                offset += batched
                await pending
        except BaseException:
            if pending is not None and not pending.done():
                await asyncio.gather(pending, return_exceptions=True)  # before the fd closes
            writer.release()
            raise
        await _in_thread(writer.close)
        return offset - start

    # Multipart uploads: one file, parts at their offsets.

    async def begin_upload(self, path: str) -> UploadState:
        data = self._full(path) / UPLOAD_DATA

        def create() -> None:
            data.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(data, os.O_WRONLY | os.O_CREAT, 0o644))

        await _in_thread(create)
        return {"path": path, "parts": []}

    def _data(self, state: UploadState) -> Path:
        return self._full(state["path"]) / UPLOAD_DATA

    async def write_part(
        self, state: UploadState, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadState:
        parts: list[int] = list(state["parts"])
        if part_number > len(parts) + 1:
            raise StorageError(f"part {part_number} follows part {len(parts)}")
        parts = parts[: part_number - 1]
        try:
            fd = await _in_thread(os.open, self._data(state), os.O_WRONLY)
        except FileNotFoundError:
            raise PathNotFound(state["path"]) from None
        try:
            size = await self._write_from(fd, sum(parts), chunks)
            # Synced before the caller's row records the part. Not for the 202 (a PATCH
            # promises nothing durable), but because the row may become durable before the
            # bytes: a session's progress commits without an fsync of its own, yet the next
            # durable commit of any request (a 201's) syncs the log, the row with it. A row
            # that outlived a power cut recording bytes that did not would finish into a blob
            # named by the right digest (the hash state is in the row) holding the wrong
            # bytes. Synced first, the row is at or behind the bytes after a power cut: the
            # client gets BLOB_UPLOAD_UNKNOWN or a 416 with the row's offset and resends from
            # there. Written around the cache, the part leaves this sync little to write.
            await _in_thread(os.fdatasync, fd)
        except BaseException:
            # Give the space of the failed part back at once (a full disk must not stay full).
            await asyncio.shield(_in_thread(os.ftruncate, fd, sum(parts)))
            raise
        finally:
            os.close(fd)
        return {**state, "parts": [*parts, size]}

    async def compose(self, state: UploadState, destination: str) -> None:
        data, target, size = self._data(state), self._full(destination), sum(state["parts"])

        def finish() -> None:
            try:
                fd = os.open(data, os.O_WRONLY)
            except FileNotFoundError:
                raise PathNotFound(state["path"]) from None
            try:
                held = os.fstat(fd).st_size
                if held < size:
                    raise StorageError(f"upload {state['path']} holds {held} of {size} bytes")
                if held > size:  # the remains of a part that failed
                    os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
            _publish(data, target)
            _delete(data.parent)

        await _in_thread(finish)

    async def abort(self, state: UploadState) -> None:
        await _in_thread(_delete, self._full(state["path"]))

    async def pending_uploads(self, prefix: str) -> AsyncIterator[PendingUpload]:
        await _in_thread(self._sweep_incoming)
        for name, is_folder, _, _ in await _in_thread(_scan, self._full(prefix)):
            if not is_folder:
                continue
            path = f"{prefix}/{name}"
            try:
                started = (await _in_thread(os.stat, self._full(path))).st_mtime
            except FileNotFoundError:
                continue
            yield PendingUpload(path=path, started=started, state={"path": path, "parts": []})

    def _sweep_incoming(self) -> None:
        cutoff = time.time() - INCOMING_EXPIRY_SECONDS
        for name, is_folder, _, modified in _scan(self.root / INCOMING, hidden=True):
            if not is_folder and modified < cutoff:
                (self.root / INCOMING / name).unlink(missing_ok=True)
