"""The audit log's rows: recording events and listing them. The middleware that records every
change is ops/audit.py.

Events are written by group commit: a request hands its event over and waits until it is
committed, while one writer per process puts every event that arrived meanwhile into one
transaction. So however many audited requests arrive at once (a client deleting in a loop, a
flood of failed sign-ins), a process has at most one audit transaction under way and never
queues one write per request behind the pushes' writes (each a turn of SQLite's one write
lock, each an fsync). Rows older than `audit_log_retention_days` go in that same transaction,
at most once an hour per process. Code that writes a change in a transaction of its own (a
retention run) can put its events in that transaction with `write_events`."""

from __future__ import annotations

import asyncio
import string
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Integer, String, and_, column, delete, select, table, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ociregistry.catalog.listings import (
    MERGE_LIMIT,
    Key,
    KeysetOrder,
    Page,
    Total,
    keyset_fetch,
    keyset_order,
    keyset_ranges,
    search_total,
    searched_first,
)
from ociregistry.db.database import Database
from ociregistry.db.models import AuditEvent, Registry, utcnow
from ociregistry.db.sql import escape_like

PRUNE_EVERY_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class AuditRecord:
    actor: str | None
    client: str
    request_id: str | None
    action: str
    method: str
    target: str
    registry: str | None
    status: int
    outcome: str
    detail: dict[str, Any] | None = None
    at: datetime | None = None
    id: int | None = None


AUDIT_SORTS = {"at": AuditEvent.at}


def _row(event: AuditRecord, at: datetime) -> dict[str, Any]:
    values = {k: v for k, v in asdict(event).items() if k not in ("id", "at")}
    return {"at": event.at or at, **values}


def write_events(
    conn: Connection, events: Sequence[AuditRecord], *, prune_before: datetime | None = None
) -> None:
    """Insert `events` in the caller's transaction (one statement), and drop the rows older
    than `prune_before` if given."""
    if events:
        now = utcnow()
        conn.execute(AuditEvent.__table__.insert(), [_row(event, now) for event in events])
    if prune_before is not None:
        conn.execute(delete(AuditEvent).where(AuditEvent.at < prune_before))


