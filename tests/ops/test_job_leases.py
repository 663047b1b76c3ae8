"""Background jobs under a lease: two instances on one PostgreSQL never run the same job at
once, a clean stop releases the leases, and the leases of an instance killed with SIGKILL are
taken over by the other once they expire.

Every job run is a row in `job_runs` (holder, start, end); the test reads them with psql.
Intervals and the lease are made short so that a few seconds show many runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from support.pgcluster import URL_ENV, PostgresCluster
from support.server import RunningServer
from support.waiting import wait_for

JOBS = {
    "upload-purge",
    "pull-count-refresh",
    "registry-deletions",
    "garbage-collection",
    "retention",
}
LEASE_SECONDS = 3
SHORT = {
    "OCIREGISTRY_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    "OCIREGISTRY_GC_INTERVAL_SECONDS": "1",
    "OCIREGISTRY_REGISTRY_COUNT_REFRESH_SECONDS": "1",
    "OCIREGISTRY_UPLOAD_PURGE_INTERVAL_SECONDS": "1",
    "OCIREGISTRY_RETENTION_CHECK_SECONDS": "1",
}
WAIT_SECONDS = 90  # a bound on waiting for runs, never an assertion on speed


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    holder: str
    started: datetime
    finished: datetime | None
    outcome: str

    @property
    def pid(self) -> int:
        return int(self.holder.split(":")[-2])


def _runs(postgres: PostgresCluster) -> list[Run]:
    out = postgres.tool(
        "psql", "-d", "leases", "-At", "-F", "|", "-c",
        "SELECT id, name, holder, extract(epoch from started_at),"
        " extract(epoch from finished_at), outcome FROM job_runs ORDER BY id",
    )  # fmt: skip
    runs = []
    for line in out.splitlines():
        id_, name, holder, started, finished, outcome = line.split("|")
        runs.append(
            Run(
                int(id_), name, holder,
                datetime.fromtimestamp(float(started), UTC),
                datetime.fromtimestamp(float(finished), UTC) if finished else None,
                outcome,
            )
        )  # fmt: skip
    return runs


def _leases(postgres: PostgresCluster) -> dict[str, tuple[str, float]]:
    out = postgres.tool(
        "psql", "-d", "leases", "-At", "-F", "|", "-c",
        "SELECT name, holder, extract(epoch from expires) - extract(epoch from now())"
        " FROM job_leases",
    )  # fmt: skip
    return {
        name: (holder, float(left))
        for name, holder, left in (line.split("|") for line in out.splitlines())
    }


def _assert_no_overlap(runs: list[Run], dead: frozenset[int] | set[int] = frozenset()) -> None:
    """Per job, each run starts after the one before it ended. A run cut short by SIGKILL has
    no end; the next may start only after its lease expired, which the takeover check shows."""
    for name in JOBS:
        ordered = sorted((r for r in runs if r.name == name), key=lambda r: r.started)
        for before, after in itertools.pairwise(ordered):
            if before.finished is None:
                assert before.pid in dead, f"{name}: run {before} never ended"
                continue
            assert after.started >= before.finished, f"{name} ran twice at once: {before} {after}"


def test_two_instances_never_run_a_job_at_once_and_a_killed_ones_leases_move(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    env = {URL_ENV: postgres.create_database("leases"), **SHORT}
    first = RunningServer(tmp_path / "a", workers=2, env=env).start()
    second = RunningServer(tmp_path / "b", workers=2, env=env).start()
    try:

        def each_job_ran(times: int) -> bool:
            runs = [r for r in _runs(postgres) if r.finished is not None]
            return all(sum(r.name == name for r in runs) >= times for name in JOBS)

        wait_for(lambda: each_job_ran(4), "four runs of every job", WAIT_SECONDS, every=0.5)
        _assert_no_overlap(_runs(postgres))

        # Kill the instance that holds the pull-count refresh; its leases must move.
        holder, _ = _leases(postgres)["pull-count-refresh"]
        victim, survivor = (
            (first, second) if int(holder.split(":")[-2]) in first.pids() else (second, first)
        )
        victim_pids = set(victim.pids())
        held_by_victim = {
            name for name, (who, _) in _leases(postgres).items()
            if int(who.split(":")[-2]) in victim_pids
        }  # fmt: skip
        assert "pull-count-refresh" in held_by_victim
        last_id = max(r.id for r in _runs(postgres))
        victim.kill()

        def taken_over() -> bool:
            later = [r for r in _runs(postgres) if r.id > last_id and r.finished is not None]
            return all(
                any(r.name == name and r.pid not in victim_pids for r in later)
                for name in held_by_victim
            )

        wait_for(taken_over, f"the survivor to take over {held_by_victim}", WAIT_SECONDS, every=0.5)
        runs = _runs(postgres)
        _assert_no_overlap(runs, dead=victim_pids)
        for name in held_by_victim:
            after_kill = [r for r in runs if r.name == name and r.id > last_id]
            # (by pid, not survivor.pids(): uvicorn may replace an unresponsive worker)
            assert all(r.pid not in victim_pids for r in after_kill), after_kill
        leases = _leases(postgres)
        assert all(int(who.split(":")[-2]) not in victim_pids for who, _ in leases.values()), leases

        # A clean stop gives every lease back at once, without waiting for it to expire.
        survivor.stop()
        leases = _leases(postgres)
        assert leases and all(left < 0 for _, left in leases.values()), leases
    finally:
        first.kill()
        second.kill()
