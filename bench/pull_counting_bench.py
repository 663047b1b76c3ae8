#!/usr/bin/env python3
"""What pull counting costs: manifest GET by tag on our server with counting on and off.

Two of our servers run side by side with the same data, one started with
`OCIREGISTRY_PULL_COUNTING=0`. Each round measures both with wrk (the same load as the manifest
GET row of registry_bench.py), alternating which goes first; the report gives the medians, the
server CPU per request and the cost of counting in per cent. The issue asks for under 5 %.

    python bench/pull_counting_bench.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from registry.__main__ import choose_upload_form, raise_on_termination
from registry.cases import Bench, load_test
from registry.content import make_seed, seed_server
from registry.harness import APP_REPO, SEED_TAG, BenchError, OurServer, Settings, ensure_tools, log

TARGET_COST_PERCENT = 5.0


class CountingServer(OurServer):
    def __init__(self, workdir: Path, workers: int, counting: bool) -> None:
        self.label = "counting on" if counting else "counting off"
        super().__init__(workdir / ("on" if counting else "off"), workers)
        self.env["OCIREGISTRY_PULL_COUNTING"] = "1" if counting else "0"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, 2 rounds")
    parser.add_argument("--rounds", type=int, help="measurements per server (default 5)")
    parser.add_argument("--workers", type=int, default=2)
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    base = Settings.from_args(
        argparse.Namespace(
            quick=args.quick,
            blob_mib=1,
            load_seconds=None,
            runs=None,
            pushes=None,
            workers=args.workers,
            theirs_cache="inmemory",
            pull_auth="token",
        )
    )
    return Settings(**{**asdict(base), "extra_tags": 0})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_termination()
    ensure_tools()
    rounds = args.rounds or (2 if args.quick else 5)
    settings = settings_for(args)
    workdir = Path(tempfile.mkdtemp(prefix="pull-counting-bench-"))
    servers = [CountingServer(workdir, args.workers, c) for c in (True, False)]
    try:
        for server in servers:
            server.start()
        settings = Settings(**{**asdict(settings), "upload_form": choose_upload_form(servers)})
        seed = make_seed(workdir, settings)
        for server in servers:
            seed_server(server, seed, settings.upload_form)
        bench = Bench(servers, settings, seed, workdir)
        rates: dict[str, list[float]] = {server.label: [] for server in servers}
        cpu: dict[str, list[float]] = {server.label: [] for server in servers}
        path = f"/v2/{APP_REPO}/manifests/{SEED_TAG}"
        for turn in range(rounds):
            for server in bench.ordered(turn):
                details: dict[str, object] = {}
                rate = load_test(bench, path, "GET", server, details)
                rates[server.label].append(rate)
                cpu[server.label].append(float(details["server_cpu_ms_per_request"]))  # type: ignore[arg-type]
                log(f"round {turn + 1}: {server.label}: {rate:,.0f} req/s")
        on, off = (statistics.median(rates[label]) for label in ("counting on", "counting off"))
        cpu_on, cpu_off = (
            statistics.median(cpu[label]) for label in ("counting on", "counting off")
        )
        cost = (1 - on / off) * 100
        cpu_cost = (cpu_on / cpu_off - 1) * 100
        print(
            f"manifest GET by tag, {settings.load_connections} conns, {rounds} rounds of "
            f"{settings.load_seconds} s each (medians)"
        )
        print(f"  counting on : {on:>10,.1f} req/s  {cpu_on:.3f} ms CPU per request")
        print(f"  counting off: {off:>10,.1f} req/s  {cpu_off:.3f} ms CPU per request")
        verdict = "ok" if cost < TARGET_COST_PERCENT else "over"
        print(
            f"  cost of counting: {cost:+.1f} % throughput ({verdict}; target < "
            f"{TARGET_COST_PERCENT:.0f} %), {cpu_cost:+.1f} % CPU per request"
        )
        return 0
    except BenchError as error:
        log(f"failed: {error}")
        return 1
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
