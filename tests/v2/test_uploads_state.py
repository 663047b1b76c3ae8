"""Upload sessions are database rows, not process memory or files: a chunked upload moves
between workers with its hash, two requests racing on one session cannot both write, a chunk
that fails is not recorded, and stale sessions expire in one query."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Connection, Engine

from ociregistry.blobstore import BlobStore, CheckedDriver, Digest, MemoryDriver, create_driver
from ociregistry.blobstore.models import UploadRow
from ociregistry.blobstore.uploads import Uploads
from ociregistry.catalog.candidates import BlobCandidate
from ociregistry.catalog.images import Images
from ociregistry.catalog.registries import Registries
from ociregistry.content.blobpushes import BlobPushes
from ociregistry.db.database import Database, migrate
from ociregistry.db.models import ImageBlob
from ociregistry.errors import BlobUploadInvalid, BlobUploadUnknown, DigestInvalid, RangeInvalid
from ociregistry.names import RepositoryName


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["filesystem", "memory", "memory-min-part"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> CheckedDriver:
    if request.param == "memory-min-part":  # an object store's rule: parts of 64 KiB or more
        return CheckedDriver(MemoryDriver(min_part_size=64 << 10))
    return create_driver(request.param, tmp_path / "storage")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


async def _row(db: Database, upload_id: str) -> UploadRow | None:
    async with db.read() as conn:
        return (await conn.execute(select(UploadRow).where(UploadRow.id == upload_id))).first()


class _NoReads(CheckedDriver):
    """The real driver, refusing to read anything back but a staged tail (smaller than the
    driver's minimum part, which only an object store has)."""

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        raise AssertionError(f"read back {path}")

    async def get_content(self, path: str) -> bytes:
        if "/tail-" not in path:
            raise AssertionError(f"read back {path}")
        data = await super().get_content(path)
        assert len(data) < self.min_part_size
        return data


async def test_upload_continues_in_another_process(db: Database, driver: CheckedDriver) -> None:
    """Two `Uploads` stand for two worker processes; the hash travels in the row and no byte
    is read back."""
    quiet = _NoReads(driver.driver)  # the same storage, seen through a reader that refuses
    first, second = Uploads(db, quiet), Uploads(db, quiet)
    parts = [b"a" * 5_000_000, b"b" * 3_000_000, b"c" * 1_000]
    session = await first.start("team-a/app")
    await first.append(session, _body(parts[0]), start=0, length=len(parts[0]))
    row = await _row(db, session.id)
    assert row.received == len(parts[0]) and row.hash_state
    moved = await second.get(session.id, "team-a/app")
    assert moved.offset == len(parts[0])
    await second.append(moved, _body(parts[1]), start=len(parts[0]))
    back = await first.get(session.id, "team-a/app")
    await first.append(back, _body(parts[2]))
    back = await first.get(session.id, "team-a/app")
    size = await first.finish(back, _digest(b"".join(parts)))
    assert size == sum(map(len, parts))
    assert await BlobStore(driver).get(_digest(b"".join(parts))) == b"".join(parts)
    assert await _row(db, session.id) is None


async def test_sha512_uploads(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver)
    data = b"some content"
    digest = Digest("sha512", hashlib.sha512(data).hexdigest())
    session = await uploads.start("team-a/app")
    assert await uploads.finish(session, digest, _body(data)) == len(data)
    assert await BlobStore(driver).get(digest) == data


async def test_chunked_sha512_upload(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver)
    data = b"x" * 100_000 + b"y" * 1000
    digest = Digest("sha512", hashlib.sha512(data).hexdigest())
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(data[:100_000]))
    session = await uploads.get(session.id, "team-a/app")
    assert await uploads.finish(session, digest, _body(data[100_000:])) == len(data)
    assert await BlobStore(driver).get(digest) == data
    assert [info async for info in driver.walk("uploads")] == []


async def test_wrong_digest_cancels_the_session(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver)
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(b"kept"))
    session = await uploads.get(session.id, "team-a/app")
    with pytest.raises(DigestInvalid):
        await uploads.finish(session, _digest(b"keptwrong"), _body(b"junk"))
    with pytest.raises(BlobUploadUnknown):
        await uploads.get(session.id, "team-a/app")
    assert await BlobStore(driver).size(_digest(b"keptjunk")) is None
    assert [upload async for upload in driver.pending_uploads("uploads")] == []


async def test_out_of_order_chunk_changes_nothing(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver)
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(b"0123"), start=0)
    session = await uploads.get(session.id, "team-a/app")
    with pytest.raises(RangeInvalid) as caught:
        await uploads.append(session, _body(b"xx"), start=2)
    assert caught.value.received == 4  # the client resumes from byte 4 (`Range: 0-3`)
    assert (await uploads.get(session.id, "team-a/app")).offset == 4


