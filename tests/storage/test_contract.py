"""The storage driver contract: one suite every driver passes (as Distribution's
`registry/storage/driver/testsuites`), so a new driver (an object store) is checked against
the same promises the registry relies on.

Each driver is used through `CheckedDriver`, as the registry uses it. To add a driver, add a
parameter to `DRIVERS` and a branch to `_open`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ociregistry.blobstore import CheckedDriver, PathNotFound, create_driver
from ociregistry.blobstore.driver import StorageDriver, StorageError

# The S3 driver runs against the real gateway (tests/support/s3gateway.py), each test under a prefix
# of its own in one bucket.
DRIVERS = ["filesystem", "memory", pytest.param("s3", marks=pytest.mark.s3)]
MIB = 1 << 20


def _open(kind: str, root: Path) -> CheckedDriver:
    return create_driver(kind, root / "storage")


@pytest.fixture(params=DRIVERS)
async def driver(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CheckedDriver]:
    if request.param != "s3":
        yield _open(request.param, tmp_path)
        return
    gateway = request.getfixturevalue("s3_gateway")
    bucket = request.getfixturevalue("contract_bucket")
    for name, value in gateway.environment().items():
        monkeypatch.setenv(name, value)
    checked = create_driver(f"s3://{bucket}/{tmp_path.name}", tmp_path)
    yield checked
    await checked.driver.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def contract_bucket(s3_gateway: Any) -> str:
    return s3_gateway.create_bucket(f"contract-{os.getpid()}")


async def _read(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def _stream(data: bytes, piece: int = 256 << 10) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]
        await asyncio.sleep(0)


async def _failing(data: bytes, error: Exception) -> AsyncIterator[bytes]:
    yield data
    raise error


def _part(driver: StorageDriver, seed: int, size: int = 0) -> bytes:
    """A part as large as the driver wants parts to be (or `size` if larger)."""
    size = max(size, driver.min_part_size, 1024)
    return (seed.to_bytes(4, "big") * (size // 4 + 1))[:size]


async def _walk(driver: StorageDriver, prefix: str) -> dict[str, int]:
    return {info.path: info.size async for info in driver.walk(prefix)}


# -- small objects ---------------------------------------------------------------------------


async def test_put_and_get_content(driver: CheckedDriver) -> None:
    await driver.put_content("a/b/c", b"hello")
    assert await driver.get_content("a/b/c") == b"hello"


async def test_put_content_replaces(driver: CheckedDriver) -> None:
    await driver.put_content("a/b/c", b"hello")
    await driver.put_content("a/b/c", b"replaced, longer")
    assert await driver.get_content("a/b/c") == b"replaced, longer"


async def test_empty_object(driver: CheckedDriver) -> None:
    await driver.put_content("empty", b"")
    assert await driver.get_content("empty") == b""
    info = await driver.stat("empty")
    assert info is not None and info.size == 0


async def test_get_missing_raises(driver: CheckedDriver) -> None:
    with pytest.raises(PathNotFound):
        await driver.get_content("missing/file")


async def test_stat_missing_and_folder_like_paths(driver: CheckedDriver) -> None:
    assert await driver.stat("missing/file") is None
    await driver.put_content("dir/file", b"x")
    assert await driver.stat("dir") is None  # not an object, only a prefix


async def test_stat_size_and_time(driver: CheckedDriver) -> None:
    before = time.time()
    await driver.put_content("dir/two", b"22")
    info = await driver.stat("dir/two")
    assert info is not None and info.size == 2 and info.path == "dir/two"
    assert before - 5 <= info.modified <= time.time() + 5


# -- reading ---------------------------------------------------------------------------------

DATA = bytes(range(256)) * 8192  # 2 MiB: more than one read chunk


async def test_reader_whole(driver: CheckedDriver) -> None:
    await driver.put_content("blob", DATA)
    assert await _read(driver.reader("blob")) == DATA


async def test_reader_from_offset(driver: CheckedDriver) -> None:
    await driver.put_content("blob", DATA)
    assert await _read(driver.reader("blob", 1000)) == DATA[1000:]


async def test_reader_offset_and_length(driver: CheckedDriver) -> None:
    await driver.put_content("blob", DATA)
    assert await _read(driver.reader("blob", 1000, 50)) == DATA[1000:1050]
    assert await _read(driver.reader("blob", MIB - 10, 20)) == DATA[MIB - 10 : MIB + 10]


async def test_reader_at_and_past_the_end_is_empty(driver: CheckedDriver) -> None:
    await driver.put_content("blob", DATA)
    assert await _read(driver.reader("blob", len(DATA))) == b""
    assert await _read(driver.reader("blob", len(DATA) + 100)) == b""
    assert await _read(driver.reader("blob", len(DATA) + 100, 10)) == b""


async def test_reader_length_past_the_end_stops_at_the_end(driver: CheckedDriver) -> None:
    await driver.put_content("blob", DATA)
    assert await _read(driver.reader("blob", len(DATA) - 5, 100)) == DATA[-5:]


async def test_reader_of_missing_path_raises(driver: CheckedDriver) -> None:
    with pytest.raises(PathNotFound):
        await _read(driver.reader("nothing"))


async def test_reader_negative_offset_is_refused(driver: CheckedDriver) -> None:
    await driver.put_content("blob", b"abc")
    with pytest.raises(ValueError):
        await _read(driver.reader("blob", -1))


# -- streams ---------------------------------------------------------------------------------


async def test_put_stream_large(driver: CheckedDriver) -> None:
    data = os.urandom(32 * MIB + 123)
    assert await driver.put_stream("big/blob", _stream(data, MIB)) == len(data)
    assert await _read(driver.reader("big/blob")) == data
    info = await driver.stat("big/blob")
    assert info is not None and info.size == len(data)


async def _uneven(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """`data` in pieces of the given sizes, over and over, with empty ones among them: how a
    body arrives from a socket."""
    offset, turn = 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        turn += 1


async def test_streams_of_uneven_pieces_are_written_in_order(driver: CheckedDriver) -> None:
    """Thousands of tiny pieces (more than one vectored write takes), empty ones, and pieces
    larger than a write batch, in one stream and in one part: every byte in its place."""
    data = os.urandom(9 * MIB + 7)
    sizes = [1, 0, 3000, 17, 0, 100, 2] * 200 + [65536, 5 * MIB]
    assert await driver.put_stream("uneven", _uneven(data, sizes)) == len(data)
    assert await _read(driver.reader("uneven")) == data
    state = await driver.begin_upload("uploads/uneven")
    state = await driver.write_part(state, 1, _uneven(data, sizes[::-1]))
    await driver.compose(state, "composed")
    assert await _read(driver.reader("composed")) == data


async def test_put_stream_empty(driver: CheckedDriver) -> None:
    assert await driver.put_stream("empty", _stream(b"")) == 0
    assert await driver.get_content("empty") == b""


async def test_put_stream_replaces(driver: CheckedDriver) -> None:
    await driver.put_content("x", b"old content")
    await driver.put_stream("x", _stream(b"new"))
    assert await driver.get_content("x") == b"new"


async def test_put_stream_that_fails_leaves_nothing(driver: CheckedDriver) -> None:
    with pytest.raises(ConnectionResetError):  # the source's own error, untranslated
        await driver.put_stream("cut/off", _failing(b"half", ConnectionResetError("gone")))
    assert await driver.stat("cut/off") is None
    assert await _walk(driver, "cut") == {}


async def test_put_stream_that_fails_keeps_the_old_object(driver: CheckedDriver) -> None:
    await driver.put_content("kept", b"whole")
    with pytest.raises(ValueError):
        await driver.put_stream("kept", _failing(b"half", ValueError("wrong digest")))
    assert await driver.get_content("kept") == b"whole"


async def test_concurrent_streams(driver: CheckedDriver) -> None:
    blobs = {f"many/{n}": os.urandom(MIB + n) for n in range(8)}
    sizes = await asyncio.gather(
        *(driver.put_stream(path, _stream(data, 64 << 10)) for path, data in blobs.items())
    )
    assert sizes == [len(data) for data in blobs.values()]
    for path, data in blobs.items():
        assert await driver.get_content(path) == data


async def test_concurrent_streams_to_one_path_leave_one_whole(driver: CheckedDriver) -> None:
    candidates = [bytes([n]) * (MIB + n) for n in range(4)]
    await asyncio.gather(*(driver.put_stream("same", _stream(data)) for data in candidates))
    assert await driver.get_content("same") in candidates


async def test_concurrent_readers(driver: CheckedDriver) -> None:
    await driver.put_content("shared", DATA)
    results = await asyncio.gather(*(_read(driver.reader("shared", n)) for n in range(4)))
    assert results == [DATA[n:] for n in range(4)]


# -- walk and delete -------------------------------------------------------------------------


async def test_walk_lists_every_object_below(driver: CheckedDriver) -> None:
    await driver.put_content("tree/a", b"1")
    await driver.put_content("tree/b/c", b"22")
    await driver.put_content("tree/b/d/e", b"333")
    await driver.put_content("treetop", b"not under tree/")
    assert await _walk(driver, "tree") == {"tree/a": 1, "tree/b/c": 2, "tree/b/d/e": 3}


async def test_walk_gives_modification_times(driver: CheckedDriver) -> None:
    await driver.put_content("timed/a", b"1")
    infos = [info async for info in driver.walk("timed")]
    assert len(infos) == 1 and abs(infos[0].modified - time.time()) < 60


async def test_walk_of_missing_prefix_is_empty(driver: CheckedDriver) -> None:
    assert await _walk(driver, "nothing/here") == {}


async def test_walk_of_an_object_yields_it(driver: CheckedDriver) -> None:
    await driver.put_content("single", b"abc")
    assert await _walk(driver, "single") == {"single": 3}


async def test_walk_many(driver: CheckedDriver) -> None:
    paths = {f"blobs/sha256/{n:02x}/{n:064x}" for n in range(300)}
    await asyncio.gather(*(driver.put_content(path, b"x") for path in paths))
    assert set(await _walk(driver, "blobs")) == paths


async def test_delete_removes_an_object(driver: CheckedDriver) -> None:
    await driver.put_content("gone", b"x")
    await driver.delete("gone")
    assert await driver.stat("gone") is None


async def test_delete_removes_sub_paths_only(driver: CheckedDriver) -> None:
    await driver.put_content("dir/one", b"1")
    await driver.put_content("dir/sub/two", b"22")
    await driver.put_content("dirt", b"sibling")
    await driver.put_content("dir2/three", b"sibling")
    await driver.delete("dir")
    assert await _walk(driver, "dir") == {}
    assert await driver.get_content("dirt") == b"sibling"
    assert await driver.get_content("dir2/three") == b"sibling"


async def test_delete_missing_is_fine(driver: CheckedDriver) -> None:
    await driver.delete("missing/file")
    await driver.delete("missing")


async def test_delete_many_removes_those_objects_only(driver: CheckedDriver) -> None:
    for n in range(5):
        await driver.put_content(f"many/{n}", b"%d" % n)
    await driver.delete_many(["many/0", "many/2", "many/4"])
    assert await _walk(driver, "many") == {"many/1": 1, "many/3": 1}


async def test_delete_many_of_missing_paths_and_of_none_is_fine(driver: CheckedDriver) -> None:
    await driver.put_content("kept", b"k")
    await driver.delete_many(["missing/one", "missing"])
    await driver.delete_many([])
    assert await driver.get_content("kept") == b"k"


async def test_delete_many_takes_more_than_one_batch(driver: CheckedDriver) -> None:
    """More paths than S3's DeleteObjects takes in one request (a thousand)."""
    paths = [f"batch/{n:04d}" for n in range(1005)]
    await asyncio.gather(*(driver.put_content(path, b"") for path in paths))
    await driver.delete_many(paths[:1003])
    assert set(await _walk(driver, "batch")) == set(paths[1003:])


