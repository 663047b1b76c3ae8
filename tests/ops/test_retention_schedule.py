"""A retention schedule makes and applies its plan once, on one instance, under the job lease:
two instances of two workers each share one PostgreSQL database and look for due schedules
every second; the registry ends with exactly one scheduled plan, applied, and the job's runs
never overlap (each run is a row of `job_runs`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx

from support.oci import make_image, push_image
from support.pgcluster import URL_ENV, PostgresCluster
from support.server import RunningServer
from support.waiting import wait_for

SHORT = {"OCIREGISTRY_JOB_LEASE_SECONDS": "3", "OCIREGISTRY_RETENTION_CHECK_SECONDS": "1"}
WAIT_SECONDS = 120  # a bound on waiting, never an assertion on speed


def _retention_runs(postgres: PostgresCluster) -> list[tuple[float, float | None, str]]:
    out = postgres.tool(
        "psql", "-d", "retention", "-At", "-F", "|", "-c",
        "SELECT extract(epoch from started_at), extract(epoch from finished_at), holder"
        " FROM job_runs WHERE name = 'retention' ORDER BY started_at",
    )  # fmt: skip
    runs = []
    for line in out.splitlines():
        started, finished, holder = line.split("|")
        runs.append((float(started), float(finished) if finished else None, holder))
    return runs


def test_a_schedule_runs_once_across_two_instances(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    env = {URL_ENV: postgres.create_database("retention"), **SHORT}
    first = RunningServer(tmp_path / "a", workers=2, env=env).start()
    second = RunningServer(tmp_path / "b", workers=2, env=env).start()
    try:
        with httpx.Client(base_url=first.url, auth=first.admin, timeout=60) as client:
            assert client.post("/api/v1/registries", json={"name": "sched"}).status_code == 201
            for i in range(4):
                push_image(client, "sched/app", make_image(f"sched-{i}"), f"1.{i}")
            policy = {
                "rules": [{"keep": "latest_pushed", "count": 1}],
                "schedule": {"every_hours": 24},
            }
            assert client.put("/api/v1/registries/sched/retention", json=policy).status_code == 200

            def plans() -> list[dict]:
                return client.get("/api/v1/registries/sched/retention/plans").json()["items"]

            wait_for(
                lambda: any(p["status"] == "applied" for p in plans()),
                "a scheduled plan",
                WAIT_SECONDS,
                every=0.5,
            )
            # Many more looks at the schedule, on both instances' workers: none is due.
            seen = len(_retention_runs(postgres))
            wait_for(
                lambda: len(_retention_runs(postgres)) >= seen + 8,
                "eight more looks",
                WAIT_SECONDS,
                every=0.5,
            )
            (plan,) = plans()
            assert (plan["trigger"], plan["status"]) == ("schedule", "applied")
            assert plan["created_by"] == "retention-schedule"
            assert plan["result"]["tags_deleted"] == 3
            tags = client.get("/api/v1/registries/sched/images/app/-/tags").json()["items"]
            assert [t["name"] for t in tags] == ["1.3"]
            events = client.get("/api/v1/audit-log", params={"action": "retention.apply"}).json()[
                "items"
            ]
            assert [(e["actor"], e["detail"]["plan"]) for e in events] == [
                ("retention-schedule", plan["id"])
            ]
        runs = _retention_runs(postgres)
        assert len({holder for _, _, holder in runs}) >= 1
        for before, after in itertools.pairwise(runs):
            assert before[1] is not None and after[0] >= before[1], (before, after)
    finally:
        first.stop()
        second.stop()
