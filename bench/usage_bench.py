#!/usr/bin/env python3
"""What exact storage usage costs: small pushes and manifest PUTs, with and without it.

Two servers from this checkout run side by side, as `bench/registry_bench.py` runs ours (2
workers, a bench user pushing with Bearer tokens), on the same machine in the same run:

- "kept": the registry as it ships: on SQLite a manifest's usage counted by its worker after
  the PUT, with the others pushed meanwhile (catalog/usage_deferred.py), on PostgreSQL in the
  PUT's transaction;
- "off": the same code with the upkeep made a no-op (no count after the PUT, and none before
  a read; `count_now` and `note_stored` as `catalog/images.py` calls them; on SQLite the
  usage triggers dropped), by a `sitecustomize` module put on the workers' `PYTHONPATH` by
  this script only. The comparison is fair: the "off" server still checks a manifest's
  references in its transaction, one statement, as the "kept" one does. Nothing else
  differs: the same routes, the same immutable-tag and quota code paths, the same audit
  middleware.

Each round measures both, the PUTs' blobs uploaded for both before any clock starts:

- small pushes: fresh one-layer images (1-4 KiB layer, a config, the manifest), 8 at a time;
- manifest PUTs: manifests whose blobs were uploaded before the clock started, 8 at a time,
  each a new manifest (so each one adds its references to the usage tables).

By default each case runs on the two servers back to back (A B for pushes, then B A for the
PUTs, A alternating between rounds). With `--together` it runs on both at once, 8
connections each, until the first server is through its list (`run_together`): the two
share the machine's drift, which moves runs made seconds apart by ±15 % here, so the rounds
agree within a few per cent where back to back they spread over ±20 %.

It reports the medians of the rates and of the servers' CPU time per push and per PUT (from
/proc, every process of the server), and the cost of upkeep in per cent of each, from the
medians and as the median of each round's own cost (paired); the issue asks for under 5 %.
The client is aiohttp, as in `registry_bench.py`: httpx's CPU per push exceeded the
server's, and set the pace.

With `--database postgresql` each server gets a throw-away PostgreSQL cluster of its own
(tests/support/pgcluster.py; Debian's `postgresql`, as root), and its CPU figure includes that
cluster's postmaster and backends, where most of a push's database work runs.

    python bench/usage_bench.py [--rounds N] [--pushes N] [--manifests N] [--workers N]
                                [--database sqlite|postgresql] [--together]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry.cases import (
    SmallPush,
    answered,
    connection,
    make_pushes,
    push_all,
    push_one,
    run_workers,
)
from registry.content import image_config, image_manifest
from registry.harness import (
    FORM_POST,
    HTTP_TIMEOUT,
    OCI_MANIFEST,
    OCTET_STREAM,
    REGISTRY,
    STAT_PPID,
    OurServer,
    auth_headers,
    cpu_ticks,
    expect,
    log,
    process_stats,
    sha256_digest,
)

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
TARGET_COST_PERCENT = 5.0
CONCURRENCY = 8

# Imported by every process of the "off" server before anything else (Python's `site`).
# No usage rows, but the manifest's references checked in its transaction as the upkeep checks
# them, in one statement; on SQLite the usage triggers dropped once the schema is up to date.
UPKEEP_OFF = """
import sqlite3

from sqlalchemy import make_url, select

import ociregistry.catalog.images as images
import ociregistry.catalog.usage as usage
import ociregistry.catalog.usage_deferred as usage_deferred
import ociregistry.db.database as database
from ociregistry.db.models import ImageBlob


def check_only(conn, registry_id, image_id, manifest_id, digest, size, entries):
    if conn.dialect.name == "sqlite":
        usage.check_held(conn, image_id, entries)
        return
    digests = sorted(entries)
    where = (ImageBlob.image_id == image_id, ImageBlob.digest.in_(digests))
    if len(conn.execute(select(ImageBlob.digest).where(*where)).all()) < len(digests):
        usage.raise_unlinked(digests)


async def no_count(self):
    pass


