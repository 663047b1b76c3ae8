#!/usr/bin/env python3
"""What exact storage usage costs: small pushes and manifest PUTs, with and without it.

"With" is this checkout; "without" is the same registry at the commit before usage accounting
(found in git: the parent of the commit that added catalog/usage.py, or `--base REV`), its
`src/` extracted to a temporary folder and run from there. Both servers run side by side, as
`bench/registry_bench.py` runs ours (2 workers, a bench user pushing with Bearer tokens). Each
round measures both, alternating which goes first:

- small pushes: fresh one-layer images (1-4 KiB layer, a config, the manifest), 8 at a time;
- manifest PUTs: manifests whose blobs were uploaded before the clock started, 8 at a time,
  each a new manifest (so each one adds its references to the usage tables).

The report gives the medians and the cost in per cent; the issue asks for under 5 %.

    python bench/usage_bench.py [--rounds N] [--pushes N] [--manifests N] [--base REV]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from registry_bench import (
    FORM_POST,
    HTTP_TIMEOUT,
    OCI_MANIFEST,
    OCTET_STREAM,
    REGISTRY,
    OurServer,
    auth_headers,
    expect,
    git,
    image_config,
    image_manifest,
    log,
    make_pushes,
    push_all,
    sha256_digest,
)

TARGET_COST_PERCENT = 5.0
CONCURRENCY = 8
ROOT = Path(__file__).resolve().parent.parent


class BaseServer(OurServer):
    """Our server as it was at `revision`, from a copy of that commit's `src/`."""

    def __init__(self, workdir: Path, workers: int, revision: str) -> None:
        self.label = "without"
        super().__init__(workdir, workers)
        source = workdir / "base-src"
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
        ).stdout
        source.mkdir(parents=True, exist_ok=True)
        archive_path = workdir / "base.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(source, filter="data")
        self.env["PYTHONPATH"] = str(source / "src")


class CurrentServer(OurServer):
    def __init__(self, workdir: Path, workers: int) -> None:
        self.label = "with"
        super().__init__(workdir, workers)


def base_revision() -> str:
    added = git("log", "--diff-filter=A", "--format=%H", "--", "src/ociregistry/catalog/usage.py")
    if not added:
        raise SystemExit("no commit adds catalog/usage.py here; pass --base REV")
    return added.splitlines()[-1] + "^"


async def put_manifests(server: OurServer, count: int, label: str) -> float:
    """Upload `count` configs and a few shared layers, then time `count` manifest PUTs."""
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
    queue: asyncio.Queue[tuple[str, str, bytes, bytes]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    connected = asyncio.Barrier(CONCURRENCY + 1)

    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=HTTP_TIMEOUT
        ) as client:
            await client.get("/v2/")
            await connected.wait()
            while not queue.empty():
                repo, tag, _, manifest = queue.get_nowait()
                response = await client.put(
                    f"/v2/{repo}/manifests/{tag}",
                    content=manifest,
                    headers={"Content-Type": OCI_MANIFEST},
                )
                expect(response, 201, "PUT manifest")

    tasks = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    await connected.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    return count / (time.perf_counter() - started)


async def upload(client: httpx.AsyncClient, repo: str, blob: bytes) -> None:
    response = await client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": sha256_digest(blob)},
        content=blob,
        headers={"Content-Type": OCTET_STREAM},
    )
    expect(response, 201, "POST ?digest=")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument("--manifests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--base", help="the revision without usage accounting")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    revision = args.base or base_revision()
    settings = SimpleNamespace(pushes=args.pushes, push_concurrency=CONCURRENCY)
    push_rate: dict[str, list[float]] = {"with": [], "without": []}
    put_rate: dict[str, list[float]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory(prefix="usage-bench-") as tmp:
        servers = [
            CurrentServer(Path(tmp), args.workers),
            BaseServer(Path(tmp), args.workers, revision),
        ]
        try:
            for server in servers:
                server.start()
                # the platform usage route exists with accounting only: proof of what runs
                probe = httpx.get(f"{server.url}/api/v1/platform/usage", timeout=10)
                if (probe.status_code == 404) != (server.label == "without"):
                    raise SystemExit(f"{server.label}: not the code expected ({probe.status_code})")
            log(f"with: this checkout; without: {git('rev-parse', '--short', revision)}")
            for round_number in range(args.rounds):
                order = servers if round_number % 2 == 0 else servers[::-1]
                for server in order:
                    pushes = make_pushes(settings, f"{server.label}-{round_number}")
                    os.sync()
                    seconds = asyncio.run(push_all(server, pushes, CONCURRENCY, FORM_POST))
                    push_rate[server.label].append(len(pushes) / seconds)
                    os.sync()
                    label = f"{server.label}-{round_number}"
                    rate = asyncio.run(put_manifests(server, args.manifests, label))
                    put_rate[server.label].append(rate)
                    log(
                        f"round {round_number + 1} {server.label}: "
                        f"{push_rate[server.label][-1]:.1f} pushes/s, {rate:.1f} PUTs/s"
                    )
        finally:
            for server in servers:
                server.stop()
    print()
    print(f"{'':32} {'with':>10} {'without':>10} {'cost':>8}")
    for title, rates in (
        (f"small pushes/s, concurrency {CONCURRENCY}", push_rate),
        (f"manifest PUTs/s, concurrency {CONCURRENCY}", put_rate),
    ):
        with_, without = statistics.median(rates["with"]), statistics.median(rates["without"])
        cost = (without - with_) / without * 100
        print(f"{title:32} {with_:10.1f} {without:10.1f} {cost:7.1f}%")
    print(f"(medians of {args.rounds} rounds; goal: under {TARGET_COST_PERCENT:.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