class AuditLog:
    def __init__(self, db: Database, *, retention_days: int) -> None:
        self.db = db
        self.retention_days = retention_days
        # None: not yet (the first write prunes; monotonic time counts from the boot, so a
        # start within PRUNE_EVERY_SECONDS of it would otherwise not prune for that long)
        self._pruned_at: float | None = None
        self._pending: list[AuditRecord] = []
        self._batch: asyncio.Future[None] | None = None  # the commit `_pending` will share
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event: AuditRecord) -> None:
        """Record one event; returns once it is committed (with the others that arrived
        meanwhile). A failed write raises here, for every event of its batch."""
        if event.at is None:
            event = AuditRecord(**{**asdict(event), "at": utcnow()})
        self._pending.append(event)
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        batch = self._batch
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        # Shielded: a waiter that is cancelled must not cancel the commit the others share.
        await asyncio.shield(batch)

    async def flush(self) -> None:
        """Wait for the events handed over so far to be written (a clean shutdown)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    def _prune_before(self) -> datetime | None:
        if self.retention_days <= 0:
            return None
        if self._pruned_at is not None and time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return None
        self._pruned_at = time.monotonic()
        return utcnow() - timedelta(days=self.retention_days)

    async def _write_batches(self) -> None:
        while self._pending:
            events, self._pending = self._pending, []
            batch, self._batch = self._batch, None
            assert batch is not None
            work = partial(write_events, events=events, prune_before=self._prune_before())
            try:
                await self.db.transaction(lambda conn, work=work: work(conn))
            except Exception as error:
                batch.set_exception(error)
                batch.exception()  # retrieved: each waiter gets it, none may be left
            else:
                batch.set_result(None)

    async def page(
        self,
        *,
        registries: ColumnElement[bool] | None,
        filters: dict[str, str],
        q: str | None,
        sort: str | None,
        page: Page,
    ) -> tuple[list[AuditRecord], Total, Key | None]:
        """Events of the registries matching `registries` (None: every event; the policy
        decides which the caller sees), matching `filters` (exact actor, action, registry,
        outcome) and `q` (from a word of the target: `target_words`), newest first unless
        `sort` says `at`: a range of the index of the filter's column, the time and the id
        (migration 0017), after the page's key (for a few registries, each one's range,
        merged); their number counted up to SEARCH_COUNT_LIMIT; the key of the last row
        when more follow."""
        names: list[str] | None = None
        if registries is not None:
            async with self.db.read() as conn:
                names = list((await conn.scalars(select(Registry.name).where(registries))).all())
        conditions: list[ColumnElement[bool]] = []
        if names is not None:
            conditions.append(AuditEvent.registry_name.in_(names))
        for name, value in filters.items():
            column = AuditEvent.registry_name if name == "registry" else getattr(AuditEvent, name)
            conditions.append(column == value)
        chosen = select(AuditEvent.id).where(*conditions)
        order = keyset_order(sort, AUDIT_SORTS, "-at", AuditEvent.id)
        listed = conditions
        url = self.db.url
        if q:
            named = target_words(q)
            if named is None:  # no word in `q`, only separators: a scan (migration 0021)
                named = AuditEvent.target.like(f"%{escape_like(q)}%", escape="\\")
            chosen = searched_first(url, chosen.where(named), AuditEvent.id)
            listed = [AuditEvent.id.in_(chosen)]
        elif names is not None and 1 < len(names) <= MERGE_LIMIT:
            listed = [_best_of_each(names, conditions[1:], order, page)]
        async with self.db.read(offload=True) as conn:
            total, matches = await search_total(conn, url, chosen, AuditEvent.id, q)
            if matches is not None:  # the search's matches, all of them: sort only those
                listed = [matches]
            query = select(*_EVENT_COLUMNS).where(*listed)
            rows, following = await keyset_fetch(conn, query, order, page)
        return [AuditRecord(*row) for row in rows], total, following


# The tails of each event's target that start a word, first TAIL characters, ASCII folded to
# lower case (migration 0019, kept by triggers on audit_log).
_TAILS = table("audit_target_tails", column("tail", String), column("event_id", Integer))
TAIL = 64
_SEPARATORS = "".join(chr(c) for c in range(128) if not chr(c).isalnum())
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LAST_CHARACTER = "\U0010ffff"  # after every character a tail may hold next


def target_words(q: str) -> ColumnElement[bool] | None:
    """Events whose target holds `q` from the start of a word (a letter, a digit or a
    non-ASCII character after the start or an ASCII separator: `/`, `-`, `.`, `:`, `_`,
    `@`…), as the console's search of target paths means it (`team-a/app`, `app:1.0`,
    `sha256:12ab`, `/v2/team-a`); None when `q` holds no word. One range of the B-tree of
    the targets' tails that start a word (migration 0019): its length is the number of
    matches, where a trigram index of the targets read posting lists as long as a part of
    the whole log (every target shares `/ap`, `api`, `/v1`, `reg`…). Separators before the
    first word of `q` are matched in the target, not looked up (a separator precedes every
    word), and LIKE checks the whole of `q` (the index holds TAIL characters of a tail)."""
    words = q.lstrip(_SEPARATORS)
    if not words:
        return None
    low = words[:TAIL].translate(_ASCII_LOWER)
    tails = select(_TAILS.c.event_id).where(
        _TAILS.c.tail >= low, _TAILS.c.tail < low + _LAST_CHARACTER
    )
    # `|| ''`: checked on the events found, never a way to find them
    held = (AuditEvent.target + "").like(f"%{escape_like(q)}%", escape="\\")
    return and_(AuditEvent.id.in_(tails), held)


_EVENT_COLUMNS = (  # an AuditRecord's
    AuditEvent.actor,
    AuditEvent.client,
    AuditEvent.request_id,
    AuditEvent.action,
    AuditEvent.method,
    AuditEvent.target,
    AuditEvent.registry_name,
    AuditEvent.status,
    AuditEvent.outcome,
    AuditEvent.detail,
    AuditEvent.at,
    AuditEvent.id,
)


def _best_of_each(
    registries: list[str], conditions: list[ColumnElement[bool]], order: KeysetOrder, page: Page
) -> ColumnElement[bool]:
    """The events of a page of several registries' events are among the first of each
    registry's own range (of the index (registry, time, id)) after the page's key: those
    few ids, not every event of those registries sorted."""
    ranged = [*conditions, *keyset_ranges(order, page.after)]
    best = page.offset + page.size + 1
    parts = [
        select(AuditEvent.id)
        .where(AuditEvent.registry_name == name, *ranged)
        .order_by(*order.order)
        .limit(best)
        .subquery()
        for name in registries
    ]
    return AuditEvent.id.in_(union_all(*(select(part.c.id) for part in parts)))
