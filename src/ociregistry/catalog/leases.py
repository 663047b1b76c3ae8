"""Background jobs under a lease: one instance at a time runs each job.

Every worker of every instance runs the same background loops (garbage collection, upload
purge, pull-count refresh, registry deletions), but a job runs only where its lease row in
`job_leases` is held. A worker takes the lease by compare-and-set: one UPDATE that succeeds
only when the lease is free, expired, or already its own, so two instances can never both
believe they hold it. While a job runs, its holder renews the lease every third of its length;
a holder that fails to renew (the database said someone else has it) stops the job. A clean
stop releases the lease at once; an instance killed with SIGKILL keeps it until it expires,
then any other takes it over. Each run is written to `job_runs` (holder, start, end, outcome),
so operators can see where and when a job last ran.

Holders compare their own clocks with the stored expiry, so instances' clocks must agree to well
within a lease (NTP does that); the lease is long next to any skew NTP leaves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ociregistry.db.database import Database
from ociregistry.db.models import JobLease, JobRun, utcnow

log = logging.getLogger("ociregistry.jobs")

RUN_HISTORY = timedelta(days=7)  # job_runs rows older than this are pruned


def new_holder() -> str:
    """This worker's name as a lease holder: host, process and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases:
    """Take, renew and release the lease rows of one holder."""

    def __init__(self, db: Database, holder: str, seconds: float) -> None:
        self.db = db
        self.holder = holder
        self.seconds = seconds

    async def take(self, name: str) -> bool:
        """Take or renew the lease `name`; True if this holder has it now, for `seconds`."""
        now = utcnow()
        values = {"holder": self.holder, "expires": now + timedelta(seconds=self.seconds)}
        async with self.db.write() as conn:
            taken = await conn.execute(
                update(JobLease)
                .where(
                    JobLease.name == name,
                    or_(JobLease.holder == self.holder, JobLease.expires < now),
                )
                .values(**values)
            )
            if taken.rowcount == 1:
                return True
            held = await conn.scalar(select(JobLease.name).where(JobLease.name == name))
        if held is not None:  # another holder has it: no INSERT bound to fail (and be logged)
            return False
        try:  # the first ever take of this lease: the row does not exist yet
            async with self.db.write() as conn:
                await conn.execute(insert(JobLease).values(name=name, **values))
        except IntegrityError:  # it does (held by another), or another inserted it first
            return False
        return True

    async def release(self, name: str) -> None:
        """Give the lease up now (a clean stop), if this holder has it."""
        async with self.db.write() as conn:
            await conn.execute(
                update(JobLease)
                .where(JobLease.name == name, JobLease.holder == self.holder)
                .values(expires=utcnow() - timedelta(seconds=1))
            )


class LeasedJobs:
    """Runs this worker's background loops; each run of a job happens only under its lease."""

    def __init__(self, db: Database, lease_seconds: float, holder: str | None = None) -> None:
        self.leases = Leases(db, holder or new_holder(), lease_seconds)
        self.db = db
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    @property
    def holder(self) -> str:
        return self.leases.holder

    def start(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        *,
        interval: Callable[[], float],
        first_delay: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Run `work` after `first_delay()`, then every `interval()` seconds, under the lease
        `name`; a run whose lease another holder has is skipped, not queued."""
        self._tasks[name] = asyncio.create_task(self._loop(name, work, interval, first_delay))

    async def stop(self, timeout_seconds: float = 0) -> None:
        """Stop every loop at a safe point, between two runs: a run in progress may finish
        within `timeout_seconds` and is cancelled after that. Then release the leases held."""
        self._stopping.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_seconds or None)
            for task in pending:
                log.warning("a background job did not reach a safe point in time; cancelling it")
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for name in self._tasks:
            try:
                await self.leases.release(name)
            except Exception:  # the database is gone: the lease simply expires
                log.warning("could not release the lease of %s; it will expire", name)
        self._tasks.clear()

    async def _loop(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        interval: Callable[[], float],
        first_delay: Callable[[], float],
    ) -> None:
        if not await self._pause(first_delay()):
            return
        while True:
            try:
                if await self.leases.take(name):
                    await self.run(name, work)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed; will retry", name)
            if not await self._pause(interval()):
                return

    async def _pause(self, seconds: float) -> bool:
        """Sleep `seconds`; False when stopping began meanwhile (the loop then returns)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def run(self, name: str, work: Callable[[], Awaitable[object]]) -> str:
        """One run of `work` while holding the lease `name` (taken already), renewing it as it
        runs; the outcome (ok, failed, lost) is recorded in `job_runs` and returned."""
        async with self.db.write() as conn:
            run_id = (
                await conn.execute(
                    insert(JobRun)
                    .values(name=name, holder=self.holder, started_at=utcnow(), outcome="running")
                    .returning(JobRun.id)
                )
            ).scalar_one()
        job = asyncio.ensure_future(work())
        outcome = "ok"
        try:
            while True:
                done, _ = await asyncio.wait({job}, timeout=self.leases.seconds / 3)
                if done:
                    break
                if not await self.leases.take(name):
                    log.warning("lost the lease of %s to another instance; stopping it", name)
                    job.cancel()
                    outcome = "lost"
                    break
            if outcome == "ok" and job.exception() is not None:
                outcome = "failed"
                log.error("background job %s failed", name, exc_info=job.exception())
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            if outcome == "lost":
                await asyncio.gather(job, return_exceptions=True)
        async with self.db.write() as conn:
            await conn.execute(
                update(JobRun)
                .where(JobRun.id == run_id)
                .values(finished_at=utcnow(), outcome=outcome)
            )
            old = JobRun.started_at < utcnow() - RUN_HISTORY
            await conn.execute(delete(JobRun).where(JobRun.name == name, old))
        return outcome
