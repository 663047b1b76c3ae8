"""Pull counting (SPEC §3), kept off the manifest path.

A manifest GET (or a HEAD by tag, which containerd uses to resolve a tag before it GETs by
digest) only updates a dictionary in memory. Every `FLUSH_SECONDS` each worker adds its GETs by
tag to the counters and writes the events that need looking back at to the `pull_events` table,
in one transaction; then it counts the GETs by digest that every worker has had time to flush
(older than `SETTLE_SECONDS`):

- a GET by tag counts on the tag and its image;
- a GET by digest counts on the image, and on a tag when the same client resolved that digest
  through a HEAD of that tag in the previous 60 s;
- a GET by digest of a child manifest of an index that the same client fetched in the previous
  60 s is part of that pull and counts nothing (a multi-arch pull is one pull).

Events live in the database, not in one process, so a HEAD on one worker and the GET on
another (or on another instance) are matched all the same. A clean shutdown flushes and
counts everything; a SIGKILL loses at most the last flush interval.

Idle means idle: a tick with nothing in memory and no settled event pending in the database
writes nothing (a read says so; no transaction takes the SQLite write lock that pushes wait
on), and events older than the look-back are pruned on a slower timer, `PRUNE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import BigInteger, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.engine import Connection

from ociregistry.db import locks
from ociregistry.db.database import Database
from ociregistry.db.models import (
    Image,
    Manifest,
    ManifestReference,
    PullEvent,
    Registry,
    Tag,
    utcnow,
)
from ociregistry.manifests.mediatypes import INDEXES

FLUSH_SECONDS = 0.2
SETTLE_SECONDS = 0.4  # longer than any worker's flush delay
ATTRIBUTION_WINDOW_SECONDS = 60.0
RETAIN_SECONDS = 2 * ATTRIBUTION_WINDOW_SECONDS
PRUNE_SECONDS = 30.0  # how often old events are looked for (and deleted, if any)

GET_BY_TAG = "get_tag"
GET_BY_DIGEST = "get_digest"
HEAD_BY_TAG = "head_tag"

log = logging.getLogger("ociregistry.pulls")

ImageKey = tuple[str, str]  # (registry, image)


@dataclass(frozen=True, slots=True)
class PullEventRecord:
    at: float
    client: str
    registry: str
    image: str
    kind: str
    tag: str | None
    digest: str
    counted: bool  # already counted (or never to be): kept only to look back at


class PullCounter:
    """Collects pulls in memory and turns them into counts in the background.

    A GET by tag needs no look-back: it is summed in memory and added to the counters at the
    next flush. Only what later requests must find (HEADs by tag, indexes fetched by tag) and
    GETs by digest, which need that look-back, go to the events table. A HEAD repeated by the
    same client within one flush is written once.
    """

    def __init__(self, db: Database, *, enabled: bool = True) -> None:
        self.db = db
        self.enabled = enabled
        self._by_tag: Counter[tuple[str, str, str]] = Counter()  # (registry, image, tag)
        self._events: list[PullEventRecord] = []
        self._heads: dict[tuple[str, str, str, str, str], float] = {}
        self._task: asyncio.Task[None] | None = None
        self._tick: asyncio.Future[None] | None = None  # the flush under way, if any
        self._pruned_at = 0.0  # time.monotonic() of the last look for old events

    def on_get_manifest(
        self,
        client: str,
        registry: str,
        image: str,
        tag: str | None,
        digest: str,
        media_type: str,
        *,
        head: bool = False,
    ) -> None:
        """The hook the manifest route calls after a manifest was served (as zot's
        `OnGetManifest`): what counts as a pull is decided here. A GET counts (by tag or by
        digest); a HEAD never does, but one by tag is noted, since containerd resolves a tag
        that way before it GETs by digest; a HEAD by digest is nothing to us."""
        if head and tag is None:
            return
        kind = HEAD_BY_TAG if head else GET_BY_TAG if tag is not None else GET_BY_DIGEST
        self.record(client, registry, image, kind, tag, digest, index=media_type in INDEXES)

    def record(
        self,
        client: str,
        registry: str,
        image: str,
        kind: str,
        tag: str | None,
        digest: str,
        *,
        index: bool = False,
    ) -> None:
        """Note one request: a dictionary update, nothing more, on the request path."""
        if not self.enabled:
            return
        now = time.time()
        if kind == HEAD_BY_TAG:
            self._heads[(client, registry, image, tag or "", digest)] = now
        elif kind == GET_BY_TAG:
            self._by_tag[(registry, image, tag or "")] += 1
            if index:  # its children, fetched next by digest, are part of this pull
                self._events.append(
                    PullEventRecord(now, client, registry, image, kind, tag, digest, True)
                )
        else:
            self._events.append(
                PullEventRecord(now, client, registry, image, kind, tag, digest, False)
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
        if self._tick is not None:  # let a flush that was under way finish first
            await asyncio.gather(self._tick, return_exceptions=True)
        await self.flush()
        await asyncio.sleep(SETTLE_SECONDS)  # let the other workers flush theirs
        await self.count(settled_before=time.time())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            # Shielded: a transaction runs on a thread and commits even if its awaiter is
            # cancelled, so cancelling mid-flush (a shutdown) must not make it look failed,
            # or its counts would be put back and written twice.
            self._tick = asyncio.ensure_future(self._flush_and_count())
            await asyncio.shield(self._tick)

    async def _flush_and_count(self) -> None:
        try:
            await self.flush()
            await self.count(settled_before=time.time() - SETTLE_SECONDS)
            if time.monotonic() - self._pruned_at >= PRUNE_SECONDS:
                await self.prune(older_than=time.time() - RETAIN_SECONDS)
                self._pruned_at = time.monotonic()
        except Exception:
            log.exception("counting pulls failed; will retry")

    async def flush(self) -> None:
        by_tag, self._by_tag = self._by_tag, Counter()
        events, self._events = self._events, []
        heads, self._heads = self._heads, {}
        events += [
            PullEventRecord(at, client, registry, image, HEAD_BY_TAG, tag, digest, True)
            for (client, registry, image, tag, digest), at in heads.items()
        ]
        if not by_tag and not events:
            return
        try:
            await self.db.transaction(lambda conn: _flush(conn, by_tag, events))
        except Exception:
            self._by_tag.update(by_tag)  # nothing was written: try again on the next tick
            self._events[:0] = events
            raise

    async def count(self, *, settled_before: float) -> None:
        """Count the settled GETs by digest, exactly once, whichever worker gets there first;
        when none is pending, only an indexed read runs."""
        async with self.db.read() as conn:
            pending = await conn.scalar(_ANY_PENDING, {"settled_before": settled_before})
        if pending is not None:
            await self.db.transaction(lambda conn: _count(conn, settled_before))

    async def prune(self, *, older_than: float) -> None:
        """Delete events no look-back can reach any more, if there are any."""
        async with self.db.read() as conn:
            old = await conn.scalar(_ANY_OLD, {"older_than": older_than})
        if old is not None:
            await self.db.transaction(
                lambda conn: conn.execute(delete(PullEvent).where(PullEvent.at < older_than))
            )


_IMAGE_ID = (
    select(Image.id)
    .join(Registry, Registry.id == Image.registry_id)
    .where(Registry.name == bindparam("registry"), Image.name == bindparam("image"))
)
# (bind names differ from column names: UPDATE reserves those for its SET clause)
_ADD_TO_IMAGE = (
    update(Image)
    .where(Image.id == bindparam("which_image"))
    .values(pull_count=Image.pull_count + bindparam("n"))
)
_ADD_TO_TAG = (
    update(Tag)
    .where(Tag.image_id == bindparam("which_image"), Tag.name == bindparam("which_tag"))
    .values(pull_count=Tag.pull_count + bindparam("n"), last_pulled_at=bindparam("now"))
)
_PENDING = (
    select(PullEvent.id, PullEvent.at, PullEvent.client, PullEvent.image_id, PullEvent.digest)
    .where(PullEvent.processed.is_(False), PullEvent.at < bindparam("settled_before"))
    .order_by(PullEvent.at, PullEvent.id)
    .with_for_update(skip_locked=True)  # PostgreSQL: two counters never take the same event
)
_PENDING_IMAGES = (
    select(PullEvent.image_id)
    .where(PullEvent.processed.is_(False), PullEvent.at < bindparam("settled_before"))
    .distinct()
)
_ANY_PENDING = (
    select(PullEvent.id)
    .where(PullEvent.processed.is_(False), PullEvent.at < bindparam("settled_before"))
    .limit(1)
)
_ANY_OLD = (  # processed either way: so that the (processed, at) index serves it
    select(PullEvent.id)
    .where(PullEvent.processed.in_([False, True]), PullEvent.at < bindparam("older_than"))
    .limit(1)
)
_INDEX_FETCHED = (
    select(PullEvent.id)
    .join(
        Manifest,
        and_(Manifest.image_id == PullEvent.image_id, Manifest.digest == PullEvent.digest),
    )
    .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
    .where(
        PullEvent.client == bindparam("client"),
        PullEvent.image_id == bindparam("image_id"),
        PullEvent.kind != HEAD_BY_TAG,
        PullEvent.id != bindparam("event_id"),
        PullEvent.at >= bindparam("since"),
        PullEvent.at <= bindparam("at"),
        ManifestReference.kind == "manifest",
        ManifestReference.digest == bindparam("digest"),
    )
    .limit(1)
)
_RESOLVED_TAG = (
    select(PullEvent.tag)
    .where(
        PullEvent.client == bindparam("client"),
        PullEvent.image_id == bindparam("image_id"),
        PullEvent.kind == HEAD_BY_TAG,
        PullEvent.digest == bindparam("digest"),
        PullEvent.at >= bindparam("since"),
        PullEvent.at <= bindparam("at"),
    )
    .order_by(PullEvent.at.desc())
    .limit(1)
)


def _flush(
    conn: Connection, by_tag: Counter[tuple[str, str, str]], events: list[PullEventRecord]
) -> None:
    image_ids: dict[ImageKey, int | None] = {}

    def image_id(registry: str, image: str) -> int | None:
        if (registry, image) not in image_ids:
            image_ids[(registry, image)] = conn.scalar(
                _IMAGE_ID, {"registry": registry, "image": image}
            )
        return image_ids[(registry, image)]

    # The lock order of db/database.py: the images first, by id, then their tags, by name.
    # (Tags first, as this was, deadlocked with a push, which holds the image and then
    # writes the tag.)
    image_totals: Counter[int] = Counter()
    tag_totals: Counter[tuple[int, str]] = Counter()
    for (registry, image, tag), n in by_tag.items():
        found = image_id(registry, image)
        if found is not None:
            image_totals[found] += n
            tag_totals[(found, tag)] += n
    for e in events:
        image_id(e.registry, e.image)
    locked = locks.images(conn, [found for found in image_ids.values() if found is not None])
    for key, found in image_ids.items():  # an image deleted meanwhile counts nothing more
        if found not in locked:
            image_ids[key] = None
    image_totals = Counter({found: n for found, n in image_totals.items() if found in locked})
    tag_totals = Counter({key: n for key, n in tag_totals.items() if key[0] in locked})
    for found, n in sorted(image_totals.items()):
        conn.execute(_ADD_TO_IMAGE, {"which_image": found, "n": n})
    for (found, tag), n in sorted(tag_totals.items()):
        conn.execute(_ADD_TO_TAG, {"which_image": found, "which_tag": tag, "n": n, "now": utcnow()})
    rows = [
        {
            "at": e.at,
            "client": e.client,
            "image_id": image_id(e.registry, e.image),
            "kind": e.kind,
            "tag": e.tag,
            "digest": e.digest,
            "processed": e.counted,
        }
        for e in events
    ]
    rows = [row for row in rows if row["image_id"] is not None]
    if rows:
        conn.execute(PullEvent.__table__.insert(), rows)


def _count(conn: Connection, settled_before: float) -> None:
    """A GET by digest counts on its image, and on the tag the same client resolved it
    through a HEAD in the previous 60 s, unless it is a child of an index that client
    fetched in the previous 60 s (then it is part of that pull).

    The images are locked first, by id (the lock order of db/database.py), and only then
    their events (an image's deletion holds the image and then deletes its events)."""
    params = {"settled_before": settled_before}
    if conn.dialect.name == "postgresql":
        images = sorted(locks.images(conn, conn.scalars(_PENDING_IMAGES, params).all()))
        pending = _PENDING.where(PullEvent.image_id.in_(images))
        events = conn.execute(pending, params).all() if images else []
    else:
        events = conn.execute(_PENDING, params).all()
    image_counts: Counter[int] = Counter()
    tag_counts: Counter[tuple[int, str]] = Counter()
    for event_id, at, client, image_id, digest in events:
        window = {
            "client": client,
            "image_id": image_id,
            "digest": digest,
            "at": at,
            "since": at - ATTRIBUTION_WINDOW_SECONDS,
        }
        if conn.scalar(_INDEX_FETCHED, {**window, "event_id": event_id}) is not None:
            continue
        image_counts[image_id] += 1
        tag = conn.scalar(_RESOLVED_TAG, window)
        if tag is not None:
            tag_counts[(image_id, tag)] += 1
    if events:
        conn.execute(
            update(PullEvent)
            .where(PullEvent.id.in_([row[0] for row in events]))
            .values(processed=True)
        )
    for image_id, n in sorted(image_counts.items()):
        conn.execute(_ADD_TO_IMAGE, {"which_image": image_id, "n": n})
    for (image_id, tag), n in sorted(tag_counts.items()):
        conn.execute(
            _ADD_TO_TAG, {"which_image": image_id, "which_tag": tag, "n": n, "now": utcnow()}
        )


async def refresh_registry_counts(db: Database, *, older_than_seconds: float) -> int:
    """Recompute registry pull counts (the sum over their images) where the last refresh is
    older than the interval. Every worker may call this; the first one does the work."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    stale = or_(
        Registry.pull_count_refreshed_at.is_(None), Registry.pull_count_refreshed_at < cutoff
    )
    async with db.read() as conn:  # nothing due: no write transaction (idle means idle)
        if await conn.scalar(select(Registry.id).where(stale).limit(1)) is None:
            return 0
    total = (
        select(func.coalesce(func.sum(Image.pull_count), 0).cast(BigInteger))
        .where(Image.registry_id == Registry.id)
        .scalar_subquery()
    )

    def refresh(conn: Connection) -> int:
        # The lock order of db/database.py: the registries by id, before the UPDATE takes
        # them in whatever order its plan reads them.
        locks.registries(conn, conn.scalars(select(Registry.id).where(stale)).all())
        now = utcnow()
        done = conn.execute(
            update(Registry).where(stale).values(pull_count=total, pull_count_refreshed_at=now)
        )
        return done.rowcount or 0

    return await db.transaction(refresh)
