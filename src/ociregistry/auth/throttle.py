"""Slowing and then refusing repeated failed sign-ins: per account, and per client address
only when that address fails across many accounts.

Why two thresholds: blocking an address after a few failures by *any* account locks every
user behind it out, the admin with the right password included (everyone on one machine, or
behind one proxy, shares 127.0.0.1). So an account is blocked after `max_failures` failures
(wherever they come from), each further block of the same account twice as long as the one
before; and an address is blocked only after `ADDRESS_FACTOR` times as many failures, which
an attacker reaches only by guessing across many accounts, since the attempts on a blocked
account are refused without being counted. A correct password of an account that is not
blocked, from an address that is not blocked, always gets in.

The counters live in the database, so every worker and instance sees the same ones. Keys for
accounts that do not exist are counted exactly like those that do, which keeps the two
indistinguishable. An admin clears an account's block with `unlock`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select

from ociregistry.auth.models import LoginFailure
from ociregistry.db.database import Database
from ociregistry.db.models import as_utc, utcnow
from ociregistry.db.sql import dialect_insert
from ociregistry.ops.metrics import SIGNIN_FAILURES

DEFAULT_MAX_FAILURES = 10
DEFAULT_BLOCK_SECONDS = 300
ADDRESS_FACTOR = 10  # an address is blocked after this many times an account's threshold
MAX_BACKOFF_DOUBLINGS = 6  # a block grows to at most 64 times login_block_seconds
WINDOW = timedelta(minutes=15)
SLOW_STEP_SECONDS = 0.25
SLOW_MAX_SECONDS = 2.0


def account_key(username: str) -> str:
    return f"user:{username.lower()[:100]}"


def address_key(address: str) -> str:
    return f"addr:{address}"


@dataclass(frozen=True, slots=True)
class Verdict:
    retry_after: int | None  # seconds; None when the attempt may go ahead
    delay: float  # seconds to wait before answering
    failures: int  # recent failures on record for the account


# Built once: every sign-in (each `GET /auth/token` with Basic credentials) reads it.
_FAILURES_OF = select(
    LoginFailure.key,
    LoginFailure.failures,
    LoginFailure.window_start,
    LoginFailure.blocked_until,
).where(LoginFailure.key.in_([bindparam("account"), bindparam("address")]))


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

    def _threshold(self, key: str) -> int:
        if key.startswith("addr:"):
            return self.max_failures * ADDRESS_FACTOR
        return self.max_failures

    async def check(self, account: str, address: str) -> Verdict:
        """May a sign-in of `account` from `address` go ahead, and after how long a pause."""
        now = utcnow()
        params = {"account": account, "address": address}
        # Nearly every sign-in finds no failure on record: the driver's own answer (a few
        # µs, where SQLAlchemy takes tens) says so. Rows, when there are any, are read again
        # through SQLAlchemy, which gives their times as the datetimes below expect.
        if not await self.db.rows(_FAILURES_OF, params):
            return Verdict(None, 0.0, 0)
        async with self.db.read() as conn:
            rows = (await conn.execute(_FAILURES_OF, params)).all()
        retry_after: int | None = None
        delay = 0.0
        account_failures = 0
        for key, count, window_start, blocked_until in rows:
            blocked = as_utc(blocked_until)
            if blocked is not None and blocked > now:
                seconds = int((blocked - now).total_seconds()) + 1
                retry_after = max(retry_after or 0, seconds)
            if not _in_window(as_utc(window_start), blocked, now):
                continue
            if key == account:
                account_failures = count
            slow_after = max(1, self._threshold(key) // 2)  # slowed first, refused later
            if count >= slow_after:
                step = SLOW_STEP_SECONDS * (count - slow_after + 1)
                delay = max(delay, min(SLOW_MAX_SECONDS, step))
        return Verdict(retry_after, delay, account_failures)

    async def wait(self, verdict: Verdict) -> None:
        if verdict.delay:
            await asyncio.sleep(verdict.delay)

    async def failed(self, account: str, address: str) -> None:
        SIGNIN_FAILURES.inc()
        now = utcnow()
        async with self.db.write() as conn:
            for key in (account, address):
                row = (
                    await conn.execute(
                        select(
                            LoginFailure.failures,
                            LoginFailure.window_start,
                            LoginFailure.blocked_until,
                        ).where(LoginFailure.key == key)
                    )
                ).first()
                started = as_utc(row[1]) if row else None
                if row is None or not _in_window(started, as_utc(row[2]), now):
                    count, window_start = 1, now
                else:
                    count, window_start = row[0] + 1, started or now
                threshold = self._threshold(key)
                blocked = None
                if count >= threshold:
                    # Backoff: each failure past the threshold (one per expired block, as a
                    # blocked key's attempts are refused uncounted) doubles the block.
                    doublings = min(MAX_BACKOFF_DOUBLINGS, count - threshold)
                    blocked = now + timedelta(seconds=self.block_seconds * 2**doublings)
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

    async def succeeded(self, account: str) -> None:
        """A correct sign-in clears the account's record (never the address's)."""
        await self.unlock(account)

    async def unlock(self, account: str) -> bool:
        """Clear an account's failures and block; whether there was anything to clear."""
        async with self.db.write() as conn:
            result = await conn.execute(delete(LoginFailure).where(LoginFailure.key == account))
        return bool(result.rowcount)

    async def blocked_until(self, accounts: list[str]) -> dict[str, datetime]:
        """The accounts among `accounts` that are blocked now, and until when."""
        now = utcnow()
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(LoginFailure.key, LoginFailure.blocked_until).where(
                        LoginFailure.key.in_(accounts)
                    )
                )
            ).all()
        found = {key: as_utc(until) for key, until in rows}
        return {key: until for key, until in found.items() if until and until > now}


def _in_window(started: datetime | None, blocked: datetime | None, now: datetime) -> bool:
    """Whether a record still counts: failures within the window, or a block that ended less
    than a window ago (so that the next block of the same account is a longer one)."""
    if started is not None and started > now - WINDOW:
        return True
    return blocked is not None and blocked > now - WINDOW
