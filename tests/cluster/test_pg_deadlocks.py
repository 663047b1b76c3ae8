"""No deadlock between our own transactions on PostgreSQL, under the mix of writes that once
produced them: two server processes on one database push images that share layers into two
registries, move tags, pull (the pull counters flush every 0.2 s), delete manifests, tags and
whole images, all at once.

PostgreSQL logs every deadlock it breaks (`deadlock detected`, with both statements); the
server retries a unit of work that loses one, so a client may never see it: the log is what
proves that the lock order of src/ociregistry/db/ holds. Every request must answer what the
spec says it answers (never 500 or 503), and the figures kept in the same transactions (the
usage counts) must come out exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ociregistry.db.database import DEADLOCK, RETRY_ATTEMPTS, Database, sqlstate
from support.pgcluster import URL_ENV, PostgresCluster
from support.server import RunningServer

T = TypeVar("T")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REGISTRIES = ("dl-a", "dl-b")
IMAGES = ("one", "two")  # few images and tags: every operation contends with the others
TAGS = ("latest", "v1", "v2")
LAYERS = [f"shared layer {n}".encode() * 64 for n in range(6)]
THREADS = 8
ROUNDS = 15  # per thread: the code before the lock order failed with 19 bad answers in 30 rounds
# For conftest's `postgres`: lock waits longer than deadlock_timeout are logged too, evidence of
# who waits on whom.
POSTGRES_SETTINGS = {"log_lock_waits": "on", "deadlock_timeout": "200ms"}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


@pytest.fixture(scope="module")
def pair(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    folder = tmp_path_factory.mktemp("pg-deadlocks")
    env = {URL_ENV: postgres.create_database("stress")}
    a = RunningServer(folder / "data", env=env).start()
    b = RunningServer(folder / "data", env=env)
    b.log_path = folder / "data-b-server.log"
    b.start()
    yield a, b
    a.stop()
    b.stop()


class Stress:
    """The operations of one thread, each request sent to either instance at random; every
    status outside what the spec allows for it is kept, with its body."""

    def __init__(self, clients: tuple[httpx.Client, httpx.Client], seed: int) -> None:
        self.clients = clients
        self.random = random.Random(seed)
        self.seed = seed
        self.statuses: Counter[str] = Counter()
        self.wrong: list[str] = []

    def _call(self, what: str, allowed: set[int], method: str, url: str, **kw: object) -> int:
        response = self.random.choice(self.clients).request(method, url, **kw)  # type: ignore[arg-type]
        self.statuses[f"{what} {response.status_code}"] += 1
        if response.status_code == 400 and what == "manifest push":
            # An image deleted meanwhile took the blob links with it: the spec's answer.
            allowed = {400} if "MANIFEST_BLOB_UNKNOWN" in response.text else allowed
        if response.status_code not in allowed:
            self.wrong.append(f"{what} {method} {url}: {response.status_code} {response.text}")
        return response.status_code

    def push(self, repo: str, tag: str, n: int) -> str:
        config = json.dumps({"os": "linux", "architecture": "amd64", "n": n}).encode()
        layers = self.random.sample(LAYERS, 3)
        for blob in [config, *layers]:
            self._call(
                "blob push", {201}, "POST", f"/v2/{repo}/blobs/uploads/",
                params={"digest": _digest(blob)}, content=blob,
            )  # fmt: skip
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [_descriptor(OCI_LAYER, layer) for layer in layers],
            }
        ).encode()
        self._call(
            "manifest push", {201}, "PUT", f"/v2/{repo}/manifests/{tag}",
            content=manifest, headers={"Content-Type": OCI_MANIFEST},
        )  # fmt: skip
        return _digest(manifest)

    def round(self, n: int) -> None:
        registry = self.random.choice(REGISTRIES)
        image = self.random.choice(IMAGES)
        repo, tag = f"{registry}/{image}", self.random.choice(TAGS)
        digest = self.push(repo, tag, n)
        for _ in range(2):  # pulls by tag: counted by the flush, on tags and images
            url = f"/v2/{repo}/manifests/{self.random.choice(TAGS)}"
            self._call("pull", {200, 404}, "GET", url, headers={"Accept": OCI_MANIFEST})
        self._call("pull by digest", {200, 404}, "GET", f"/v2/{repo}/manifests/{digest}",
                   headers={"Accept": OCI_MANIFEST})  # fmt: skip
        self.push(repo, self.random.choice(TAGS), n + 100_000)  # a tag moves
        choice = self.random.random()
        if choice < 0.45:
            self._call("manifest delete", {202, 404}, "DELETE", f"/v2/{repo}/manifests/{digest}")
        elif choice < 0.8:
            tag = self.random.choice(TAGS)
            self._call("tag delete", {202, 404}, "DELETE", f"/v2/{repo}/manifests/{tag}")
        elif choice < 0.9:
            self._call(
                "image delete", {204, 404}, "DELETE",
                f"/api/v1/registries/{registry}/images/{image}",
            )  # fmt: skip
        else:
            self._call(
                "batch image delete", {200}, "POST",
                f"/api/v1/registries/{registry}/images:batchDelete",
                json={"images": list(IMAGES)},
            )  # fmt: skip

    def run(self) -> None:
        for n in range(ROUNDS):
            self.round(self.seed * 1000 + n)


def _sql(postgres: PostgresCluster, query: str) -> list[str]:
    return postgres.tool("psql", "-d", "stress", "-tAc", query).split()


def test_concurrent_pushes_pulls_and_deletions_never_deadlock(
    postgres: PostgresCluster, pair: tuple[RunningServer, RunningServer], tmp_path: Path
) -> None:
    a, b = pair
    for registry in REGISTRIES:
        a.create_registry(registry)
    start = threading.Barrier(THREADS)
    stresses: list[Stress] = []

    def work(seed: int) -> Stress:
        with (
            httpx.Client(base_url=a.url, auth=a.admin, timeout=120) as on_a,
            httpx.Client(base_url=b.url, auth=b.admin, timeout=120) as on_b,
        ):
            stress = Stress((on_a, on_b), seed)
            start.wait()
            stress.run()
            return stress

    with ThreadPoolExecutor(THREADS) as pool:
        stresses = list(pool.map(work, range(1, THREADS + 1)))

    statuses = sum((s.statuses for s in stresses), Counter())
    wrong = [line for s in stresses for line in s.wrong]
    log = postgres.server_log()
    deadlocks = [line for line in log.splitlines() if "deadlock detected" in line]
    (tmp_path / "postgresql.log").write_text(log)
    assert not wrong, f"{len(wrong)} answers outside the spec, first:\n" + "\n".join(wrong[:5])
    assert statuses["manifest push 201"] >= THREADS * ROUNDS, statuses
    assert not deadlocks, "\n".join(
        line for line in log.splitlines() if "deadlock" in line or "Process " in line
    )[-6000:]

    # Consistent: every tag listed is served, and once everything is deleted no usage is left.
    with httpx.Client(base_url=a.url, auth=a.admin, timeout=60) as client:
        for registry in REGISTRIES:
            for image in IMAGES:
                listed = client.get(f"/v2/{registry}/{image}/tags/list")
                assert listed.status_code in (200, 404), listed.text
                for tag in (listed.json().get("tags") or []) if listed.status_code == 200 else []:
                    got = client.get(
                        f"/v2/{registry}/{image}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
                    )
                    assert got.status_code == 200, (registry, image, tag, got.text)
        exact = _sql(
            postgres,
            "SELECT count(*) FROM images i WHERE size_bytes <> (SELECT coalesce(sum(size), 0) "
            "FROM image_usage u WHERE u.image_id = i.id)",
        )
        assert exact == ["0"], "image sizes differ from their usage rows"
        exact = _sql(
            postgres,
            "SELECT count(*) FROM registries r WHERE size_bytes <> (SELECT coalesce(sum(size), 0) "
            "FROM registry_usage u WHERE u.registry_id = r.id)",
        )
        assert exact == ["0"], "registry sizes differ from their usage rows"
        for registry in REGISTRIES:
            deleted = client.post(
                f"/api/v1/registries/{registry}/images:batchDelete", json={"images": list(IMAGES)}
            )
            assert deleted.status_code == 200, deleted.text
    left = _sql(
        postgres,
        "SELECT (SELECT count(*) FROM image_usage) + (SELECT count(*) FROM registry_usage) "
        "+ (SELECT count(*) FROM blob_usage WHERE refs > 0) "
        "+ (SELECT count(*) FROM registries WHERE size_bytes <> 0)",
    )
    assert left == ["0"], "usage left behind after every image was deleted"


# -- the retry: `Database.transaction(work)` runs a unit killed in a deadlock again ----------


def _run(url: str, work: Callable[[Connection], T]) -> T:
    """`work` through `Database.transaction`, on a Database and event loop of its own."""

    async def main() -> T:
        db = Database(url)
        try:
            return await db.transaction(work)
        finally:
            await db.dispose()

    return asyncio.run(main())


def test_a_unit_of_work_lost_in_a_deadlock_runs_again_and_commits_once(
    postgres: PostgresCluster,
) -> None:
    """Two units take two rows in opposite orders, each waiting until the other holds its
    first row: a deadlock every time. PostgreSQL kills one; that one runs again from the
    start, after the other committed, and both changes are there exactly once."""
    url = postgres.create_database("retry")
    postgres.tool("psql", "-d", "retry", "-c",
                  "CREATE TABLE counters (id int PRIMARY KEY, n int); "
                  "INSERT INTO counters VALUES (1, 0), (2, 0)")  # fmt: skip
    both_hold_one = threading.Barrier(2, timeout=30)
    runs: Counter[str] = Counter()

    def unit(name: str, first: int, second: int) -> Callable[[Connection], None]:
        def work(conn: Connection) -> None:
            runs[name] += 1
            bump = text("UPDATE counters SET n = n + 1 WHERE id = :id")
            conn.execute(bump, {"id": first})
            if runs[name] == 1:
                both_hold_one.wait()  # the first run only: the rerun must go through
            conn.execute(bump, {"id": second})

        return work

    with ThreadPoolExecutor(2) as pool:
        done = [
            pool.submit(_run, url, unit("a", 1, 2)),
            pool.submit(_run, url, unit("b", 2, 1)),
        ]
        for future in done:
            future.result()  # neither failed: the one PostgreSQL killed ran again

    assert sorted(runs.values()) == [1, 2], runs
    counters = _sql_in(postgres, "retry", "SELECT n FROM counters ORDER BY id")
    assert counters == ["2", "2"], "each unit's changes committed once, the rerun's included"
    assert "deadlock detected" in postgres.server_log()


def test_a_unit_that_keeps_losing_fails_after_its_retries_and_changes_nothing(
    postgres: PostgresCluster,
) -> None:
    """A deadlock every time (PostgreSQL's own error, SQLSTATE 40P01, raised on purpose):
    the unit runs RETRY_ATTEMPTS times, then the error reaches the caller (the app answers
    it 503 UNAVAILABLE with Retry-After); none of its runs committed anything."""
    url = postgres.create_database("retry_fails")
    postgres.tool("psql", "-d", "retry_fails", "-c", "CREATE TABLE marks (n int)")
    runs: list[int] = []

    def work(conn: Connection) -> None:
        runs.append(1)
        conn.execute(text("INSERT INTO marks VALUES (1)"))
        conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'staged' USING ERRCODE = '40P01'; END $$"))

    with pytest.raises(DBAPIError) as raised:
        _run(url, work)
    assert sqlstate(raised.value) == DEADLOCK
    assert len(runs) == RETRY_ATTEMPTS
    assert _sql_in(postgres, "retry_fails", "SELECT count(*) FROM marks") == ["0"]

    def refused(conn: Connection) -> None:  # any other error: no second run
        runs.append(1)
        conn.execute(text("INSERT INTO marks VALUES ('not a number')"))

    runs.clear()
    with pytest.raises(DBAPIError):
        _run(url, refused)
    assert len(runs) == 1


def _sql_in(postgres: PostgresCluster, database: str, query: str) -> list[str]:
    return postgres.tool("psql", "-d", database, "-tAc", query).split()
