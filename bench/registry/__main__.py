"""`python bench/registry_bench.py` (or `python -m registry` from bench/): the command line."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .cases import Bench, run_measurements
from .content import make_seed, probe_upload_form, seed_server
from .harness import (
    FORM_POST,
    FORM_POST_PUT,
    BenchError,
    Distribution,
    OurServer,
    Server,
    Settings,
    ensure_tools,
    log,
)
from .report import (
    CpuWatch,
    machine_info,
    print_header,
    print_table,
    tool_versions,
    wait_until_idle,
    write_json,
)


def choose_upload_form(servers: list[Server]) -> str:
    """Use single-request `POST ?digest=` only if every server under test completes it."""
    supported = {server.label: probe_upload_form(server) for server in servers}
    log(f"POST ?digest= completes an upload: {supported}")
    return FORM_POST if all(supported.values()) else FORM_POST_PUT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    description = PACKAGE_DOC.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="registry_bench.py", description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 32 MiB blobs, 3 s load, 40 pushes, fewer runs",
    )
    parser.add_argument(
        "--only",
        choices=["ours", "theirs"],
        help="measure one server alone (no ratios); with theirs, ours still runs, unmeasured, "
        "as its token server",
    )
    parser.add_argument(
        "--theirs-cache",
        choices=["inmemory", "none"],
        default="inmemory",
        help="Distribution's storage.cache.blobdescriptor (default: inmemory)",
    )
    parser.add_argument(
        "--pull-auth",
        choices=["token", "anonymous"],
        default="token",
        help="read tests on our server: with a pull token, as docker sends once /v2/ answers "
        "401 (default), or anonymous (the registry is public)",
    )
    parser.add_argument("--workers", type=int, default=2, help="our uvicorn workers (default 2)")
    parser.add_argument(
        "--reference",
        default="docker-registry",
        metavar="BINARY",
        help="the Distribution binary to compare with (default: Debian's docker-registry, "
        "2.8.2); e.g. a v3.0.0 built by hand, which verifies our tokens through our JWK Set",
    )
    parser.add_argument(
        "--repetitions", type=int, help="load and parallel-download runs per figure (median)"
    )
    parser.add_argument(
        "--tags", type=int, default=1000, help="tags in the repository tags/list reads (1000)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before measuring, wait up to this long for other processes to leave the CPUs idle",
    )
    parser.add_argument("--blob-mib", type=int, help="override the blob size")
    parser.add_argument("--load-seconds", type=int, help="override the wrk/hey duration")
    parser.add_argument("--runs", type=int, help="override the runs per download and upload")
    parser.add_argument("--pushes", type=int, help="override the number of small pushes")
    parser.add_argument(
        "--push-rounds", type=int, help="rounds of small pushes per server, alternating (median)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (data dirs, server logs)"
    )
    return parser.parse_args(argv)


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so that the `finally` blocks stop the servers."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_termination()
    ensure_tools()
    settings = Settings.from_args(args)
    workdir = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    ours = OurServer(workdir, settings.ours_workers)
    servers: list[Server] = []
    if args.only != "theirs":
        servers.append(ours)
    if args.only != "ours":
        servers.append(
            Distribution(workdir, settings.theirs_cache, token_server=ours, binary=args.reference)
        )
    # Ours starts first, and also with `--only theirs`: it is Distribution's token server.
    running: list[Server] = [ours, *(server for server in servers if server is not ours)]
    try:
        for server in running:
            log(f"starting {server.label} on {server.url}")
            server.start()
        settings = Settings(**{**asdict(settings), "upload_form": choose_upload_form(servers)})
        seed = make_seed(workdir, settings)
        for server in servers:
            log(f"seeding {server.label}")
            seed_server(server, seed, settings.upload_form)
        if args.wait_idle:
            wait_until_idle(args.wait_idle)
        info, versions = machine_info(), tool_versions(servers)
        print_header(info, versions, servers, settings)
        watch = CpuWatch(servers)
        metrics = run_measurements(Bench(servers, settings, seed, workdir))
        other_share = watch.other_share()
        print_table(metrics, other_share)
        write_json(metrics, info, versions, servers, settings, other_share)
        return 0
    except KeyboardInterrupt:
        log("interrupted: stopping the servers")
        return 130
    except BenchError as error:
        log(f"failed: {error}")
        for server in running:
            log(f"{server.label} log ({server.log_path}):\n{server.log_tail()}")
        return 1
    finally:
        for server in running:
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
