"""What a small blob costs the filesystem driver, counted, never timed (issue 15, goal 3): most
blobs of a push are small (a config, a small layer), and each thread hop and system call of
their write is CPU the worker spends per push. Thread hops are counted as the jobs the event
loop's executor receives; system calls as Python's audit events (`os.mkdir`, `open`,
`os.rename`), which the `os` functions raise before they call the kernel."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.filesystem import INCOMING, WRITE_BATCH_BYTES, FilesystemDriver
from ociregistry.blobstore.store import blob_path

_watching: list[Counter[str]] = []  # audit hooks cannot be removed: this one counts for tests


def _audit(event: str, _args: tuple[Any, ...]) -> None:
    if _watching and event in ("os.mkdir", "open", "os.rename"):
        _watching[-1][event] += 1


sys.addaudithook(_audit)


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    """The audited system calls of this thread and the driver's threads from now on."""
    seen: Counter[str] = Counter()
    _watching.append(seen)
    yield seen
    _watching.remove(seen)


class _CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.jobs = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.jobs += 1
        return super().submit(*args, **kwargs)


@pytest.fixture
async def hops() -> AsyncIterator[_CountingExecutor]:
    """The running loop's executor, counting the jobs it is given: the driver's thread hops."""
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    yield executor


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _path(data: bytes) -> str:
    return blob_path(Digest.parse("sha256:" + hashlib.sha256(data).hexdigest()))


@pytest.mark.parametrize("size", [0, 2000, 4096, 100 << 10])
async def test_a_small_blob_is_written_in_one_thread_hop(
    tmp_path: Path, hops: _CountingExecutor, size: int
) -> None:
    """A stream that ends within its first batch is written, synced, renamed and its folder
    synced in one thread hop, once it ended, where it took four (create the temporary file,
    write, close the writer, sync and rename)."""
    driver = FilesystemDriver(tmp_path / "storage")
    data = os.urandom(size)
    hops.jobs = 0
    assert await driver.put_stream(_path(data), _pieces(data, 1500)) == size
    assert hops.jobs == 1
    assert await driver.get_content(_path(data)) == data
    assert os.listdir(driver.root / INCOMING) == []


async def test_a_large_blob_is_still_streamed(tmp_path: Path, hops: _CountingExecutor) -> None:
    """A stream longer than a batch is written batch by batch as it arrives, its first batch
    included, and is whole once published."""
    driver = FilesystemDriver(tmp_path / "storage")
    data = os.urandom(2 * WRITE_BATCH_BYTES + 12345)
    assert await driver.put_stream(_path(data), _pieces(data, 256 << 10)) == len(data)
    assert hops.jobs > 1
    assert await driver.get_content(_path(data)) == data
    assert os.listdir(driver.root / INCOMING) == []


async def test_a_blob_into_an_existing_folder_makes_no_folder(
    tmp_path: Path, calls: Counter[str]
) -> None:
    """A blob's folder (`blobs/sha256/ab`, one of 256) almost always exists: the driver
    renames into it without trying to make it first (a `mkdir` and a `stat` per blob). Per
    blob: the temporary file opened, renamed, and the folder opened to be synced."""
    driver = FilesystemDriver(tmp_path / "storage")
    calls.clear()
    first = b"a blob that makes the folder"
    await driver.put_stream("blobs/sha256/ab/first", _pieces(first, 10))
    assert calls["os.mkdir"] == 3  # blobs, blobs/sha256, blobs/sha256/ab
    calls.clear()

    for n in range(5):
        data = b"a small layer %d" % n
        await driver.put_stream(f"blobs/sha256/ab/blob{n}", _pieces(data, 10))
        assert await driver.get_content(f"blobs/sha256/ab/blob{n}") == data
    await driver.put_content("blobs/sha256/ab/manifest", b"{}")

    assert calls["os.mkdir"] == 0
    assert calls["os.rename"] == 6
    assert calls["open"] == 6 * 2 + 5  # temporary, folder; and the five reads


async def test_a_blob_into_a_missing_folder_makes_it(tmp_path: Path) -> None:
    """The folder made when the rename finds none, also when it went meanwhile (an empty
    folder removed by hand): the blob is published all the same."""
    driver = FilesystemDriver(tmp_path / "storage")
    await driver.put_content("blobs/sha256/cd/one", b"one")
    (driver.root / "blobs/sha256/cd/one").unlink()
    (driver.root / "blobs/sha256/cd").rmdir()
    await driver.put_stream("blobs/sha256/cd/two", _pieces(b"two", 1))
    await driver.put_content("blobs/sha512/ef/three", b"three")
    assert await driver.get_content("blobs/sha256/cd/two") == b"two"
    assert await driver.get_content("blobs/sha512/ef/three") == b"three"
    assert os.listdir(driver.root / INCOMING) == []


async def test_a_failed_small_stream_leaves_nothing(tmp_path: Path) -> None:
    """A small stream that fails before its end (a digest mismatch, a client gone) creates no
    file at all: it is written only once it ended."""
    driver = FilesystemDriver(tmp_path / "storage")

    async def cut_off() -> AsyncIterator[bytes]:
        yield b"the beginning"
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await driver.put_stream("blobs/sha256/ab/cut", cut_off())
    assert await driver.stat("blobs/sha256/ab/cut") is None
    assert os.listdir(driver.root / INCOMING) == []