async def test_redirect_url_is_none_or_a_url(driver: CheckedDriver) -> None:
    await driver.put_content("blob", b"x")
    url = await driver.redirect_url("blob")
    assert url is None or url.startswith(("http://", "https://"))


# -- multipart uploads -----------------------------------------------------------------------


async def _multipart(driver: CheckedDriver, path: str, parts: list[bytes]) -> dict:
    state = await driver.begin_upload(path)
    for number, part in enumerate(parts, 1):
        state = await driver.write_part(state, number, _stream(part))
        state = json.loads(json.dumps(state))  # saved in a row, read by another process
    return state


async def test_multipart_compose(driver: CheckedDriver) -> None:
    parts = [_part(driver, 1), _part(driver, 2), b"last, short"]
    state = await _multipart(driver, "uploads/u1", parts)
    await driver.compose(state, "blobs/result")
    assert await _read(driver.reader("blobs/result")) == b"".join(parts)


async def test_multipart_many_parts(driver: CheckedDriver) -> None:
    parts = [_part(driver, n, 2000 + n) for n in range(40)]
    state = await _multipart(driver, "uploads/u2", parts)
    await driver.compose(state, "blobs/many")
    assert await _read(driver.reader("blobs/many")) == b"".join(parts)


async def test_multipart_large_parts(driver: CheckedDriver) -> None:
    parts = [os.urandom(16 * MIB), os.urandom(16 * MIB), os.urandom(MIB)]
    state = await _multipart(driver, "uploads/u3", parts)
    await driver.compose(state, "blobs/large")
    assert await _read(driver.reader("blobs/large")) == b"".join(parts)


