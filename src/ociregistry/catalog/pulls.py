"""Pull counting (SPEC §3), kept off the manifest path.

A manifest GET (or a HEAD by tag, which containerd uses to resolve a tag before it GETs by
digest) only appends an event to a list in memory. Every `FLUSH_SECONDS` each worker writes its
events to the `pull_events` table in one transaction, and then turns the events that every
worker has had time to flush (older than `SETTLE_SECONDS`) into counts:

- a GET by tag counts on the tag and its image;
- a GET by digest counts on the image, and on a tag when the same client resolved that digest
  through a HEAD of that tag in the previous 60 s;
- a GET by digest of a child manifest of an index that the same client fetched in the previous
  60 s is part of that pull and counts nothing (a multi-arch pull is one pull).

Events live in the database, not in one process, so a HEAD on one worker and the GET on
another (or on another instance) are matched all the same. A clean shutdown flushes and
counts everything; a SIGKILL loses at most the last flush interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ociregistry.catalog.database import Database
from ociregistry.catalog.models import (
    Image,
    Manifest,
    ManifestReference,
    PullEvent,
    Registry,
    Tag,
    utcnow,
)

FLUSH_SECONDS = 0.2
SETTLE_SECONDS = 0.4  # longer than any worker's flush delay
ATTRIBUTION_WINDOW_SECONDS = 60.0
RETAIN_SECONDS = 2 * ATTRIBUTION_WINDOW_SECONDS

GET_BY_TAG = "get_tag"
GET_BY_DIGEST = "get_digest"
HEAD_BY_TAG = "head_tag"

log = logging.getLogger("ociregistry.pulls")


@dataclass(frozen=True, slots=True)
class PullEventRecord:
    at: float
    client: str
    registry: str
    image: str
    kind: str
    tag: str | None
    digest: str


class PullCounter:
    """Collects pull events in memory and turns them into counts in the background."""

    def __init__(self, db: Database, *, enabled: bool = True) -> None:
        self.db = db
        self.enabled = enabled
        self._pending: list[PullEventRecord] = []
        self._task: asyncio.Task[None] | None = None

    def record(
        self, client: str, registry: str, image: str, kind: str, tag: str | None, digest: str
    ) -> None:
        """Note one event: a list append, nothing more, on the request path."""
        if self.enabled:
            self._pending.append(
                PullEventRecord(time.time(), client, registry, image, kind, tag, digest)
            )

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Flush and count everything: a clean shutdown loses no pull."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
        await asyncio.sleep(SETTLE_SECONDS)  # let the other workers flush theirs
        await self.count(settled_before=time.time())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                await self.count(settled_before=time.time() - SETTLE_SECONDS)
            except Exception:
                log.exception("counting pulls failed; will retry")

    async def flush(self) -> None:
        events, self._pending = self._pending, []
        if not events:
            return
        try:
            async with self.db.write() as conn:
                image_ids = await self._image_ids(conn, events)
                rows = [
                    {
                        "at": e.at,
                        "client": e.client,
                        "image_id": image_ids[(e.registry, e.image)],
                        "kind": e.kind,
                        "tag": e.tag,
                        "digest": e.digest,
                        "processed": False,
                    }
                    for e in events
                    if (e.registry, e.image) in image_ids
                ]
                if rows:
                    await conn.execute(PullEvent.__table__.insert(), rows)
        except BaseException:
            self._pending[:0] = events  # try again on the next tick
            raise

    @staticmethod
    async def _image_ids(
        conn: AsyncConnection, events: list[PullEventRecord]
    ) -> dict[tuple[str, str], int]:
        wanted = {(e.registry, e.image) for e in events}
        ids: dict[tuple[str, str], int] = {}
        for registry, image in wanted:
            image_id = await conn.scalar(
                select(Image.id)
                .join(Registry, Registry.id == Image.registry_id)
                .where(Registry.name == registry, Image.name == image)
            )
            if image_id is not None:
                ids[(registry, image)] = image_id
        return ids

    async def count(self, *, settled_before: float) -> None:
        """Turn settled events into counts, exactly once, whichever worker gets there first."""
        async with self.db.write() as conn:
            events = (
                await conn.execute(
                    select(
                        PullEvent.id,
                        PullEvent.at,
                        PullEvent.client,
                        PullEvent.image_id,
                        PullEvent.kind,
                        PullEvent.tag,
                        PullEvent.digest,
                    )
                    .where(
                        PullEvent.processed.is_(False),
                        PullEvent.at < settled_before,
                        PullEvent.kind != HEAD_BY_TAG,
                    )
                    .order_by(PullEvent.at, PullEvent.id)
                )
            ).all()
            image_counts: dict[int, int] = defaultdict(int)
            tag_counts: dict[tuple[int, str], int] = defaultdict(int)
            for event_id, at, client, image_id, kind, tag, digest in events:
                if kind == GET_BY_TAG:
                    image_counts[image_id] += 1
                    tag_counts[(image_id, tag)] += 1
                    continue
                if await self._part_of_index_pull(conn, event_id, at, client, image_id, digest):
                    continue
                image_counts[image_id] += 1
                resolved = await self._resolved_tag(conn, at, client, image_id, digest)
                if resolved is not None:
                    tag_counts[(image_id, resolved)] += 1
            if events:
                await conn.execute(
                    update(PullEvent)
                    .where(PullEvent.id.in_([row[0] for row in events]))
                    .values(processed=True)
                )
            for image_id, count in image_counts.items():
                await conn.execute(
                    update(Image)
                    .where(Image.id == image_id)
                    .values(pull_count=Image.pull_count + count)
                )
            for (image_id, tag), count in tag_counts.items():
                await conn.execute(
                    update(Tag)
                    .where(Tag.image_id == image_id, Tag.name == tag)
                    .values(pull_count=Tag.pull_count + count)
                )
            await conn.execute(delete(PullEvent).where(PullEvent.at < time.time() - RETAIN_SECONDS))

    @staticmethod
    async def _part_of_index_pull(
        conn: AsyncConnection, event_id: int, at: float, client: str, image_id: int, digest: str
    ) -> bool:
        """Whether the same client fetched, shortly before, an index that lists `digest`."""
        parent = await conn.scalar(
            select(PullEvent.id)
            .join(
                Manifest,
                and_(Manifest.image_id == PullEvent.image_id, Manifest.digest == PullEvent.digest),
            )
            .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
            .where(
                PullEvent.client == client,
                PullEvent.image_id == image_id,
                PullEvent.kind != HEAD_BY_TAG,
                PullEvent.id != event_id,
                PullEvent.at >= at - ATTRIBUTION_WINDOW_SECONDS,
                PullEvent.at <= at,
                ManifestReference.kind == "manifest",
                ManifestReference.digest == digest,
            )
            .limit(1)
        )
        return parent is not None

    @staticmethod
    async def _resolved_tag(
        conn: AsyncConnection, at: float, client: str, image_id: int, digest: str
    ) -> str | None:
        """The tag this client resolved to `digest` with a HEAD in the previous 60 s."""
        return await conn.scalar(
            select(PullEvent.tag)
            .where(
                PullEvent.client == client,
                PullEvent.image_id == image_id,
                PullEvent.kind == HEAD_BY_TAG,
                PullEvent.digest == digest,
                PullEvent.at >= at - ATTRIBUTION_WINDOW_SECONDS,
                PullEvent.at <= at,
            )
            .order_by(PullEvent.at.desc())
            .limit(1)
        )


async def refresh_registry_counts(db: Database, *, older_than_seconds: float) -> int:
    """Recompute registry pull counts (the sum over their images) where the last refresh is
    older than the interval. Every worker may call this; the first one does the work."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    total = (
        select(func.coalesce(func.sum(Image.pull_count), 0))
        .where(Image.registry_id == Registry.id)
        .scalar_subquery()
    )
    async with db.write() as conn:
        result = await conn.execute(
            update(Registry)
            .where(
                or_(
                    Registry.pull_count_refreshed_at.is_(None),
                    Registry.pull_count_refreshed_at < cutoff,
                )
            )
            .values(pull_count=total, pull_count_refreshed_at=utcnow())
        )
    return result.rowcount or 0
