"""A retention apply survives a crash (issue 14, point 3): a server process killed with SIGKILL
mid-apply leaves its plan `applying`; the restarted server's background job, under its lease,
takes the plan over once its heartbeat is older than the lease and finishes it from where its
progress says, counting what was deleted before the crash too. While an apply runs, a second
apply of the same plan is refused with 409 saying so. On SQLite and on PostgreSQL.

The server pauses after each batch of an apply (`OCIREGISTRY_TEST_RETENTION_BATCH_PAUSE`, a
test hook), so that the kill lands mid-apply every time, not by luck."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.oci import make_image, push_image
from support.pgcluster import URL_ENV
from support.server import RunningServer
from support.waiting import wait_for

TAGS = 120  # three batches of APPLY_BATCH (50)
WAIT_SECONDS = 180  # a bound on waiting, never an assertion on speed
PAUSED = {
    "OCIREGISTRY_TEST_RETENTION_BATCH_PAUSE": "2",
    "OCIREGISTRY_JOB_LEASE_SECONDS": "6",
    "OCIREGISTRY_RETENTION_CHECK_SECONDS": "0",  # only the API applies, until the crash
}
RESUMING = {"OCIREGISTRY_JOB_LEASE_SECONDS": "3", "OCIREGISTRY_RETENTION_CHECK_SECONDS": "1"}


@pytest.fixture
def database_env(database_url: str) -> dict[str, str]:
    """The server's database: SQLite in its data folder, or a PostgreSQL database of its own
    (the heartbeat's compare-and-set compares timestamps as each database stores them)."""
    return {URL_ENV: database_url} if database_url else {}


def test_an_apply_killed_midway_is_finished_after_the_restart(
    tmp_path: Path, database_env: dict[str, str]
) -> None:
    server = RunningServer(tmp_path / "data", env={**PAUSED, **database_env}).start()
    plans = "/api/v1/registries/crash/retention/plans"
    try:
        with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as client:
            assert client.post("/api/v1/registries", json={"name": "crash"}).status_code == 201
            image = make_image("crash")
            digest = push_image(client, "crash/app", image, "keep")
            # Every other tag on the same manifest, in one PUT (?tag= may repeat).
            names = [f"t{i:03d}" for i in range(TAGS)]
            tagged = client.put(
                f"/v2/crash/app/manifests/{digest}",
                params=[("tag", name) for name in names],
                content=image.manifest,
                headers={"Content-Type": image.media_type},
            )
            assert tagged.status_code == 201, tagged.text
            policy = {"rules": [{"keep": "always", "tags": ["keep"]}]}
            assert client.put("/api/v1/registries/crash/retention", json=policy).status_code == 200
            plan = client.post(plans).json()
            assert plan["summary"]["tags_deleted"] == TAGS, plan["summary"]

            applying = threading.Thread(
                target=lambda: _ignore_errors(lambda: client.post(f"{plans}/{plan['id']}:apply")),
                daemon=True,
            )
            applying.start()

            def first_batch_done() -> dict[str, Any] | None:
                shown = client.get(f"{plans}/{plan['id']}").json()
                return shown if (shown["result"] or {}).get("items_done", 0) >= 50 else None

            shown = wait_for(first_batch_done, "the first batch of the apply", WAIT_SECONDS)
            assert shown["status"] == "applying"
            assert shown["result"]["tags_deleted"] == 50  # the first batch, committed
            # A second apply while the first runs: refused, saying so, changing nothing.
            again = client.post(f"{plans}/{plan['id']}:apply")
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "PLAN_ALREADY_APPLIED"
            assert "is being applied" in again.json()["error"]["message"]
        server.kill()
        applying.join(timeout=60)

        server.env.update(RESUMING)
        server.start()
        with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as client:

            def finished() -> dict[str, Any] | None:
                shown = client.get(f"{plans}/{plan['id']}").json()
                return shown if shown["status"] == "applied" else None

            done = wait_for(finished, "the interrupted apply to be finished", WAIT_SECONDS)
            assert done["result"]["resumed"] is True
            assert done["result"]["tags_deleted"] == TAGS  # before the crash and after
            assert done["result"]["kept"] == []
            outcomes = {t["name"]: t.get("outcome") for i in done["items"] for t in i["tags"]}
            assert outcomes == {"keep": None, **dict.fromkeys(names, "deleted")}
            tags = client.get("/api/v1/registries/crash/images/app/-/tags").json()["items"]
            assert [tag["name"] for tag in tags] == ["keep"]
            events = client.get(
                "/api/v1/audit-log", params={"registry": "crash", "action": "retention.apply"}
            ).json()["items"]
            assert any(
                e["actor"] == "retention-schedule" and (e["detail"] or {}).get("resumed")
                for e in events
            ), events
            # Applied means applied: a new apply is refused as before the crash.
            again = client.post(f"{plans}/{plan['id']}:apply")
            assert again.status_code == 409
            assert "was applied already" in again.json()["error"]["message"]
    finally:
        server.stop()


def _ignore_errors(call: Callable[[], Any]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server was killed under the request
        call()
