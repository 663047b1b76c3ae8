"""The upload layer on the real S3 gateway: what only an object store can show.

A multipart upload that no session row owns (an instance killed between starting it and
saving its row) is billed by the object store until someone aborts it: the purge finds it under
our prefix and aborts it, and leaves the uploads of live sessions alone.
"""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ociregistry.blobstore import CheckedDriver, Digest, create_driver
from ociregistry.blobstore.uploads import Uploads
from ociregistry.db.database import Database, migrate
from ociregistry.errors import DigestInvalid
from support.s3gateway import S3Gateway

pytestmark = pytest.mark.s3
MIB = 1 << 20


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
async def s3_driver(
    s3_gateway: S3Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CheckedDriver]:
    for name, value in s3_gateway.environment().items():
        monkeypatch.setenv(name, value)
    bucket = f"uploads-{os.getpid()}"
    if bucket not in {b["Name"] for b in s3_gateway.client().list_buckets()["Buckets"]}:
        s3_gateway.create_bucket(bucket)
    driver = create_driver(f"s3://{bucket}/{tmp_path.name}", tmp_path)
    yield driver
    await driver.driver.close()  # type: ignore[attr-defined]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


async def test_purge_aborts_multipart_uploads_no_session_owns(
    s3_driver: CheckedDriver, db: Database, s3_gateway: S3Gateway
) -> None:
    uploads = Uploads(db, s3_driver, expiry_seconds=86400)
    live = os.urandom(6 * MIB)  # one real part: the live session has a multipart upload too
    kept = await uploads.start("team-a/app")
    await uploads.append(kept, _body(live))
    orphan = await s3_driver.begin_upload("uploads/3f2b8c1e-0d4e-4b7a-9c55-2f0a6d1e8b90")
    await s3_driver.write_part(orphan, 1, _body(b"orphan"))
    assert len([u async for u in s3_driver.pending_uploads("uploads")]) == 2
    assert await uploads.purge_expired() == 0  # too young to be called an orphan
    assert len([u async for u in s3_driver.pending_uploads("uploads")]) == 2
    await uploads.purge_expired(now=time.time() + 7200)
    pending = [upload.path async for upload in s3_driver.pending_uploads("uploads")]
    assert pending == [f"uploads/{kept.id}"]
    # The gateway itself no longer lists the orphan (aborted, not merely forgotten by us).
    bucket = s3_driver.driver.location.bucket  # type: ignore[attr-defined]
    listed = s3_gateway.client().list_multipart_uploads(Bucket=bucket)
    keys = [upload["Key"] for upload in listed.get("Uploads", [])]
    assert not any("3f2b8c1e" in key for key in keys) and any(kept.id in key for key in keys)
    kept = await uploads.get(kept.id, "team-a/app")
    digest = Digest("sha256", hashlib.sha256(live).hexdigest())
    assert await uploads.finish(kept, digest) == len(live)
    assert [u async for u in s3_driver.pending_uploads("uploads")] == []


async def _random_stream(size: int, piece: int = MIB) -> AsyncIterator[bytes]:
    for _ in range(size // piece):
        yield os.urandom(piece)


@pytest.mark.parametrize("how", ["put_stream", "one_big_part"])
async def test_a_large_stream_goes_to_s3_in_bounded_memory(
    s3_driver: CheckedDriver, how: str
) -> None:
    """A 96 MiB monolithic upload, or one PATCH of 96 MiB (what docker sends), never holds
    more than a few parts in memory: the Python heap's peak (measured: 46 MiB, of which the
    client library holds some) stays well under the stream's size."""
    size = 96 * MIB
    tracemalloc.start()
    try:
        if how == "put_stream":
            assert await s3_driver.put_stream("blobs/big", _random_stream(size)) == size
        else:
            state = await s3_driver.begin_upload("uploads/9d1c4b8e-1f2a-4e3b-8c7d-6e5f4a3b2c1d")
            state = await s3_driver.write_part(state, 1, _random_stream(size))
            await s3_driver.compose(state, "blobs/big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    info = await s3_driver.stat("blobs/big")
    assert info is not None and info.size == size
    assert peak < 64 * MIB, f"peak {peak / MIB:.1f} MiB"


async def test_finishing_a_fresh_session_asks_s3_for_nothing_but_the_blob(
    s3_driver: CheckedDriver, db: Database
) -> None:
    """A small push (POST, then PUT with the whole blob, as docker sends a config) staged
    nothing under the session's folder: finishing it must not list that folder, delete in it
    or list its multipart uploads (three requests per blob, for nothing), only write the blob.
    A session that did stage something still has its folder cleaned up."""
    uploads = Uploads(db, s3_driver)
    s3 = s3_driver.driver
    data = os.urandom(3000)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    session = await uploads.start("team/app")
    s3.operations.clear()  # type: ignore[attr-defined]
    assert await uploads.finish(session, digest, _body(data)) == len(data)
    assert dict(s3.operations) == {"PutObject": 1}  # type: ignore[attr-defined]
    assert await s3_driver.get_content(f"blobs/sha256/{digest.hex[:2]}/{digest.hex}") == data

    staged = await uploads.start("team/app")
    await uploads.append(staged, _body(data[:1000]))  # below 5 MiB: a staged tail
    staged = await uploads.get(staged.id, "team/app")
    await uploads.finish(staged, digest, _body(data[1000:]))
    assert [info.path async for info in s3_driver.walk(f"uploads/{staged.id}")] == []


def _gateway_uploads(s3_gateway: S3Gateway, driver: CheckedDriver, upload_id: str) -> list[str]:
    """The multipart uploads the gateway itself lists for one session (not what we remember)."""
    bucket = driver.driver.location.bucket  # type: ignore[attr-defined]
    listed = s3_gateway.client().list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in listed.get("Uploads", []) if upload_id in u["Key"]]


@pytest.mark.parametrize("how", ["cancelled", "wrong digest", "expired"])
async def test_an_upload_that_ends_without_a_blob_aborts_its_multipart_upload(
    s3_driver: CheckedDriver, db: Database, s3_gateway: S3Gateway, how: str
) -> None:
    """Cancelled (DELETE), failing its digest, or purged once expired: the session's multipart
    upload is aborted on the gateway, so no part of it stays billed."""
    uploads = Uploads(db, s3_driver, expiry_seconds=3600)
    session = await uploads.start("team-a/app")
    await uploads.append(session, _body(os.urandom(6 * MIB)))  # one real part
    assert len(_gateway_uploads(s3_gateway, s3_driver, session.id)) == 1
    session = await uploads.get(session.id, "team-a/app")
    if how == "cancelled":
        await uploads.cancel(session)
    elif how == "wrong digest":
        with pytest.raises(DigestInvalid):
            await uploads.finish(session, Digest("sha256", "0" * 64), _body(b"tail"))
    else:
        assert await uploads.purge_expired(now=time.time() + 7200) == 1
    assert _gateway_uploads(s3_gateway, s3_driver, session.id) == []
    assert [u async for u in s3_driver.pending_uploads(f"uploads/{session.id}")] == []
