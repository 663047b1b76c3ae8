"""The local-filesystem storage driver: the embedded default.

Durability rules, because a 201 is a promise that must survive a SIGKILL or a power cut:
small objects are written to a temporary file, fsynced, renamed into place and the directory
fsynced; streams are fsynced on `commit()`; `move()` fsyncs both directories. All blocking
calls run in a worker thread, several system calls per hop, so the event loop never waits on
the disk.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from ociregistry.blobstore.driver import (
    FileInfo,
    FileWriter,
    PathNotFound,
    StorageDriver,
    check_path,
)

READ_CHUNK_BYTES = 1 << 20  # large enough that one thread hop per chunk costs nothing

T = TypeVar("T")


async def _in_thread(function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(target: Path, data: bytes, durable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(target.parent)


def _move(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except FileNotFoundError:
        raise PathNotFound(str(source)) from None
    # The new name is what must survive a crash; a stale old name (an upload's leftover) is
    # harmless and purged with its session.
    _fsync_directory(destination.parent)


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
        return target.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_chunk(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)


def _open_locked(target: Path, append: bool) -> tuple[int, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # One writer per upload at a time, across every worker process and instance.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not append:
            os.ftruncate(fd, 0)
        size = os.lseek(fd, 0, os.SEEK_END)
    except BaseException:
        os.close(fd)
        raise
    return fd, size


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _FilesystemWriter(FileWriter):
    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await _in_thread(_write_all, self._fd, data)
        self._size += len(data)

    async def truncate(self, size: int) -> None:
        def cut() -> None:
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)

        await _in_thread(cut)
        self._size = size

    async def commit(self) -> None:
        await _in_thread(os.fsync, self._fd)

    async def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing releases the lock


class FilesystemDriver(StorageDriver):
    """Stores every path as a file under one root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _full(self, path: str) -> Path:
        return self.root / check_path(path)

    async def get_content(self, path: str) -> bytes:
        try:
            return await _in_thread(self._full(path).read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        await _in_thread(_write_atomically, self._full(path), data, durable)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            fd = await _in_thread(os.open, self._full(path), os.O_RDONLY)
        except FileNotFoundError:
            raise PathNotFound(path) from None
        try:
            if length is None:
                length = os.fstat(fd).st_size - offset
            remaining = length
            while remaining > 0:
                chunk = await _in_thread(
                    _read_chunk, fd, offset, min(READ_CHUNK_BYTES, remaining)
                )
                if not chunk:
                    break
                offset += len(chunk)
                remaining -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def writer(self, path: str, *, append: bool) -> FileWriter:
        fd, size = await _in_thread(_open_locked, self._full(path), append)
        return _FilesystemWriter(fd, size)

    async def stat(self, path: str) -> FileInfo | None:
        result = await _in_thread(_stat, self._full(path))
        if result is None:
            return None
        return FileInfo(path=path, size=result.st_size, modified=result.st_mtime)

    async def list(self, path: str) -> list[str]:
        def names() -> list[str]:
            try:
                return sorted(os.listdir(self._full(path)))
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as error:
                if error.errno == errno.ENOTDIR:
                    return []
                raise

        return await _in_thread(names)

    async def move(self, source: str, destination: str) -> None:
        await _in_thread(_move, self._full(source), self._full(destination))

    async def delete(self, path: str) -> None:
        await _in_thread(_delete, self._full(path))
