"""A storage driver wrapper that records each operation's duration and errors in the metrics.

Every method forwards to the wrapped driver inside `metrics.storage_operation`, the one call a
common driver wrapper needs, so this can fold into such a wrapper whole. Streams are timed from
their first request to their last byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ociregistry.blobstore.driver import FileInfo, FileWriter, StorageDriver
from ociregistry.ops.metrics import storage_operation


def driver_name(driver: StorageDriver) -> str:
    """`filesystem` for FilesystemDriver: a bounded label."""
    name = type(driver).__name__
    return (name.removesuffix("Driver") or name).lower()


class MeteredWriter(FileWriter):
    def __init__(self, inner: FileWriter, driver: str) -> None:
        self._inner = inner
        self._driver = driver

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        with storage_operation(self._driver, "write"):
            await self._inner.write(data)

    async def truncate(self, size: int) -> None:
        with storage_operation(self._driver, "truncate"):
            await self._inner.truncate(size)

    async def commit(self) -> None:
        with storage_operation(self._driver, "commit"):
            await self._inner.commit()

    async def close(self) -> None:
        await self._inner.close()


class MeteredDriver(StorageDriver):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = driver_name(inner)

    async def get_content(self, path: str) -> bytes:
        with storage_operation(self.name, "get_content"):
            return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        with storage_operation(self.name, "put_content"):
            await self.inner.put_content(path, data, durable=durable)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        with storage_operation(self.name, "read"):
            async for chunk in self.inner.reader(path, offset, length):
                yield chunk

    async def writer(self, path: str, *, append: bool) -> FileWriter:
        with storage_operation(self.name, "open_writer"):
            return MeteredWriter(await self.inner.writer(path, append=append), self.name)

    async def stat(self, path: str) -> FileInfo | None:
        with storage_operation(self.name, "stat"):
            return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        with storage_operation(self.name, "list"):
            return await self.inner.list(path)

    async def move(self, source: str, destination: str) -> None:
        with storage_operation(self.name, "move"):
            await self.inner.move(source, destination)

    async def delete(self, path: str) -> None:
        with storage_operation(self.name, "delete"):
            await self.inner.delete(path)

    def redirect_url(self, path: str) -> str | None:
        return self.inner.redirect_url(path)
