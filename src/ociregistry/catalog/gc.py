"""Garbage collection: the blob space that deletions leave behind, reclaimed in the
background, never in the request path (SPEC §4).

A blob file is collected when no image links it (`image_blobs`, which holds layers, configs
and manifests alike) and no manifest references it, and when it is older than a grace period.
The grace period is what protects pushes in flight: a finished upload or a stored manifest is
a freshly written file, linked within the same request, so a file only a moment old is never
swept even though nothing references it yet. Each candidate is checked again right before it
goes.

With `delete_untagged`, manifests that no tag points at, no index lists and that refer to no
subject still present are deleted first (as `registry garbage-collect --delete-untagged`
does), and then images left with nothing at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, exists, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from ociregistry.blobstore.digest import HEX_LENGTHS, Digest
from ociregistry.blobstore.driver import StorageDriver
from ociregistry.blobstore.store import blob_path
from ociregistry.catalog.database import Database
from ociregistry.catalog.models import (
    Image,
    ImageBlob,
    Manifest,
    ManifestReference,
    Tag,
    utcnow,
)
from ociregistry.catalog.usage import note_collected, remove_images, remove_manifests

DEFAULT_GRACE_SECONDS = 3600
log = logging.getLogger("ociregistry.gc")

_LINKED = select(ImageBlob.digest).where(ImageBlob.digest == bindparam("digest")).limit(1)
_REFERENCED = (
    select(ManifestReference.digest).where(ManifestReference.digest == bindparam("digest")).limit(1)
)
_parent = aliased(Manifest)
_subject = aliased(Manifest)
# Untagged, unlisted by any index of its image, and not a referrer of a manifest still there;
# and old enough that no push in flight (children go before their index) still needs it.
_UNTAGGED = select(Manifest.id).where(
    Manifest.created_at < bindparam("cutoff"),
    ~exists(select(Tag.id).where(Tag.manifest_id == Manifest.id)),
    ~exists(
        select(ManifestReference.manifest_id)
        .join(_parent, _parent.id == ManifestReference.manifest_id)
        .where(
            ManifestReference.kind == "manifest",
            ManifestReference.digest == Manifest.digest,
            _parent.image_id == Manifest.image_id,
        )
    ),
    ~exists(
        select(_subject.id).where(
            _subject.image_id == Manifest.image_id, _subject.digest == Manifest.subject
        )
    ),
)


@dataclass
class CollectionReport:
    blobs_deleted: int = 0
    bytes_freed: int = 0
    manifests_deleted: int = 0
    images_deleted: int = 0


class GarbageCollector:
    def __init__(
        self, db: Database, driver: StorageDriver, *, grace_seconds: float = DEFAULT_GRACE_SECONDS
    ) -> None:
        self.db = db
        self.driver = driver
        self.grace_seconds = grace_seconds

    async def collect(
        self, *, delete_untagged: bool = False, dry_run: bool = False
    ) -> CollectionReport:
        report = CollectionReport()
        if delete_untagged and not dry_run:
            cutoff_time = utcnow() - timedelta(seconds=self.grace_seconds)
            manifests, images = await self.db.transaction(
                lambda conn: _delete_untagged(conn, cutoff_time)
            )
            report.manifests_deleted, report.images_deleted = manifests, images
        cutoff = time.time() - self.grace_seconds
        for digest in await self._stored_digests():
            info = await self.driver.stat(blob_path(digest))
            if info is None or info.modified >= cutoff:
                continue  # young: a push in flight may be about to link it
            if await self._in_use(str(digest)):
                continue
            if not dry_run:
                await self.driver.delete(blob_path(digest))
                await self.db.transaction(lambda conn, d=str(digest): note_collected(conn, d))
            report.blobs_deleted += 1
            report.bytes_freed += info.size
        if report.blobs_deleted:
            log.info(
                "garbage collection: %d blobs, %d bytes%s",
                report.blobs_deleted,
                report.bytes_freed,
                " (dry run)" if dry_run else "",
            )
        return report

    async def _stored_digests(self) -> list[Digest]:
        digests = []
        for algorithm, length in HEX_LENGTHS.items():
            for prefix in await self.driver.list(f"blobs/{algorithm}"):
                for name in await self.driver.list(f"blobs/{algorithm}/{prefix}"):
                    if len(name) == length and name.startswith(prefix):
                        try:
                            digests.append(Digest.parse(f"{algorithm}:{name}"))
                        except Exception:  # not a blob of ours (a temporary file): skip
                            continue
        return digests

    async def _in_use(self, digest: str) -> bool:
        async with self.db.read() as conn:
            if await conn.scalar(_LINKED, {"digest": digest}) is not None:
                return True
            return await conn.scalar(_REFERENCED, {"digest": digest}) is not None


def _delete_untagged(conn: Connection, cutoff: datetime) -> tuple[int, int]:
    """Delete untagged manifests nothing else needs, then images holding nothing."""
    manifest_ids = list(conn.scalars(_UNTAGGED, {"cutoff": cutoff}).all())
    if manifest_ids:
        digests = conn.execute(
            select(Manifest.image_id, Manifest.digest).where(Manifest.id.in_(manifest_ids))
        ).all()
        remove_manifests(conn, manifest_ids)
        conn.execute(delete(Manifest).where(Manifest.id.in_(manifest_ids)))
        for image_id, digest in digests:
            conn.execute(
                delete(ImageBlob).where(
                    and_(ImageBlob.image_id == image_id, ImageBlob.digest == digest)
                )
            )
    empty = list(
        conn.scalars(
            select(Image.id).where(
                Image.created_at < cutoff,
                ~exists(select(Manifest.id).where(Manifest.image_id == Image.id)),
                ~exists(select(Tag.id).where(Tag.image_id == Image.id)),
                # blobs uploaded recently are a push in flight, waiting for its manifest
                ~exists(
                    select(ImageBlob.digest).where(
                        ImageBlob.image_id == Image.id, ImageBlob.created_at >= cutoff
                    )
                ),
            )
        ).all()
    )
    if empty:
        remove_images(conn, empty)
        conn.execute(delete(Image).where(Image.id.in_(empty)))
    return len(manifest_ids), len(empty)
