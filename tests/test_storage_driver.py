"""One suite every storage driver must pass (as Distribution's driver test suites), so that a
new driver (an object store) can be checked against the same contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ociregistry.blobstore import FilesystemDriver, PathNotFound, StorageDriver


@pytest.fixture(params=["filesystem"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    return FilesystemDriver(tmp_path / request.param)


async def _read(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_small_objects_round_trip(driver: StorageDriver) -> None:
    await driver.put_content("a/b/c", b"hello")
    assert await driver.get_content("a/b/c") == b"hello"
    await driver.put_content("a/b/c", b"replaced")
    assert await driver.get_content("a/b/c") == b"replaced"


async def test_missing_paths(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFound):
        await driver.get_content("missing/file")
    assert await driver.stat("missing/file") is None
    assert await driver.list("missing") == []
    await driver.delete("missing/file")  # deleting nothing is fine


async def test_reader_from_offset(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB, more than one read chunk
    await driver.put_content("blob", data)
    assert await _read(driver.reader("blob")) == data
    assert await _read(driver.reader("blob", 1000)) == data[1000:]
    assert await _read(driver.reader("blob", 1000, 50)) == data[1000:1050]
    with pytest.raises(PathNotFound):
        await _read(driver.reader("nothing"))


async def test_writer_appends_truncates_and_commits(driver: StorageDriver) -> None:
    async with await driver.writer("upload/data", append=True) as writer:
        assert writer.size == 0
        await writer.write(b"abc")
        await writer.write(bytearray(b"def"))
        assert writer.size == 6
        await writer.commit()
    async with await driver.writer("upload/data", append=True) as writer:
        assert writer.size == 6  # a later writer (another process) continues at the end
        await writer.write(b"XYZ")
        await writer.truncate(6)  # a bad chunk is taken back
        await writer.write(b"ghi")
        await writer.commit()
    assert await driver.get_content("upload/data") == b"abcdefghi"
    async with await driver.writer("upload/data", append=False) as writer:
        assert writer.size == 0


async def test_stat_list_move_delete(driver: StorageDriver) -> None:
    await driver.put_content("dir/one", b"1")
    await driver.put_content("dir/two", b"22")
    info = await driver.stat("dir/two")
    assert info is not None and info.size == 2
    assert await driver.list("dir") == ["one", "two"]
    await driver.move("dir/two", "elsewhere/deep/two")
    assert await driver.get_content("elsewhere/deep/two") == b"22"
    assert await driver.stat("dir/two") is None
    await driver.delete("dir")
    assert await driver.list("dir") == []


@pytest.mark.parametrize(
    "path", ["../escape", "a/../../b", "/absolute", "a//b", "UPPER", "a/.hidden", "", "a/b/"]
)
async def test_unsafe_paths_are_refused(driver: StorageDriver, path: str) -> None:
    with pytest.raises(ValueError):
        await driver.put_content(path, b"x")