async def test_multipart_single_part(driver: CheckedDriver) -> None:
    state = await _multipart(driver, "uploads/u4", [b"just one"])
    await driver.compose(state, "blobs/one")
    assert await driver.get_content("blobs/one") == b"just one"


async def test_multipart_part_written_again_replaces_it(driver: CheckedDriver) -> None:
    first = _part(driver, 1)
    state = await _multipart(driver, "uploads/u5", [first])
    await driver.write_part(state, 2, _stream(_part(driver, 9)))  # not recorded: a lost reply
    state = await driver.write_part(state, 2, _stream(b"the retry"))
    await driver.compose(state, "blobs/retried")
    assert await driver.get_content("blobs/retried") == first + b"the retry"


async def test_multipart_failed_part_is_not_recorded(driver: CheckedDriver) -> None:
    """Continuing after a chunk that broke off: the old state still composes."""
    first = _part(driver, 1)
    state = await _multipart(driver, "uploads/u6", [first])
    with pytest.raises(ConnectionResetError):
        await driver.write_part(state, 2, _failing(b"x" * 1000, ConnectionResetError()))
    state = await driver.write_part(state, 2, _stream(b"tail"))
    await driver.compose(state, "blobs/continued")
    assert await driver.get_content("blobs/continued") == first + b"tail"


