"""The in-memory storage driver: everything in one process's memory, gone when it exits.

For tests and trials (`storage = "memory"` with one worker); it is also the plainest
reading of the driver contract, with no durability to reason about.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterable, AsyncIterator

from ociregistry.blobstore.driver import (
    FileInfo,
    PathNotFound,
    PendingUpload,
    StorageDriver,
    StorageError,
    UploadState,
)

READ_CHUNK_BYTES = 1 << 20


class MemoryDriver(StorageDriver):
    def __init__(self, *, min_part_size: int = 0) -> None:
        # A minimum part size makes it keep S3's rule (tests of the upload layer's staging).
        self.min_part_size = min_part_size
        self._objects: dict[str, tuple[bytes, float]] = {}
        # upload path -> (started, {part number: (attempt, bytes)})
        self._uploads: dict[str, tuple[float, dict[int, tuple[int, bytes]]]] = {}
        self._attempts = itertools.count(1)

    async def get_content(self, path: str) -> bytes:
        try:
            return self._objects[path][0]
        except KeyError:
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes) -> None:
        self._objects[path] = (bytes(data), time.time())

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = await self.get_content(path)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, READ_CHUNK_BYTES):
            yield data[start : min(start + READ_CHUNK_BYTES, end)]
            await asyncio.sleep(0)

    async def stat(self, path: str) -> FileInfo | None:
        found = self._objects.get(path)
        return None if found is None else FileInfo(path, len(found[0]), found[1])

    async def walk(self, prefix: str) -> AsyncIterator[FileInfo]:
        for path, (data, modified) in list(self._objects.items()):
            if path == prefix or path.startswith(prefix + "/"):
                yield FileInfo(path, len(data), modified)

    async def delete(self, path: str) -> None:
        for name in [p for p in self._objects if p == path or p.startswith(path + "/")]:
            self._objects.pop(name, None)
        for name in [p for p in self._uploads if p == path or p.startswith(path + "/")]:
            self._uploads.pop(name, None)

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        self._objects[path] = (bytes(data), time.time())
        return len(data)

    async def begin_upload(self, path: str) -> UploadState:
        self._uploads[path] = (time.time(), {})
        return {"path": path, "parts": []}

    def _parts(self, state: UploadState) -> dict[int, tuple[int, bytes]]:
        try:
            return self._uploads[state["path"]][1]
        except KeyError:
            raise PathNotFound(state["path"]) from None

    async def write_part(
        self, state: UploadState, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadState:
        recorded: list[int] = list(state["parts"])
        if part_number > len(recorded) + 1:
            raise StorageError(f"part {part_number} follows part {len(recorded)}")
        self._parts(state)
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        attempt = next(self._attempts)
        self._parts(state)[part_number] = (attempt, bytes(data))
        return {**state, "parts": [*recorded[: part_number - 1], attempt]}

    async def compose(self, state: UploadState, destination: str) -> None:
        parts = self._parts(state)
        pieces = []
        for number, attempt in enumerate(state["parts"], 1):
            found = parts.get(number)
            if found is None or found[0] != attempt:
                raise StorageError(f"part {number} of {state['path']} is not the one recorded")
            if len(found[1]) < self.min_part_size and number < len(state["parts"]):
                raise StorageError(f"part {number} is smaller than {self.min_part_size} bytes")
            pieces.append(found[1])
        self._objects[destination] = (b"".join(pieces), time.time())
        self._uploads.pop(state["path"], None)

    async def abort(self, state: UploadState) -> None:
        self._uploads.pop(state["path"], None)

    async def pending_uploads(self, prefix: str) -> AsyncIterator[PendingUpload]:
        for path, (started, _) in list(self._uploads.items()):
            if path.startswith(prefix + "/"):
                yield PendingUpload(path, started, {"path": path, "parts": []})
