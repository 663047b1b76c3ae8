"""Upload sessions live in storage, not in a process: a chunked upload may move between
workers, and stale sessions expire."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ociregistry.blobstore import BlobStore, Digest, FilesystemDriver, Uploads
from ociregistry.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


@pytest.fixture
def driver(tmp_path: Path) -> FilesystemDriver:
    return FilesystemDriver(tmp_path / "storage")


async def test_upload_continues_in_another_process(driver: FilesystemDriver) -> None:
    """Two `Uploads` on one storage stand for two worker processes with separate memory."""
    first, second = Uploads(driver), Uploads(driver)
    parts = [b"a" * 5_000_000, b"b" * 3_000_000, b"c" * 1_000]
    session = await first.start("team-a/app")
    await first.append(session, _body(parts[0]), start=0, length=len(parts[0]))
    moved = await second.get(session.id, "team-a/app")
    await second.append(moved, _body(parts[1]), start=len(parts[0]))
    back = await first.get(session.id, "team-a/app")  # its cached hash is now behind
    await first.append(back, _body(parts[2]))
    size = await first.finish(back, _digest(b"".join(parts)))
    assert size == sum(map(len, parts))
    stored = await BlobStore(driver).get(_digest(b"".join(parts)))
    assert stored == b"".join(parts)


async def test_sha512_uploads(driver: FilesystemDriver) -> None:
    uploads = Uploads(driver)
    data = b"some content"
    digest = Digest("sha512", hashlib.sha512(data).hexdigest())
    session = await uploads.start("team-a/app")
    assert await uploads.finish(session, digest, _body(data)) == len(data)
    assert await BlobStore(driver).get(digest) == data


async def test_wrong_digest_takes_back_the_last_chunk(driver: FilesystemDriver) -> None:
    uploads = Uploads(driver)
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(b"kept"))
    with pytest.raises(DigestInvalid):
        await uploads.finish(session, _digest(b"keptwrong"), _body(b"junk"))
    assert await uploads.size(session) == 4
    assert await uploads.finish(session, _digest(b"kept!"), _body(b"!")) == 5


async def test_out_of_order_chunk_changes_nothing(driver: FilesystemDriver) -> None:
    uploads = Uploads(driver)
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(b"0123"), start=0)
    with pytest.raises(RangeInvalid) as caught:
        await uploads.append(session, _body(b"xx"), start=2)
    assert caught.value.headers["Range"] == "0-3"
    assert await uploads.size(session) == 4


async def test_session_of_another_repository_is_unknown(driver: FilesystemDriver) -> None:
    uploads = Uploads(driver)
    session = await uploads.start("team-a/app")
    with pytest.raises(BlobUploadUnknown):
        await uploads.get(session.id, "team-b/app")
    with pytest.raises(BlobUploadUnknown):
        await uploads.get("../../etc/passwd", "team-a/app")


async def test_stale_sessions_expire_and_are_purged(driver: FilesystemDriver) -> None:
    uploads = Uploads(driver, expiry_seconds=3600)
    sessions = [await uploads.start("team-a/app") for _ in range(2)]
    assert await uploads.purge_expired() == 0
    assert await uploads.purge_expired(now=time.time() + 7200) == 2
    for session in sessions:
        with pytest.raises(BlobUploadUnknown):
            await uploads.get(session.id, "team-a/app")
    assert await driver.list("uploads") == []


async def test_monolithic_upload_leaves_no_session_behind(driver: FilesystemDriver) -> None:
    uploads = Uploads(driver)
    data = b"one request"
    assert await uploads.put_whole(_digest(data), _body(data)) == len(data)
    assert await BlobStore(driver).get(_digest(data)) == data
    with pytest.raises(DigestInvalid):
        await uploads.put_whole(_digest(b"other"), _body(b"not other"))
    assert await BlobStore(driver).size(_digest(b"other")) is None
    assert await driver.list("uploads") == []


async def test_monolithic_upload_cut_off_is_purged_once_stale(driver: FilesystemDriver) -> None:
    """A server killed mid-request leaves the data file alone, with no session state: it is
    not a blob, and the purge removes it once it is as old as a stale session."""
    uploads = Uploads(driver, expiry_seconds=3600)

    async def cut_off() -> AsyncIterator[bytes]:
        yield b"first half"
        raise ConnectionResetError("client gone")

    leftover = "uploads/3f2b8c1e-0d4e-4b7a-9c55-2f0a6d1e8b90/data"  # as a SIGKILL leaves it
    writer = await driver.writer(leftover, append=False)
    async with writer:
        await writer.write(b"first half")
    with pytest.raises(ConnectionResetError):
        await uploads.put_whole(_digest(b"first half, second half"), cut_off())
    assert await driver.list("uploads") == ["3f2b8c1e-0d4e-4b7a-9c55-2f0a6d1e8b90"]
    assert await uploads.purge_expired() == 0
    assert await uploads.purge_expired(now=time.time() + 7200) == 1
    assert await driver.list("uploads") == []
