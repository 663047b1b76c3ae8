"""The narrow storage interface the registry sits on.

Modelled on CNCF Distribution's storage driver: small objects, streams, stat, list, move and
delete, addressed by slash-separated relative paths. The blob and upload logic above it never
touches a file system directly, so an object-store driver can replace `FilesystemDriver`
without changing the registry.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

# Paths are built by the registry from validated digests and UUIDs only; this pattern is the
# last guard against anything else reaching a driver.
_SAFE_PATH = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")


class StorageError(Exception):
    """A driver failed in a way the registry cannot explain to the client (disk full, I/O)."""


class PathNotFound(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no such path in storage: {path}")
        self.path = path


def check_path(path: str) -> str:
    if _SAFE_PATH.fullmatch(path) is None or ".." in path:
        raise ValueError(f"unsafe storage path {path!r}")
    return path


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch


class FileWriter(ABC):
    """An append-only stream into one path. Nothing is durable until `commit()`."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Bytes in the file so far, including those written before this writer opened."""

    @abstractmethod
    async def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    async def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes: undo a chunk that turned out to be wrong."""

    @abstractmethod
    async def commit(self) -> None:
        """Make everything written durable (fsync)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> FileWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class StorageDriver(ABC):
    """Where bytes live. All methods are safe to call from many processes at once."""

    @abstractmethod
    async def get_content(self, path: str) -> bytes:
        """A small object whole. Raises PathNotFound."""

    @abstractmethod
    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Write a small object atomically (readers see all of it or nothing) and, unless
        `durable` is False, durably: state that a crash may lose (an upload session's
        bookkeeping) skips the sync."""

    @abstractmethod
    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (to the end when None) from `offset`. Raises PathNotFound."""

    @abstractmethod
    async def writer(self, path: str, *, append: bool) -> FileWriter:
        """A writer at the end of `path` (append) or of a new empty file; holds a lock on it."""

    @abstractmethod
    async def stat(self, path: str) -> FileInfo | None:
        """Size and modification time, or None when nothing is there."""

    @abstractmethod
    async def list(self, path: str) -> list[str]:
        """Names directly under a directory-like path; empty when it does not exist."""

    @abstractmethod
    async def move(self, source: str, destination: str) -> None:
        """Atomically and durably put `source` at `destination`, replacing what was there."""

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Remove a path and everything under it; no error when it is already gone."""

    def redirect_url(self, path: str) -> str | None:
        """A URL the client may fetch `path` from directly; None means serve it ourselves."""
        return None
