"""Garbage collection: the blob space that deletions leave behind, reclaimed in the
background, never in the request path (SPEC §4), never read-only, never pausing pushes.

The candidates come from the database, not from a walk of the store: every deletion records
the blobs it may have left unreferenced, and every upload its blob (`catalog/candidates.py`).
A candidate is collected when nothing references it (`image_blobs`, which holds layers,
configs and manifests alike, and `manifest_references`) and when it was recorded longer ago
than the grace period. The grace period is what protects pushes in flight: a finished upload
records its blob again (or links it, which is a reference), so a blob pushed a moment ago waits
a whole window, even while no manifest references it yet. Candidates go in batches (one query
for a thousand, then one `delete_many`, which is a single DeleteObjects request on S3), each
batch checked again right before it goes; a candidate found referenced is simply dropped. The
store is never listed: only `ociregistry fsck` walks it.

With `delete_untagged`, manifests that no tag points at, no index lists and that refer to no
subject still present are deleted first (as `registry garbage-collect --delete-untagged`
does), and then images left with nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.driver import StorageDriver
from ociregistry.blobstore.store import blob_path
from ociregistry.catalog import candidates
from ociregistry.catalog.candidates import BlobCandidate
from ociregistry.catalog.usage import (
    lock_for_manifests,
    note_collected,
    remove_images,
    remove_manifests,
)
from ociregistry.db import locks
from ociregistry.db.database import Database
from ociregistry.db.models import (
    Image,
    ImageBlob,
    Manifest,
    ManifestReference,
    Tag,
    utcnow,
)

DEFAULT_GRACE_SECONDS = 3600
log = logging.getLogger("ociregistry.gc")

BATCH = 1000  # candidates per query and per `delete_many` (S3: one DeleteObjects)

_UNREFERENCED = and_(
    ~exists(select(ImageBlob.digest).where(ImageBlob.digest == BlobCandidate.digest)),
    ~exists(
        select(ManifestReference.digest).where(ManifestReference.digest == BlobCandidate.digest)
    ),
)
# Candidates past the grace window, a batch at a time, in digest order.
_DUE = (
    select(BlobCandidate.digest, BlobCandidate.size)
    .where(BlobCandidate.since < bindparam("cutoff"), BlobCandidate.digest > bindparam("after"))
    .order_by(BlobCandidate.digest)
    .limit(BATCH)
)
_STILL_GARBAGE = select(BlobCandidate.digest, BlobCandidate.size).where(
    BlobCandidate.digest.in_(bindparam("digests", expanding=True)),
    BlobCandidate.since < bindparam("cutoff"),
    _UNREFERENCED,
)
# Unreferenced candidates the grace window still holds back.
_HELD = select(func.count(), func.sum(BlobCandidate.size)).where(
    BlobCandidate.since >= bindparam("cutoff"), _UNREFERENCED
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
    """What a collection did (or, in a dry run, would do), and what the grace period held
    back: unreferenced blobs too young to collect yet (a delete a moment ago leaves those)."""

    blobs_deleted: int = 0
    bytes_freed: int = 0
    manifests_deleted: int = 0
    images_deleted: int = 0
    blobs_held: int = 0
    bytes_held: int = 0


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
        cutoff_time = utcnow() - timedelta(seconds=self.grace_seconds)
        if delete_untagged and not dry_run:
            manifests, images = await self.db.transaction(
                lambda conn: _delete_untagged(conn, cutoff_time)
            )
            report.manifests_deleted, report.images_deleted = manifests, images
        elif delete_untagged:
            async with self.db.read() as conn:
                untagged = (await conn.scalars(_UNTAGGED, {"cutoff": cutoff_time})).all()
            report.manifests_deleted = len(untagged)
        # Again: what the untagged cleanup just recorded waits for its own window.
        cutoff_time = utcnow() - timedelta(seconds=self.grace_seconds)
        async with self.db.read() as conn:
            held = (await conn.execute(_HELD, {"cutoff": cutoff_time})).one()
        report.blobs_held, report.bytes_held = int(held[0]), int(held[1] or 0)
        done: set[str] = set()  # a dry run deletes nothing, so it pages past what it saw
        while True:
            async with self.db.read() as conn:
                batch = (
                    await conn.execute(
                        _DUE, {"cutoff": cutoff_time, "after": max(done, default="")}
                    )
                ).all()
            if not batch:
                break
            done.update(digest for digest, _ in batch)
            garbage = await self._garbage(batch, cutoff_time)
            paths = [blob_path(Digest.parse(digest)) for digest in garbage]
            for path, size in zip(paths, garbage.values(), strict=True):
                if size is None:  # recorded by an upload that never linked it
                    info = await self.driver.stat(path)
                    size = 0 if info is None else info.size
                report.blobs_deleted += 1
                report.bytes_freed += size
            if not dry_run and paths:
                await self.driver.delete_many(paths)
            if not dry_run:
                digests = [digest for digest, _ in batch]
                await self.db.transaction(
                    partial(_forget, digests=digests, collected=list(garbage), cutoff=cutoff_time)
                )
        if report.blobs_deleted:
            log.info(
                "garbage collection: %d blobs, %d bytes%s",
                report.blobs_deleted,
                report.bytes_freed,
                " (dry run)" if dry_run else "",
            )
        return report

    async def _garbage(self, batch: Sequence[Any], cutoff: datetime) -> dict[str, int | None]:
        """Of a batch of due candidates, those still unreferenced and still due, checked
        right before they go (a push may have linked or recorded one since)."""
        digests = [digest for digest, _ in batch]
        async with self.db.read() as conn:
            rows = (
                await conn.execute(_STILL_GARBAGE, {"digests": digests, "cutoff": cutoff})
            ).all()
        return {digest: size for digest, size in rows}


_EMPTY_IMAGES = select(Image.id).where(
    Image.created_at < bindparam("cutoff"),
    ~exists(select(Manifest.id).where(Manifest.image_id == Image.id)),
    ~exists(select(Tag.id).where(Tag.image_id == Image.id)),
    # blobs uploaded recently are a push in flight, waiting for its manifest
    ~exists(
        select(ImageBlob.digest).where(
            ImageBlob.image_id == Image.id, ImageBlob.created_at >= bindparam("cutoff")
        )
    ),
)


def _forget(conn: Connection, digests: list[str], collected: list[str], cutoff: datetime) -> None:
    """Drop the candidates of a batch that are dealt with: deleted, or referenced. A candidate
    recorded again since (a push of the same blob) stays, for its new grace window. The blobs
    deleted (`collected`) leave the usage figures."""
    for digest in sorted(collected):  # blob_usage, then blob_candidates, by digest
        note_collected(conn, digest)
    due = (BlobCandidate.digest.in_(digests), BlobCandidate.since < cutoff)
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(BlobCandidate.digest)
            .where(*due)
            .order_by(BlobCandidate.digest)
            .with_for_update()
        ).all()
    conn.execute(delete(BlobCandidate).where(*due))


def _delete_untagged(conn: Connection, cutoff: datetime) -> tuple[int, int]:
    """Delete untagged manifests nothing else needs, then images holding nothing.

    Locks in the order of db/database.py: the registries and images concerned (by id), then
    the blob-level usage rows; what is deleted is then looked for again under those locks,
    and only in the images locked (others are for the next run)."""
    params = {"cutoff": cutoff}
    concerned = set(
        conn.scalars(select(Manifest.image_id).where(Manifest.id.in_(_UNTAGGED)), params)
    )
    concerned.update(conn.scalars(_EMPTY_IMAGES, params))
    locks.images_with_registries(conn, concerned, delete=True)
    manifest_ids = [
        manifest_id
        for manifest_id, image_id in conn.execute(
            select(Manifest.id, Manifest.image_id).where(Manifest.id.in_(_UNTAGGED)), params
        )
        if image_id in concerned
    ]
    lock_for_manifests(conn, manifest_ids)
    if manifest_ids:
        dialect = conn.dialect.name
        conn.execute(candidates.of_manifests(dialect, manifest_ids))
        linked = select(Manifest.digest).where(Manifest.id.in_(manifest_ids))
        conn.execute(candidates.of_image_blobs(dialect, ImageBlob.digest.in_(linked)))
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
    empty = [image for image in conn.scalars(_EMPTY_IMAGES, params) if image in concerned]
    if empty:
        conn.execute(candidates.of_images(conn.dialect.name, empty))
        remove_images(conn, empty)
        conn.execute(delete(Image).where(Image.id.in_(empty)))
    return len(manifest_ids), len(empty)