async def test_failed_chunk_is_not_recorded(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver)
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(b"first "))

    async def cut_off() -> AsyncIterator[bytes]:
        yield b"half of a chunk"
        raise ConnectionResetError("client gone")

    session = await uploads.get(session.id, "team-a/app")
    with pytest.raises(ConnectionResetError):
        await uploads.append(session, cut_off())
    with pytest.raises(BlobUploadInvalid):  # the body is shorter than Content-Range says
        await uploads.append(session, _body(b"short"), start=6, length=10)
    session = await uploads.get(session.id, "team-a/app")
    assert session.offset == 6
    await uploads.append(session, _body(b"second"), start=6)
    session = await uploads.get(session.id, "team-a/app")
    assert await uploads.finish(session, _digest(b"first second")) == 12
    assert await BlobStore(driver).get(_digest(b"first second")) == b"first second"


async def test_racing_requests_one_wins(db: Database, driver: CheckedDriver) -> None:
    """Two PATCHes at the same offset of one session: one is recorded, the other gets a clean
    error and wrote nothing that counts."""
    uploads = Uploads(db, driver)
    session = await uploads.start("team-a/app")
    gate = asyncio.Event()

    async def slow(data: bytes) -> AsyncIterator[bytes]:
        yield data[:10]
        await gate.wait()
        yield data[10:]

    a = asyncio.ensure_future(uploads.append(session, slow(b"A" * 100_000), start=0))
    await asyncio.sleep(0.2)  # let the first one claim the row
    with pytest.raises(RangeInvalid, match="another request is writing"):
        await uploads.append(session, _body(b"B" * 100_000), start=0)
    gate.set()
    assert await a == 100_000
    session = await uploads.get(session.id, "team-a/app")
    assert await uploads.finish(session, _digest(b"A" * 100_000)) == 100_000


async def test_session_of_another_repository_is_unknown(
    db: Database, driver: CheckedDriver
) -> None:
    uploads = Uploads(db, driver)
    session = await uploads.start("team-a/app")
    with pytest.raises(BlobUploadUnknown):
        await uploads.get(session.id, "team-b/app")
    with pytest.raises(BlobUploadUnknown):
        await uploads.get("../../etc/passwd", "team-a/app")


async def test_stale_sessions_expire_and_are_purged(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver, expiry_seconds=3600)
    sessions = [await uploads.start("team-a/app") for _ in range(2)]
    await uploads.append(sessions[0], _body(b"some bytes"))
    assert await uploads.purge_expired() == 0
    assert await uploads.purge_expired(now=time.time() + 7200) == 2
    for session in sessions:
        with pytest.raises(BlobUploadUnknown):
            await uploads.get(session.id, "team-a/app")
    assert [upload async for upload in driver.pending_uploads("uploads")] == []
    assert [info async for info in driver.walk("uploads")] == []


async def test_purge_aborts_uploads_no_session_owns(db: Database, driver: CheckedDriver) -> None:
    """A server killed between starting a multipart upload and saving its row leaves one
    behind; the purge finds it by listing the driver's pending uploads."""
    uploads = Uploads(db, driver, expiry_seconds=86400)
    kept, live = await uploads.start("team-a/app"), b"live" * 30_000  # a part for any driver
    await uploads.append(kept, _body(live))
    state = await driver.begin_upload("uploads/3f2b8c1e-0d4e-4b7a-9c55-2f0a6d1e8b90")
    await driver.write_part(state, 1, _body(b"orphan"))
    assert await uploads.purge_expired() == 0
    assert len([u async for u in driver.pending_uploads("uploads")]) == 2
    assert await uploads.purge_expired(now=time.time() + 7200) == 0  # the orphan is old enough
    pending = [upload.path async for upload in driver.pending_uploads("uploads")]
    assert pending == [f"uploads/{kept.id}"]
    kept = await uploads.get(kept.id, "team-a/app")
    assert await uploads.finish(kept, _digest(live)) == len(live)


async def test_monolithic_upload_needs_no_session(db: Database, driver: CheckedDriver) -> None:
    uploads = Uploads(db, driver)
    data = b"one request"
    assert await uploads.put_whole(_digest(data), _body(data)) == len(data)
    assert await BlobStore(driver).get(_digest(data)) == data
    with pytest.raises(DigestInvalid):
        await uploads.put_whole(_digest(b"other"), _body(b"not other"))
    assert await BlobStore(driver).size(_digest(b"other")) is None
    assert [info async for info in driver.walk("uploads")] == []
    async with db.read() as conn:
        assert (await conn.scalars(select(UploadRow.id))).all() == []


