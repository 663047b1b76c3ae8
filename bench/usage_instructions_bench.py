#!/usr/bin/env python3
"""What exact storage usage costs small pushes and manifest PUTs over HTTP, counted.

`bench/usage_bench.py` times the two servers (upkeep "kept" and "off") over HTTP; on this
2-core machine their rates drift by more than the cost it looks for. This one runs the same
two servers and the same work, from the same aiohttp client, and counts instead of timing:
the user-space instructions of the server's worker (valgrind's callgrind, `--trace-children`
so that the supervisor's worker runs under it), which do not depend on how busy the machine
is. A PUT's or a push's instructions are what bounds a worker's rate on a busy machine, so
their ratio is the throughput cost of the upkeep. What they leave out, the kernel's side, it
shows by the worker's write counters (`/proc/PID/io`): the bytes it handed to write calls
(files and sockets) and the bytes of page cache it dirtied, which go to the disk (mostly the
WAL's pages, which `bench/usage_pages_bench.py` counts by B-tree). The count after the
PUTs commits without a sync of its own.

Per server, one worker (so one process holds every instruction), and in each round:

- small pushes: `--pushes` fresh one-layer images (1-4 KiB layer, a config, the manifest),
  8 at a time, as usage_bench.py pushes them;
- manifest PUTs: `--manifests` manifests whose blobs were uploaded before the count started,
  8 at a time, each a new manifest.

A count starts once the client's connections are open (`callgrind_control --zero`) and ends
after one read of the registry (`GET /api/v1/registries/bench`), which on SQLite counts the
usage still pending, so that the "kept" count includes the whole upkeep (that read's own
cost, the same on both servers, is spread over the work). Both servers run at once, each
under its own valgrind, about 25 times slower than at full speed, so what the server does
by the clock is stretched as much (`STRETCHED`), the background jobs do not run, and the
tokens live an hour. The worker's idle instructions (its timers, some 300,000 a second) are
counted over a quiet interval and taken off each count in proportion to its length. Run it
on an otherwise idle machine: under load callgrind runs slower still, the stretched timers
no longer match, and the counts move by several per cent.

    python bench/usage_instructions_bench.py [--rounds N] [--pushes N] [--manifests N]
                                             [--warmup N]

SQLite only: on PostgreSQL most of a PUT's database work runs in the cluster's backends,
which callgrind does not see (usage_bench.py's timings there already show the cost under
5 %).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import registry.harness as harness
from registry.cases import make_pushes, push_one, run_workers
from registry.harness import FORM_POST, REGISTRY, auth_headers, expect, group_pids, log
from usage_bench import (
    CONCURRENCY,
    TARGET_COST_PERCENT,
    UsageServer,
    check_upkeep,
    cost,
    prepare_manifests,
    put_one,
)

IDLE_SECONDS = 30.0
IO_FIELDS = ("wchar", "write_bytes")
# What a row of the report shows: the figure, its unit and its scale.
ROWS = (
    ("instructions", "M instructions", 1e6),
    ("wchar", "KB to write calls", 1e3),
    ("write_bytes", "KB dirtied (to disk)", 1e3),
)
Counts = tuple[dict[str, float], float]
# How many times slower a worker runs under callgrind than at full speed: measured here, one
# worker's CPU per manifest PUT and per small push at full speed (`usage_bench.py --workers
# 1`: 1.6 and 4.6 ms) against its time per PUT and push under callgrind (45 and 110 ms).
SLOWDOWN = 28.0
# Imported by every process of both servers (Python's `site`). The limits measured in time
# that decide how much work is done are stretched by --stretch: a write transaction that runs
# longer on the event loop than its CPU budget is rolled back and run again on the writer
# thread (db/sqlite_writes.py), and at callgrind's pace every one would be, twice the work;
# the worker counts the usage of its PUTs a moment after them (DELAY_SECONDS), and at
# callgrind's pace that moment would hold a few PUTs, not the 64 it holds at full speed; the
# pull counter's timers would tick 28 times as often per push. The background jobs (garbage
# collection, retention, pull-count sums: catalog/leases.py), none of them part of a push,
# do not start: a run of one, once a minute, would land in one count and not the next.
STRETCHED = """
import ociregistry.catalog.leases as _leases
import ociregistry.catalog.pulls as _pulls
import ociregistry.catalog.usage_deferred as _usage_deferred
import ociregistry.db.sqlite_writes as _sqlite_writes

