"""Slowing and then refusing repeated failed sign-ins, per account and per client address.

The counters live in the database, so every worker and instance sees the same ones. Keys for
accounts that do not exist are counted exactly like those that do, which keeps the two
indistinguishable.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from ociregistry.auth.models import LoginFailure
from ociregistry.catalog.database import Database
from ociregistry.catalog.models import as_utc, utcnow
from ociregistry.catalog.sql import dialect_insert
from ociregistry.ops.metrics import SIGNIN_FAILURES

DEFAULT_MAX_FAILURES = 10
DEFAULT_BLOCK_SECONDS = 300
WINDOW = timedelta(minutes=15)
SLOW_STEP_SECONDS = 0.25
SLOW_MAX_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Verdict:
    retry_after: int | None  # seconds; None when the attempt may go ahead
    delay: float  # seconds to wait before answering
    failures: int  # recent failures on record for these keys


class LoginThrottle:
    def __init__(
        self,
        db: Database,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        block_seconds: int = DEFAULT_BLOCK_SECONDS,
    ) -> None:
        self.db = db
        self.max_failures = max_failures
        self.block_seconds = block_seconds

    async def check(self, keys: list[str]) -> Verdict:
        now = utcnow()
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        LoginFailure.failures,
                        LoginFailure.window_start,
                        LoginFailure.blocked_until,
                    ).where(LoginFailure.key.in_(keys))
                )
            ).all()
        retry_after: int | None = None
        failures = 0
        for count, window_start, blocked_until in rows:
            blocked = as_utc(blocked_until)
            if blocked is not None and blocked > now:
                seconds = int((blocked - now).total_seconds()) + 1
                retry_after = max(retry_after or 0, seconds)
            started = as_utc(window_start)
            if started is not None and started > now - WINDOW:
                failures = max(failures, count)
        delay = 0.0
        slow_after = max(1, self.max_failures // 2)  # slowed first, refused later
        if failures >= slow_after:
            delay = min(SLOW_MAX_SECONDS, SLOW_STEP_SECONDS * (failures - slow_after + 1))
        return Verdict(retry_after, delay, failures)

    async def wait(self, verdict: Verdict) -> None:
        if verdict.delay:
            await asyncio.sleep(verdict.delay)

    async def failed(self, keys: list[str]) -> None:
        SIGNIN_FAILURES.inc()
        now = utcnow()
        async with self.db.write() as conn:
            for key in keys:
                row = (
                    await conn.execute(
                        select(LoginFailure.failures, LoginFailure.window_start).where(
                            LoginFailure.key == key
                        )
                    )
                ).first()
                started = as_utc(row[1]) if row else None
                if row is None or started is None or started <= now - WINDOW:
                    count, window_start = 1, now
                else:
                    count, window_start = row[0] + 1, started
                blocked = (
                    now + timedelta(seconds=self.block_seconds)
                    if count >= self.max_failures
                    else None
                )
                upsert = dialect_insert(conn, LoginFailure.__table__).values(
                    key=key, failures=count, window_start=window_start, blocked_until=blocked
                )
                await conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["key"],
                        set_={
                            "failures": count,
                            "window_start": window_start,
                            "blocked_until": blocked,
                        },
                    )
                )

    async def succeeded(self, keys: list[str]) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys)))
