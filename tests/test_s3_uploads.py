"""The upload layer on the real S3 gateway: what only an object store can show.

A multipart upload that no session row owns (an instance killed between starting it and
saving its row) is billed by the object store until someone aborts it: the purge finds it under
our prefix and aborts it, and leaves the uploads of live sessions alone.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ociregistry.blobstore import CheckedDriver, Digest, create_driver
from ociregistry.blobstore.uploads import Uploads
from ociregistry.catalog.database import Database, migrate
from s3gateway import S3Gateway

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