_sqlite_writes.INLINE_BUDGET_SECONDS *= {stretch!r}
_usage_deferred.DELAY_SECONDS *= {stretch!r}
_pulls.FLUSH_SECONDS *= {stretch!r}
_pulls.PRUNE_SECONDS *= {stretch!r}
_pulls.SETTLE_SECONDS *= {stretch!r}
_leases.LeasedJobs.start = lambda self, name, work, **timing: None
"""


class CountedServer(UsageServer):
    """A UsageServer with one worker, run under callgrind, whose counts we zero and dump."""

    def __init__(self, workdir: Path, *, upkeep: bool, stretch: float) -> None:
        super().__init__(workdir, 1, upkeep=upkeep)
        self.env["OCIREGISTRY_TOKEN_TTL_SECONDS"] = "3600"
        self.env["PYTHONHASHSEED"] = "0"
        self.counts = self.workdir / "callgrind"
        self.idle_per_second = 0.0
        # The waits measured in time stretched as callgrind stretches everything, on both
        # servers (the "off" one has its sitecustomize already: added to it).
        shim = self.workdir / ("stretched" if upkeep else "upkeep-off")
        shim.mkdir(parents=True, exist_ok=True)
        with (shim / "sitecustomize.py").open("a") as sitecustomize:
            sitecustomize.write(STRETCHED.format(stretch=stretch))
        if upkeep:
            self.env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(shim), self.env.get("PYTHONPATH")])
            )

    def command(self) -> list[str]:
        self.counts.mkdir(parents=True, exist_ok=True)
        return [
            shutil.which("valgrind") or "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            "--cache-sim=no",
            f"--callgrind-out-file={self.counts}/callgrind.%p",
            *super().command(),
        ]

    def worker(self) -> int:
        """The pid of the one worker (the supervisor starts it; it is in our process group)."""
        assert self.process is not None
        for pid in group_pids(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"ociregistry.ops.worker" in command:
                return pid
        raise harness.BenchError(f"{self.label}: no worker in the server's process group")

    def control(self, option: str) -> None:
        subprocess.run(
            ["callgrind_control", option, str(self.worker())],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def dump(self) -> int:
        """Dump the worker's counts since the last zero, and answer their total."""
        pid = self.worker()
        self.control("--dump")
        dumps = sorted(
            self.counts.glob(f"callgrind.{pid}.*"), key=lambda path: int(path.suffix[1:])
        )
        found = re.search(r"^summary: (\d+)$", dumps[-1].read_text(), re.MULTILINE)
        if found is None:
            raise harness.BenchError(f"{self.label}: no summary in {dumps[-1]}")
        return int(found.group(1))

    def measure_idle(self) -> None:
        self.control("--zero")
        started = time.monotonic()
        time.sleep(IDLE_SECONDS)
        self.idle_per_second = self.dump() / (time.monotonic() - started)

    def read_registry(self) -> None:
        """One read of the registry's figures: on SQLite it counts what is pending."""
        username, password = self.credentials or ("", "")
        answer = httpx.get(
            f"{self.url}/api/v1/registries/{REGISTRY}", auth=(username, password), timeout=600
        )
        expect(answer, 200, "GET registry")

    def io(self) -> dict[str, int]:
        """The worker's write counters (`/proc/PID/io`): bytes handed to write calls, files
        and sockets alike, and bytes of the page cache it dirtied, which go to the disk."""
        fields = dict(
            line.split(": ")
            for line in Path(f"/proc/{self.worker()}/io").read_text().split("\n")
            if line
        )
        return {name: int(fields[name]) for name in IO_FIELDS}

    def count(self, work: Callable[[Callable[[], object]], Awaitable[float]]) -> Counts:
        """What `work` (given the zeroing to call once connected) and the read after it
        cost the worker: its instructions, less its idle ones over that time, and its writes;
        and the seconds `work` took."""
        started: list[float] = []
        before: dict[str, int] = {}

        def zero() -> None:
            self.control("--zero")
            started.append(time.monotonic())
            before.update(self.io())

        seconds = asyncio.run(work(zero))
        self.read_registry()
        total = self.dump()
        after = self.io()
        figures = {name: float(after[name] - before[name]) for name in IO_FIELDS}
        figures["instructions"] = total - self.idle_per_second * (time.monotonic() - started[0])
        return figures, seconds


