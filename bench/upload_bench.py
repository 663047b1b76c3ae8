#!/usr/bin/env python3
"""Uploads alone: MB/s and, above all, the server's CPU per MiB received, for a monolithic and
a chunked upload, ours and (with `--reference`) Distribution's, with an optional profile.

`registry_bench.py` measures every case; this one measures only the byte path of uploads, in
a minute, so a change to it can be judged on a shared machine: the wall-clock rate moves with
whatever else runs, the CPU the server spends per MiB much less. `--profile DIR` records each
case of our server with py-spy (`--native` too with `--native`), one flame graph per case.

    python bench/upload_bench.py [--blob-mib 256] [--runs 3] [--reference PATH] [--profile DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

from registry.content import curl_upload, probe_upload_form, upload_in_chunks
from registry.harness import (
    APP_REPO,
    FORM_POST,
    FORM_POST_PUT,
    HTTP_TIMEOUT,
    MB,
    MIB,
    STAT_MINFLT,
    Distribution,
    OurServer,
    Server,
    auth_headers,
    group_pids,
    group_stats,
    write_random_file,
)


def monolithic(server: Server, path: Path, digest: str, form: str, chunk_mib: int) -> None:
    curl_upload(server, path, digest, form)


def chunked(server: Server, path: Path, digest: str, form: str, chunk_mib: int) -> None:
    """POST, PATCHes of `chunk_mib` with Content-Range, PUT ?digest=: what docker push does."""
    with (
        path.open("rb") as source,
        httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client,
    ):
        client.headers.update(auth_headers(server, [APP_REPO]))
        upload_in_chunks(client, APP_REPO, iter(partial(source.read, chunk_mib * MIB), b""), digest)


def page_faults(server: Server) -> int:
    """Minor page faults of the server's processes so far: each fresh page of memory the
    allocator gets from the kernel costs one."""
    assert server.process is not None
    return sum(int(fields[STAT_MINFLT]) for _, fields in group_stats(server.process.pid))


Case = Callable[[Server, Path, str, str, int], None]


def worker_pids(server: Server) -> list[int]:
    """Every process of the server's group but the group leader (our supervisor)."""
    assert server.process is not None
    leader = server.process.pid
    return [pid for pid in group_pids(leader) if pid != leader] or [leader]


@contextlib.contextmanager
def profiled(server: Server, out: Path | None, native: bool) -> Iterator[None]:
    """py-spy (strace -c or perf record, for an `out` ending in .strace or .perf) on our
    worker during the block."""
    if out is None or not isinstance(server, OurServer):
        yield
        return
    pid = worker_pids(server)[0]
    if out.suffix in (".strace", ".perf"):
        argv = ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)]
        if out.suffix == ".perf":  # every thread, kernel included: `perf report -i FILE`
            argv = ["perf", "record", "-q", "-F", "999", "-o", str(out), "-p", str(pid)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        try:
            yield
        finally:
            tracer.send_signal(2)
            tracer.wait(timeout=60)
        return
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--threads"]
    form = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    argv += ["--format", form, "-o", str(out)]
    if native:
        argv.append("--native")
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield
    finally:
        time.sleep(0.5)
        spy.send_signal(2)
        spy.wait(timeout=60)


def measure(
    server: Server,
    case: Case,
    workdir: Path,
    args: argparse.Namespace,
    form: str,
    profile: Path | None,
) -> tuple[float, float, float]:
    """Median MB/s, server CPU milliseconds per MiB and page faults per MiB over
    `args.runs` uploads."""
    rates, costs, fault_counts = [], [], []
    size = args.blob_mib * MIB
    for run in range(args.runs):
        path = workdir / f"blob-{server.label}-{run}"
        digest = write_random_file(path, size)
        os.sync()
        try:
            out = None if profile is None or run else profile
            with profiled(server, out, args.native):
                cpu, faults = server.cpu_seconds(), page_faults(server)
                started = time.perf_counter()
                case(server, path, digest, form, args.chunk_mib)
                seconds = time.perf_counter() - started
                cpu = server.cpu_seconds() - cpu
                faults = page_faults(server) - faults
        finally:
            path.unlink(missing_ok=True)
        rates.append(size / seconds / MB)
        costs.append(cpu * 1000 / args.blob_mib)
        fault_counts.append(faults / args.blob_mib)
    return statistics.median(rates), statistics.median(costs), statistics.median(fault_counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="our workers (default 1)")
    parser.add_argument("--reference", help="a Distribution binary to measure as well")
    parser.add_argument("--profile", type=Path, help="a folder for py-spy flame graphs (ours)")
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument(
        "--format",
        choices=["svg", "json", "txt", "strace", "perf"],
        default="svg",
        help="flame graph (svg), speedscope (json), collapsed stacks (txt), the system calls "
        "counted (strace), or perf record of every thread, kernel included (perf)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    ours = OurServer(workdir, args.workers)
    servers: list[Server] = [ours]
    if args.reference:
        servers.append(Distribution(workdir, "inmemory", token_server=ours, binary=args.reference))
    try:
        for server in servers:
            server.start()
        form = FORM_POST if all(probe_upload_form(s) for s in servers) else FORM_POST_PUT
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        suffix = f".{args.format}"
        print(
            f"{args.blob_mib} MiB blobs, {args.runs} runs, medians; the server's CPU, every process"
        )
        for name, case in (("monolithic", monolithic), ("chunked", chunked)):
            for server in servers:
                profile = args.profile / f"{name}{suffix}" if args.profile else None
                rate, cost, faults = measure(server, case, workdir, args, form, profile)
                print(
                    f"{name:10} {server.label:6} {rate:7.0f} MB/s  {cost:6.2f} ms CPU per MiB  "
                    f"{faults:7.1f} page faults per MiB",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
