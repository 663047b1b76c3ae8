"""The one wrapper every storage driver is used through (as Distribution's `driver/base`).

It checks every path before a driver sees it, turns what a driver lets escape (an `OSError`
such as ENOSPC, EIO) into the registry's `StorageError`s, so the HTTP layer can answer an OCI
error instead of a plain 500, and calls an optional hook after each operation: the place
where metrics plug in, for every driver at once.

Errors that come from the *source* of a stream (the client hung up mid-body) are not storage
failures: they pass through unchanged.
"""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ociregistry.blobstore.driver import (
    FileInfo,
    PendingUpload,
    StorageDriver,
    StorageError,
    StorageFull,
    UploadState,
    check_path,
)

T = TypeVar("T")

Observer = Callable[[str, str, float, BaseException | None], None]
"""`observer(operation, path, seconds, error)`, called after every driver operation."""

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_error(error: BaseException) -> BaseException:
    """What an exception from a driver means for the registry."""
    if isinstance(error, StorageError) or not isinstance(error, OSError):
        return error
    if error.errno in _FULL:
        return StorageFull(error.strerror or str(error))
    return StorageError(error.strerror or str(error))


class _SourceFailed(Exception):
    """Carries an error raised by a stream's source through the driver, untranslated."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


async def _guarded(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as error:
        raise _SourceFailed(error) from error


class CheckedDriver(StorageDriver):
    """Path checks, error translation and an observation hook around any driver."""

    def __init__(self, driver: StorageDriver, observer: Observer | None = None) -> None:
        self.driver = driver
        self.observer = observer
        self.min_part_size = driver.min_part_size
        self.max_parts = driver.max_parts

    async def _call(self, operation: str, path: str, work: Awaitable[T]) -> T:
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            return await work
        except _SourceFailed as error:
            failure = error.error
            raise error.error from None
        except Exception as error:
            failure = storage_error(error)
            if failure is error:
                raise
            raise failure from error
        finally:
            if self.observer is not None:
                self.observer(operation, path, time.monotonic() - started, failure)

    async def _stream(self, operation: str, path: str, items: AsyncIterator[T]) -> AsyncIterator[T]:
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            async for item in items:
                yield item
        except Exception as error:
            failure = storage_error(error)
            if failure is error:
                raise
            raise failure from error
        finally:
            if self.observer is not None:
                self.observer(operation, path, time.monotonic() - started, failure)

    async def get_content(self, path: str) -> bytes:
        return await self._call("get_content", path, self.driver.get_content(check_path(path)))

    async def put_content(self, path: str, data: bytes) -> None:
        await self._call("put_content", path, self.driver.put_content(check_path(path), data))

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range {offset}+{length} of {path!r}")
        return self._stream("reader", path, self.driver.reader(check_path(path), offset, length))

    async def stat(self, path: str) -> FileInfo | None:
        return await self._call("stat", path, self.driver.stat(check_path(path)))

    def walk(self, prefix: str) -> AsyncIterator[FileInfo]:
        return self._stream("walk", prefix, self.driver.walk(check_path(prefix)))

    async def delete(self, path: str) -> None:
        await self._call("delete", path, self.driver.delete(check_path(path)))

    async def delete_many(self, paths: list[str]) -> None:
        checked = [check_path(path) for path in paths]
        await self._call("delete_many", f"{len(checked)} paths", self.driver.delete_many(checked))

    async def redirect_url(self, path: str, *, method: str = "GET") -> str | None:
        return await self._call(
            "redirect_url", path, self.driver.redirect_url(check_path(path), method=method)
        )

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        return await self._call(
            "put_stream", path, self.driver.put_stream(check_path(path), _guarded(chunks))
        )

    async def begin_upload(self, path: str) -> UploadState:
        return await self._call("begin_upload", path, self.driver.begin_upload(check_path(path)))

    async def write_part(
        self, state: UploadState, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadState:
        if part_number < 1 or (self.max_parts is not None and part_number > self.max_parts):
            raise StorageError(f"part number {part_number} is out of range")
        return await self._call(
            "write_part", "", self.driver.write_part(state, part_number, _guarded(chunks))
        )

    async def compose(self, state: UploadState, destination: str) -> None:
        await self._call(
            "compose", destination, self.driver.compose(state, check_path(destination))
        )

    async def abort(self, state: UploadState) -> None:
        await self._call("abort", "", self.driver.abort(state))

    def pending_uploads(self, prefix: str) -> AsyncIterator[PendingUpload]:
        return self._stream(
            "pending_uploads", prefix, self.driver.pending_uploads(check_path(prefix))
        )