def run_round(
    server: CountedServer, args: argparse.Namespace, round_number: int
) -> dict[str, float]:
    """One round on one server: its figures per push, then per manifest PUT."""
    label = f"{server.label}-{round_number}"
    pushes = make_pushes(SimpleNamespace(pushes=args.pushes, push_concurrency=CONCURRENCY), label)
    prepared_headers, work = asyncio.run(prepare_manifests(server, args.manifests, label))
    push_headers = auth_headers(server, sorted({push.repo for push in pushes}))
    push_figures, push_seconds = server.count(
        lambda zero: run_workers(
            server, push_headers, pushes, CONCURRENCY, partial(push_one, form=FORM_POST), zero
        )
    )
    put_figures, put_seconds = server.count(
        lambda zero: run_workers(server, prepared_headers, work, CONCURRENCY, put_one, zero)
    )
    figures = {f"push {name}": value / len(pushes) for name, value in push_figures.items()}
    figures |= {f"PUT {name}": value / len(work) for name, value in put_figures.items()}
    log(
        f"round {round_number + 1} {server.label}: {figures['push instructions'] / 1e6:.2f} M "
        f"instructions per push ({len(pushes) / push_seconds:.2f}/s under callgrind), "
        f"{figures['PUT instructions'] / 1e6:.2f} M per manifest PUT "
        f"({len(work) / put_seconds:.2f}/s)"
    )
    return figures


def warm_up(server: CountedServer, args: argparse.Namespace) -> None:
    """Pushes and PUTs uncounted (imports, caches, the first pages of each table), then the
    idle rate."""
    pushes = make_pushes(
        SimpleNamespace(pushes=args.warmup, push_concurrency=CONCURRENCY), f"{server.label}-w"
    )
    headers = auth_headers(server, sorted({push.repo for push in pushes}))
    asyncio.run(
        run_workers(server, headers, pushes, CONCURRENCY, partial(push_one, form=FORM_POST))
    )
    headers, work = asyncio.run(prepare_manifests(server, args.warmup, f"{server.label}-w"))
    asyncio.run(run_workers(server, headers, work, CONCURRENCY, put_one))
    server.read_registry()
    server.measure_idle()
    log(f"{server.label}: warm; idle {server.idle_per_second / 1e6:.2f} M instructions/s")


def serve_and_count(server: CountedServer, args: argparse.Namespace) -> list[dict[str, float]]:
    warm_up(server, args)
    return [run_round(server, args, number) for number in range(args.rounds)]


def report(rounds: dict[str, list[dict[str, float]]]) -> None:
    """Per small push and per manifest PUT: the medians of kept and off, the cost from
    them, and each round's own cost."""
    print()
    print(f"{'server worker':34} {'kept':>9} {'off':>9} {'cost':>8}  rounds")
    for operation, title in (("push", "per small push"), ("PUT", "per manifest PUT")):
        for name, unit, scale in ROWS:
            key = f"{operation} {name}"
            kept = [figures[key] for figures in rounds["kept"]]
            off = [figures[key] for figures in rounds["off"]]
            costs = [cost(k, o) for k, o in zip(kept, off, strict=True)]
            middle = statistics.median(kept), statistics.median(off)
            print(
                f"{title + ', ' + unit:34} {middle[0] / scale:9.2f} {middle[1] / scale:9.2f} "
                f"{cost(*middle):7.1f}%  " + " ".join(f"{c:.1f}" for c in costs)
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--manifests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--stretch",
        type=float,
        default=SLOWDOWN,
        help="how many times callgrind slows a worker: its waits measured in time are "
        "stretched as much (see STRETCHED)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.READY_TIMEOUT_SECONDS = 600.0  # Python's imports take a minute under callgrind
    with tempfile.TemporaryDirectory(prefix="usage-instructions-") as tmp:
        servers = [
            CountedServer(Path(tmp), upkeep=upkeep, stretch=args.stretch)
            for upkeep in (True, False)
        ]
        try:
            with ThreadPoolExecutor(len(servers)) as pool:
                list(pool.map(CountedServer.start, servers))
                rounds = dict(
                    zip(
                        ("kept", "off"),
                        pool.map(partial(serve_and_count, args=args), servers),
                        strict=True,
                    )
                )
            for server in servers:
                check_upkeep(server)
        finally:
            for server in servers:
                server.stop()
    report(rounds)
    print(
        f"(callgrind, one worker each, {args.rounds} rounds of {args.pushes} pushes and "
        f"{args.manifests} PUTs after {args.warmup} of each, SQLite; "
        f"goal: under {TARGET_COST_PERCENT:.0f} %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
