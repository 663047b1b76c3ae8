"""The audit log's rows: recording an event (pruning those past `audit_log_retention_days`, at
most once an hour per worker) and listing them. The middleware that records every change is
ops/audit.py."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.sql.elements import ColumnElement

from ociregistry.catalog.listings import Page
from ociregistry.db.database import Database
from ociregistry.db.models import AuditEvent, utcnow
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


class AuditLog:
    def __init__(self, db: Database, *, retention_days: int) -> None:
        self.db = db
        self.retention_days = retention_days
        self._pruned_at = 0.0

    async def record(self, event: AuditRecord) -> None:
        values = {k: v for k, v in asdict(event).items() if k not in ("id", "at")}
        async with self.db.write() as conn:
            await conn.execute(AuditEvent.__table__.insert().values(at=utcnow(), **values))
            if self.retention_days > 0 and time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
                self._pruned_at = time.monotonic()
                cutoff = utcnow() - timedelta(days=self.retention_days)
                await conn.execute(delete(AuditEvent).where(AuditEvent.at < cutoff))

    async def list(
        self,
        *,
        where: ColumnElement[bool],
        filters: dict[str, str],
        q: str | None,
        order: list[Any],
        page: Page,
    ) -> tuple[list[AuditRecord], int]:
        """Events matching `where` (the policy's condition for the caller), `filters` (exact
        actor, action, registry, outcome) and `q` (in the target), in `order`."""
        conditions = [where]
        if q:
            conditions.append(AuditEvent.target.like(f"%{escape_like(q)}%", escape="\\"))
        for name, value in filters.items():
            column = AuditEvent.registry_name if name == "registry" else getattr(AuditEvent, name)
            conditions.append(column == value)
        query = select(
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
        ).where(*conditions)
        async with self.db.read(offload=True) as conn:
            total = await conn.scalar(select(func.count()).select_from(query.subquery()))
            rows = (
                await conn.execute(
                    query.order_by(*order, AuditEvent.id.desc())
                    .offset(page.offset)
                    .limit(page.size)
                )
            ).all()
        return [AuditRecord(*row) for row in rows], total or 0