async def test_multipart_continues_after_a_small_last_part_is_taken_back(
    driver: CheckedDriver,
) -> None:
    first, second = _part(driver, 1), _part(driver, 2)
    state = await _multipart(driver, "uploads/u7", [first])
    small = await driver.write_part(state, 2, _stream(b"small"))
    assert small != state
    state = await driver.write_part(state, 2, _stream(second))  # rewritten from the old state
    state = await driver.write_part(state, 3, _stream(b"end"))
    await driver.compose(state, "blobs/rewritten")
    assert await driver.get_content("blobs/rewritten") == first + second + b"end"


async def test_multipart_compose_replaces_the_destination(driver: CheckedDriver) -> None:
    await driver.put_content("blobs/existing", b"old")
    state = await _multipart(driver, "uploads/u8", [b"new"])
    await driver.compose(state, "blobs/existing")
    assert await driver.get_content("blobs/existing") == b"new"


async def test_multipart_uploads_side_by_side(driver: CheckedDriver) -> None:
    async def one(n: int) -> bytes:
        parts = [_part(driver, n), _part(driver, n + 100), bytes([n]) * 10]
        state = await _multipart(driver, f"uploads/s{n}", parts)
        await driver.compose(state, f"blobs/side{n}")
        return b"".join(parts)

    expected = await asyncio.gather(*(one(n) for n in range(6)))
    for n, data in enumerate(expected):
        assert await driver.get_content(f"blobs/side{n}") == data


async def test_multipart_is_invisible_until_composed(driver: CheckedDriver) -> None:
    await _multipart(driver, "uploads/u9", [_part(driver, 1)])
    assert await driver.stat("blobs/not-yet") is None
    assert await _walk(driver, "blobs") == {}


async def test_pending_uploads_lists_begun_uploads(driver: CheckedDriver) -> None:
    await driver.begin_upload("uploads/p1")
    await _multipart(driver, "uploads/p2", [b"data"])
    await driver.begin_upload("elsewhere/p3")
    pending = {upload.path: upload async for upload in driver.pending_uploads("uploads")}
    assert set(pending) == {"uploads/p1", "uploads/p2"}
    assert all(abs(upload.started - time.time()) < 60 for upload in pending.values())


async def test_composed_upload_is_no_longer_pending(driver: CheckedDriver) -> None:
    state = await _multipart(driver, "uploads/c1", [b"data"])
    await driver.compose(state, "blobs/c1")
    assert [upload async for upload in driver.pending_uploads("uploads")] == []


async def test_abort_drops_the_upload(driver: CheckedDriver) -> None:
    state = await _multipart(driver, "uploads/a1", [_part(driver, 1)])
    await driver.abort(state)
    assert [upload async for upload in driver.pending_uploads("uploads")] == []
    with pytest.raises(StorageError):
        await driver.compose(state, "blobs/aborted")
    assert await driver.stat("blobs/aborted") is None
    await driver.abort(state)  # twice is fine


async def test_abort_by_pending_state(driver: CheckedDriver) -> None:
    """The purge aborts an upload it knows only from `pending_uploads`."""
    await _multipart(driver, "uploads/lost", [_part(driver, 1)])
    async for upload in driver.pending_uploads("uploads"):
        await driver.abort(upload.state)
    assert [upload async for upload in driver.pending_uploads("uploads")] == []


# -- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["../escape", "a/../../b", "/absolute", "a//b", "UPPER", "a/.hidden", "", "a/b/"]
)
async def test_unsafe_paths_are_refused(driver: CheckedDriver, path: str) -> None:
    with pytest.raises(ValueError):
        await driver.put_content(path, b"x")
    with pytest.raises(ValueError):
        await driver.get_content(path)
    with pytest.raises(ValueError):
        await driver.delete(path)
    with pytest.raises(ValueError):
        await driver.put_stream(path, _stream(b"x"))
    with pytest.raises(ValueError):
        await driver.begin_upload(path)
    with pytest.raises(ValueError):
        await _read(driver.reader(path))
    with pytest.raises(ValueError):
        await _walk(driver, path)