def migrate(url, _migrate=database.migrate):
    _migrate(url)
    if url.startswith("sqlite"):
        with sqlite3.connect(make_url(url).database) as conn:
            for trigger in usage.SQLITE_TRIGGERS:
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")


images.count_now = check_only
images.note_stored = lambda *args, **kwargs: None
usage_deferred.UsageCounter.pushed = lambda self: None
usage_deferred.UsageCounter.settle = no_count
database.migrate = migrate
"""


class UsageServer(OurServer):
    """Our server from this checkout; with `upkeep=False`, usage upkeep is a no-op."""

    def __init__(
        self,
        workdir: Path,
        workers: int,
        *,
        upkeep: bool,
        database_url: str = "",
        postmaster: int | None = None,
    ) -> None:
        self.label = "kept" if upkeep else "off"
        super().__init__(workdir, workers)
        self.postmaster = postmaster
        if database_url:
            self.env["OCIREGISTRY_DATABASE_URL"] = database_url
        if not upkeep:
            shim = self.workdir / "upkeep-off"
            shim.mkdir(parents=True, exist_ok=True)
            (shim / "sitecustomize.py").write_text(UPKEEP_OFF)
            self.env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(shim), self.env.get("PYTHONPATH")])
            )

    def cpu_seconds(self) -> float:
        """The server's CPU, and on PostgreSQL its own cluster's (postmaster and backends,
        those that exited included)."""
        total = super().cpu_seconds()
        if self.postmaster is None:
            return total
        ticks = sum(
            cpu_ticks(fields)
            for pid, fields in process_stats()
            if self.postmaster in (pid, int(fields[STAT_PPID]))
        )
        return total + ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def databases(kind: str) -> Iterator[list[tuple[str, int | None]]]:
    """For each of the two servers, a database URL and its postmaster's pid: two throw-away
    PostgreSQL clusters, or SQLite in each data folder (("", None))."""
    if kind == "sqlite":
        yield [("", None), ("", None)]
        return
    sys.path.insert(0, str(TESTS_DIR))
    from support.pgcluster import PostgresCluster  # only for this option

    clusters = []
    try:
        for _ in range(2):
            clusters.append(PostgresCluster().start())
        yield [
            (
                cluster.create_database("usage"),
                int((cluster.data / "postmaster.pid").read_text().split()[0]),
            )
            for cluster in clusters
        ]
    finally:
        for cluster in clusters:
            cluster.stop()


ManifestWork = tuple[dict[str, str], list[tuple[str, str, bytes, bytes]]]


async def prepare_manifests(server: OurServer, count: int, label: str) -> ManifestWork:
    """Upload `count` configs and a few shared layers for `count` manifest PUTs, before the
    clock starts: the PUTs' headers and work."""
    layers = [os.urandom(random.randint(1024, 4096)) for _ in range(4)]
    work = []
    for index in range(count):
        config = image_config(layers[:2], f"{label}-m{index}-{secrets.token_hex(6)}")
        repo = f"{REGISTRY}/put{index % CONCURRENCY}"
        work.append((repo, f"m{index:05d}", config, image_manifest(config, layers[:2])))
    repos = sorted({repo for repo, *_ in work})
    headers = auth_headers(server, repos)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=HTTP_TIMEOUT
    ) as client:
        for repo in repos:
            for layer in layers[:2]:
                await upload(client, repo, layer)
        for repo, _, config, _ in work:
            await upload(client, repo, config)
    return headers, work


async def put_manifests(server: OurServer, prepared: ManifestWork) -> tuple[float, float]:
    """Time the prepared manifest PUTs: the rate, and the server's CPU milliseconds per PUT."""
    headers, work = prepared

    cpu: list[float] = []
    elapsed = await run_workers(
        server, headers, work, CONCURRENCY, put_one, lambda: cpu.append(server.cpu_seconds())
    )
    return len(work) / elapsed, (server.cpu_seconds() - cpu[0]) * 1000 / len(work)