async def test_monolithic_upload_cut_off_leaves_nothing(
    db: Database, driver: CheckedDriver
) -> None:
    uploads = Uploads(db, driver)

    async def cut_off() -> AsyncIterator[bytes]:
        yield b"first half"
        raise ConnectionResetError("client gone")

    with pytest.raises(ConnectionResetError):
        await uploads.put_whole(_digest(b"first half, second half"), cut_off())
    assert [info async for info in driver.walk("blobs")] == []


async def test_small_chunks_are_staged_until_they_make_a_part(db: Database) -> None:
    """Below the driver's part size, chunks are staged and joined with the next: every part
    but the last is at least the minimum (the driver refuses to compose otherwise)."""
    driver = CheckedDriver(MemoryDriver(min_part_size=64 << 10))
    uploads = Uploads(db, driver)
    chunks = [b"%d" % n * 7000 for n in range(1, 30)]  # 7 to 14 KB each
    session = await uploads.start("team-a/app")
    for chunk in chunks:
        session = await uploads.get(session.id, "team-a/app")
        await uploads.append(session, _body(chunk), start=session.offset)
    row = await _row(db, session.id)
    assert row.parts >= 2 and row.staged < 64 << 10
    assert uploads.min_chunk_length == 64 << 10
    session = await uploads.get(session.id, "team-a/app")
    data = b"".join(chunks)
    assert await uploads.finish(session, _digest(data + b"!"), _body(b"!")) == len(data) + 1
    assert await BlobStore(driver).get(_digest(data + b"!")) == data + b"!"


async def test_a_small_push_commits_once(db: Database, tmp_path: Path) -> None:
    """POST then PUT with the whole blob (how docker sends a config or a small layer): the
    PUT takes no claim, and links the blob as it drops the session, so it costs one commit,
    not two; the link is there, and no garbage candidate beside it (a link is a reference the
    collector checks: the candidate would only be dropped again). Of the two commits of
    the whole upload (POST's session, the drop), only the drop, which answers the 201, waits
    for an fsync (SQLite's `synchronous=FULL`); the POST's is synced by it."""
    await Registries(db).create("team", kind="platform")
    uploads = Uploads(db, create_driver("filesystem", tmp_path / "storage"))
    pushes = BlobPushes(uploads, Images(db))
    repo = RepositoryName.parse("team/app")
    data = b"a small config"
    commits: list[int] = []  # per commit, its connection's `synchronous`: 2 FULL, 1 NORMAL

    def count(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        commits.append(driver.execute("PRAGMA synchronous").fetchone()[0])

    event.listen(Engine, "commit", count)
    try:
        session = await uploads.start(repo.full)
        put_from = len(commits)
        assert await pushes.finish(repo, session, _digest(data), _body(data)) == len(data)
    finally:
        event.remove(Engine, "commit", count)
    assert len(commits) - put_from == 1
    assert commits == [1, 2], "only the commit that answers the 201 waits for an fsync"
    async with db.read() as conn:
        digest = str(_digest(data))
        linked = await conn.scalar(select(ImageBlob.size).where(ImageBlob.digest == digest))
        noted = await conn.scalar(
            select(BlobCandidate.digest).where(BlobCandidate.digest == digest)
        )
    assert (linked, noted) == (len(data), None)


async def test_a_chunk_that_lands_while_a_whole_blob_streams_wins(
    db: Database, driver: CheckedDriver
) -> None:
    """A PUT that carries the whole blob of a fresh session takes no claim while it streams;
    a PATCH that lands meanwhile claims the row and wins. The PUT then fails as a claim that
    lost would (416 with the upload's offset), the session goes on from the PATCH's chunk,
    and the PUT's blob, written but not linked, is recorded as a garbage candidate."""
    uploads = Uploads(db, driver)
    session = await uploads.start("team-a/app")
    calls: list[str] = []

    async def whole() -> AsyncIterator[bytes]:
        yield b"the whole "
        await uploads.append(await uploads.get(session.id, "team-a/app"), _body(b"chunk"))
        yield b"blob"

    with pytest.raises(RangeInvalid) as raised:
        await uploads.finish(
            session,
            _digest(b"the whole blob"),
            whole(),
            before=lambda conn: calls.append("candidate"),
            after=lambda conn, size: calls.append("link"),
        )
    assert raised.value.received == len(b"chunk")
    assert calls == ["candidate"]
    row = await _row(db, session.id)
    assert row is not None and row.received == len(b"chunk") and row.writer is None
    session = await uploads.get(session.id, "team-a/app")
    data = b"chunk, then more"
    assert await uploads.finish(session, _digest(data), _body(data[5:])) == len(data)
    assert await BlobStore(driver).get(_digest(data)) == data
    assert await _row(db, session.id) is None
