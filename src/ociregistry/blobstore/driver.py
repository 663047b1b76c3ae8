"""The narrow storage interface the registry sits on: what both a filesystem and an object
store can honour.

Modelled on CNCF Distribution's storage driver and on Quay's upload seam. Paths are
slash-separated and relative to the driver's root. There is no append, no lock, no truncate
and no rename: an upload is a *multipart upload* whose opaque state the upload session row
keeps (JSON), so a chunk landing on another process or instance continues it, and finishing
is `compose(state, destination)`, server-side. Every driver passes the contract suite in
`tests/storage/`; every driver is used through `CheckedDriver` (`blobstore/base.py`), which
checks paths and turns low-level failures into `StorageError`s.

Rules a driver follows:

- `put_content`, `put_stream` and `compose` are atomic (readers see all of the object or
  nothing: the previous object, or none) and durable when they return;
- `write_part` returns a new state; the old state stays valid, so a part that fails is simply
  not recorded by the caller, and writing the same part number again replaces it;
- parts are at least `min_part_size` bytes, except the last one given to `compose` (the
  caller stages a smaller tail itself, as an ordinary object, and joins it with the next
  chunk);
- failures raise `StorageError` (or a subclass); `PathNotFound` when a path is absent.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

# Paths are built by the registry from validated digests and UUIDs only; this pattern is the
# last guard against anything else reaching a driver.
_SAFE_PATH = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")

UploadState = dict[str, Any]
"""A driver's opaque, JSON-serialisable bookkeeping of one multipart upload (S3: the key,
the upload id and the part ETags; filesystem: the file and its size)."""


class StorageError(Exception):
    """Storage failed in a way the client can only retry later (an I/O error)."""


class StorageFull(StorageError):
    """No space left (ENOSPC, EDQUOT, or an object store's quota)."""


class StorageUnavailable(StorageError):
    """The storage service is unreachable or throttling, past the driver's retries."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PathNotFound(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no such path in storage: {path}")
        self.path = path


def check_path(path: str) -> str:
    """The path itself when it is one the registry could have built; ValueError otherwise."""
    if _SAFE_PATH.fullmatch(path) is None or ".." in path:
        raise ValueError(f"unsafe storage path {path!r}")
    return path


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload the driver holds, for the purge to match against session rows."""

    path: str  # the path given to `begin_upload`
    started: float  # seconds since the epoch
    state: UploadState  # enough to `abort` it


class StorageDriver(ABC):
    """Where bytes live. All methods are safe to call from many processes at once."""

    #: the smallest part `write_part` accepts, except the last part (S3: 5 MiB).
    min_part_size: int = 0
    #: the most parts one upload may have (S3: 10,000); None: no limit.
    max_parts: int | None = None

    @abstractmethod
    async def get_content(self, path: str) -> bytes:
        """A small object whole. Raises PathNotFound."""

    @abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Write a small object atomically and durably."""

    @abstractmethod
    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (to the end when None) from `offset`; nothing when `offset`
        is at or past the end. Raises PathNotFound (on the first iteration)."""

    @abstractmethod
    async def stat(self, path: str) -> FileInfo | None:
        """Size and modification time of an object, or None when there is none."""

    @abstractmethod
    def walk(self, prefix: str) -> AsyncIterator[FileInfo]:
        """Every object at or under `prefix` (recursively, in no particular order), each once;
        nothing when there is none. Staging data of uploads in progress may be included."""

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Remove the object at `path` and every object under `path/` (not `pathX`); no
        error when nothing is there."""

    async def delete_many(self, paths: list[str]) -> None:
        """Delete the objects at `paths` (each as `delete` would); no error for those already
        gone. What garbage collection uses: object stores override it with one request per
        batch (S3's DeleteObjects takes a thousand keys)."""
        for path in paths:
            await self.delete(path)

    async def redirect_url(self, path: str, *, method: str = "GET") -> str | None:
        """A URL the client may fetch `path` from directly (a presigned URL); None: serve it
        ourselves."""
        return None

    @abstractmethod
    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Write an object of any size from a stream, with bounded memory, atomically and
        durably; return its size. When the stream fails, nothing becomes visible."""

    # Multipart uploads: the seam a chunked blob upload runs on.

    @abstractmethod
    async def begin_upload(self, path: str) -> UploadState:
        """Start a multipart upload; `path` is a unique folder the driver may stage under
        (`uploads/<uuid>`); `delete(path)` removes what it staged there."""

    @abstractmethod
    async def write_part(
        self, state: UploadState, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadState:
        """Stream part `part_number` (1, 2, …, consecutive) and return the new state, which
        the caller saves. Parts before `part_number` stay as the given state records them;
        a part written again replaces the earlier attempt."""

    @abstractmethod
    async def compose(self, state: UploadState, destination: str) -> None:
        """Make the parts the state records, in order, the object `destination`, without
        passing the bytes through the registry: atomic, durable. The upload is over."""

    @abstractmethod
    async def abort(self, state: UploadState) -> None:
        """Drop the upload and everything staged for it; no error when it is gone already."""

    @abstractmethod
    def pending_uploads(self, prefix: str) -> AsyncIterator[PendingUpload]:
        """Every multipart upload begun at a path under `prefix` and not composed or aborted,
        so the purge can abort those no session row owns (object stores bill them)."""