async def put_one(session: aiohttp.ClientSession, item: tuple[str, str, bytes, bytes]) -> None:
    repo, tag, _, manifest = item
    async with session.put(
        f"/v2/{repo}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    ) as response:
        await answered(response, 201, "PUT manifest")


Leg = tuple[UsageServer, dict[str, str], list[Any], Callable[[aiohttp.ClientSession, Any], Any]]


def push_leg(server: UsageServer, pushes: list[SmallPush]) -> Leg:
    headers = auth_headers(server, sorted({push.repo for push in pushes}))
    return server, headers, pushes, partial(push_one, form=FORM_POST)


async def run_together(legs: list[Leg]) -> dict[str, tuple[float, float]]:
    """`--together`: every server's work at once, CONCURRENCY connections each, until the
    first runs out; each server's rate and CPU milliseconds per item over that one interval,
    counting the items done within it. Both servers share whatever the machine does
    meanwhile, so its drift, which moves the runs of `alternate` apart by ±15 %, moves
    both alike; and neither runs alone at the end, faster, as it would were each to finish
    its list."""
    queues = {server.label: deque(items) for server, _, items, _ in legs}
    done = dict.fromkeys(queues, 0)
    connected = asyncio.Barrier(len(legs) * CONCURRENCY + 1)
    meters: dict[str, Any] = {}

    def finish() -> None:
        if "stopped" not in meters:
            meters["stopped"] = time.perf_counter()
            meters["cpu after"] = {server.label: server.cpu_seconds() for server, *_ in legs}

    async def worker(server: UsageServer, headers: dict[str, str], handle: Any) -> None:
        async with connection(server, headers) as session:
            await connected.wait()
            queue = queues[server.label]
            while queue and "stopped" not in meters:
                await handle(session, queue.popleft())
                if "stopped" not in meters:
                    done[server.label] += 1
            finish()

    tasks = [
        asyncio.create_task(worker(server, headers, handle))
        for server, headers, _, handle in legs
        for _ in range(CONCURRENCY)
    ]
    await connected.wait()
    cpu_before = {server.label: server.cpu_seconds() for server, *_ in legs}
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    seconds = meters["stopped"] - started
    return {
        label: (
            count / seconds,
            (meters["cpu after"][label] - cpu_before[label]) * 1000 / max(count, 1),
        )
        for label, count in done.items()
    }


async def upload(client: httpx.AsyncClient, repo: str, blob: bytes) -> None:
    response = await client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": sha256_digest(blob)},
        content=blob,
        headers={"Content-Type": OCTET_STREAM},
    )
    expect(response, 201, "POST ?digest=")


def check_upkeep(server: UsageServer) -> None:
    """Proof of what runs: after the pushes, the registry's `size_bytes` moved only with
    upkeep on."""
    username, password = server.credentials or ("", "")
    answer = httpx.get(
        f"{server.url}/api/v1/registries/{REGISTRY}", auth=(username, password), timeout=10
    )
    size = expect(answer, 200, "GET registry").json()["size_bytes"]
    if (size > 0) != (server.label == "kept"):
        raise SystemExit(f"{server.label}: size_bytes {size}, not the code path expected")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument("--manifests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--together",
        action="store_true",
        help="run each case on both servers at once (see run_together), not back to back",
    )
    return parser.parse_args(argv)


def cost(kept: float, off: float) -> float:
    return (kept - off) / off * 100


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = SimpleNamespace(pushes=args.pushes, push_concurrency=CONCURRENCY)
    push_rate: dict[str, list[float]] = {"kept": [], "off": []}
    put_rate: dict[str, list[float]] = {"kept": [], "off": []}
    push_cpu: dict[str, list[float]] = {"kept": [], "off": []}
    put_cpu: dict[str, list[float]] = {"kept": [], "off": []}
    with (
        tempfile.TemporaryDirectory(prefix="usage-bench-") as tmp,
        databases(args.database) as urls,
    ):
        servers = [
            UsageServer(Path(tmp), args.workers, upkeep=upkeep, database_url=url, postmaster=pid)
            for upkeep, (url, pid) in zip((True, False), urls, strict=True)
        ]
        try:
            for server in servers:
                server.start()
            for round_number in range(args.rounds):
                # Each case runs on both servers back to back, A B then B A (A alternating
                # between rounds), so that the two runs of a pair are seconds apart and
                # neither server always goes first or last.
                order = servers if round_number % 2 == 0 else servers[::-1]
                prepared = {
                    server.label: asyncio.run(
                        prepare_manifests(server, args.manifests, f"{server.label}-{round_number}")
                    )
                    for server in servers
                }
                if args.together:  # every case on both servers at once, A B then B A
                    pushes = {
                        server.label: make_pushes(settings, f"{server.label}-{round_number}")
                        for server in servers
                    }
                    os.sync()
                    for label, (rate, cpu_ms) in asyncio.run(
                        run_together([push_leg(server, pushes[server.label]) for server in order])
                    ).items():
                        push_rate[label].append(rate)
                        push_cpu[label].append(cpu_ms)
                    os.sync()
                    for label, (rate, cpu_ms) in asyncio.run(
                        run_together(
                            [(server, *prepared[server.label], put_one) for server in order[::-1]]
                        )
                    ).items():
                        put_rate[label].append(rate)
                        put_cpu[label].append(cpu_ms)
                    order = []
                for server in order:
                    pushes = make_pushes(settings, f"{server.label}-{round_number}")
                    os.sync()
                    before = server.cpu_seconds()
                    seconds = asyncio.run(push_all(server, pushes, CONCURRENCY, FORM_POST))
                    push_cpu[server.label].append(
                        (server.cpu_seconds() - before) * 1000 / len(pushes)
                    )
                    push_rate[server.label].append(len(pushes) / seconds)
                for server in order[::-1]:
                    os.sync()
                    rate, cpu_ms = asyncio.run(put_manifests(server, prepared[server.label]))
                    put_rate[server.label].append(rate)
                    put_cpu[server.label].append(cpu_ms)
                for server in servers:
                    log(
                        f"round {round_number + 1} {server.label}: "
                        f"{push_rate[server.label][-1]:.1f} pushes/s "
                        f"({push_cpu[server.label][-1]:.2f} ms CPU each), "
                        f"{put_rate[server.label][-1]:.1f} PUTs/s "
                        f"({put_cpu[server.label][-1]:.2f} ms CPU each)"
                    )
            for server in servers:
                check_upkeep(server)
        finally:
            for server in servers:
                server.stop()
    median = statistics.median
    print()
    print(f"{'':34} {'kept':>9} {'off':>9} {'cost':>8} {'paired':>8}")
    for title, figures, sign in (
        (f"small pushes/s, concurrency {CONCURRENCY}", push_rate, -1),
        ("  server CPU ms per push", push_cpu, 1),
        (f"manifest PUTs/s, concurrency {CONCURRENCY}", put_rate, -1),
        ("  server CPU ms per manifest PUT", put_cpu, 1),
    ):
        kept, off = median(figures["kept"]), median(figures["off"])
        paired = paired_costs(figures, sign)
        print(
            f"{title:34} {kept:9.2f} {off:9.2f} {sign * cost(kept, off):7.1f}% "
            f"{median(paired):7.1f}%  rounds: {' '.join(f'{c:.1f}' for c in sorted(paired))}"
        )
    runs = "at once" if args.together else "seconds apart"
    print(
        f"(medians of {args.rounds} rounds, {args.database}; paired: the median of each "
        f"round's cost, its two runs {runs}; goal: under {TARGET_COST_PERCENT:.0f} %)"
    )
    return 0


def paired_costs(figures: dict[str, list[float]], sign: int) -> list[float]:
    """Each round's cost in per cent. The machine's speed drifts by more than the cost over
    minutes, but little between the two runs of one round, so the median of these is the
    steadier figure."""
    return [
        sign * cost(kept, off) for kept, off in zip(figures["kept"], figures["off"], strict=True)
    ]


if __name__ == "__main__":
    sys.exit(main())
