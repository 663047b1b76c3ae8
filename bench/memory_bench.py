#!/usr/bin/env python3
"""How much memory the server takes: its supervisor and each worker, idle, at 100,000
repositories, and during a 1 GiB upload (and its download), beside Distribution's idle figure.

Issue 15 asks for a supervisor of at most 30 MiB (it needs none of the application) and
workers under 100 MiB idle and under 150 MiB at 100,000 repositories and during a 1 GiB upload.
For each process this prints RSS, PSS (shared pages divided among the processes that map them)
and USS (private pages: what the process alone costs) from /proc/PID/smaps_rollup, at the end of
each phase and the peak sampled during it (every 50 ms).

Phases, on one server with `--workers` workers (2 by default; access log off, as in
growth_bench.py):
1. idle: started, a few requests answered, then left alone for `--settle` seconds;
2. sign-in: stopped, seeded to `--repositories` images over 10 registries and as many tags of
   one image (growth_bench.py's seeding), started again; two token requests with the user's
   password, each an Argon2id check that takes 64 MiB while it runs (argon2-cffi's recommended
   parameters), shown apart from the rest;
3. 100k: every list of growth_bench.py asked `--rounds` times (the /v2 catalog, tags, the
   /api/v1 lists and searches), with a token;
4. upload, with a push token (no password check): a 1 GiB monolithic push, then a 1 GiB
   chunked push (64 MiB PATCHes), then a pull.

Distribution (Debian's `docker-registry` 2.8.2 by default, `--reference BINARY` for another, such
as v3.0.0 built by hand) is started with a filesystem store and its idle RSS/PSS/USS printed.

Run `python bench/memory_bench.py` (about two minutes; `--repositories 10000` for a quick run).
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from growth_bench import (
    CI_REGISTRY,
    PLATFORM_REGISTRIES,
    PUBLIC_REGISTRIES,
    USER,
    USER_REGISTRIES,
    Seeded,
    Server,
    bearer_token,
    cases,
    free_port,
    seed,
)
from registry.content import upload_in_chunks
from registry.harness import group_pids

MIB = 1 << 20
CHUNK = MIB
BIG_BLOB_MIB = 1024
PATCH_MIB = 64
SAMPLE_SECONDS = 0.05
FIELDS = ("Rss", "Pss", "USS")


def log(message: str) -> None:
    print(f"[memory] {message}", file=sys.stderr, flush=True)


def memory_of(pid: int) -> dict[str, int] | None:
    """RSS, PSS and USS of one process in bytes (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    values = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            values[name] = int(parts[0]) * 1024
    if "Rss" not in values:
        return None
    values["USS"] = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values


def role(pid: int, supervisor: int) -> str:
    if pid == supervisor:
        return "supervisor"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return "worker" if b"worker" in cmdline or b"spawn_main" in cmdline else "other"


@dataclass
class Sampler:
    """Peak and last RSS/PSS/USS of every process of the server group, sampled in a thread."""

    leader: int
    peaks: dict[int, dict[str, int]] = field(default_factory=dict)
    last: dict[int, dict[str, int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        for pid in group_pids(self.leader):
            values = memory_of(pid)
            if values is None:
                continue
            self.last[pid] = values
            peak = self.peaks.setdefault(pid, dict.fromkeys(FIELDS, 0))
            for name in FIELDS:
                peak[name] = max(peak[name], values[name])

    def __enter__(self) -> Sampler:
        def loop() -> None:
            while not self._stop.wait(SAMPLE_SECONDS):
                self.sample()

        self.sample()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.sample()


Rows = list[tuple[str, str, dict[str, int], dict[str, int] | None]]


def add_rows(rows: Rows, phase: str, sampler: Sampler) -> None:
    supervisor = sampler.leader
    workers = 0
    for pid in sorted(sampler.last, key=lambda p: (p != supervisor, p)):
        kind = role(pid, supervisor)
        if kind == "worker":
            workers += 1
            kind = f"worker {workers}"
        rows.append((phase, f"{kind} [{pid}]", sampler.last[pid], sampler.peaks.get(pid)))


def sign_in(server: Server, basic: str, repos: list[str]) -> str:
    """A push token for `repos`: the one password check (Argon2id, 64 MiB for its duration),
    so that the phases after it measure the lists and the transfers, not the hash."""
    response = httpx.get(
        f"{server.url}/auth/token",
        params=[("service", "ociregistry")]
        + [("scope", f"repository:{repo}:push,pull") for repo in repos],
        headers={"Authorization": basic},
    )
    response.raise_for_status()
    return response.json()["token"]


def big_content() -> tuple[bytes, str]:
    chunk = secrets.token_bytes(CHUNK)
    digest = hashlib.sha256()
    for _ in range(BIG_BLOB_MIB):
        digest.update(chunk)
    return chunk, "sha256:" + digest.hexdigest()


def push_big(client: httpx.Client, repo: str, chunk: bytes, digest: str, chunked: bool) -> None:
    size = BIG_BLOB_MIB * CHUNK
    if not chunked:

        def body() -> Iterator[bytes]:
            for _ in range(BIG_BLOB_MIB):
                yield chunk

        response = client.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": digest},
            content=body(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        response.raise_for_status()
        return
    upload_in_chunks(
        client, repo, itertools.repeat(chunk * PATCH_MIB, BIG_BLOB_MIB // PATCH_MIB), digest
    )


def pull_big(client: httpx.Client, repo: str, digest: str) -> int:
    received = 0
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
        response.raise_for_status()
        for part in response.iter_bytes(CHUNK):
            received += len(part)
    return received


def reference_idle(binary: str, folder: Path, settle: float) -> dict[str, int]:
    """Distribution with a filesystem store and nothing else, idle for `settle` seconds."""
    port = free_port()
    config = folder / "reference.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'reference-data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for _ in range(20):
            httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=5)
        time.sleep(settle)
        values = memory_of(process.pid)
        assert values is not None, "the reference exited"
        return values
    finally:
        process.terminate()
        process.wait(timeout=30)


def mib(value: int | None) -> str:
    return "" if value is None else f"{value / MIB:.1f}"


def print_table(rows: Rows, reference: tuple[str, dict[str, int]] | None) -> None:
    print("| phase | process | RSS | PSS | USS | peak RSS | peak PSS | peak USS |")
    print("|---|---|---|---|---|---|---|---|")
    for phase, process, last, peak in rows:
        peak = peak or {}
        print(
            f"| {phase} | {process} | {mib(last['Rss'])} | {mib(last['Pss'])} | "
            f"{mib(last['USS'])} | {mib(peak.get('Rss'))} | {mib(peak.get('Pss'))} | "
            f"{mib(peak.get('USS'))} |"
        )
    if reference is not None:
        name, values = reference
        print(
            f"| idle | {name} | {mib(values['Rss'])} | {mib(values['Pss'])} | "
            f"{mib(values['USS'])} | | | |"
        )
    print("(MiB; from /proc/PID/smaps_rollup; USS = Private_Clean + Private_Dirty)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="requests per list at 100k")
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds before reading")
    parser.add_argument("--reference", default="docker-registry", help="Distribution binary")
    parser.add_argument("--no-upload", action="store_true", help="skip the 1 GiB phase")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    rows: Rows = []
    server: Server | None = None
    try:
        data_dir = folder / "data"
        password = secrets.token_urlsafe(12)
        env = {**os.environ, "OCIREGISTRY_ADMIN_PASSWORD": secrets.token_urlsafe(12)}
        env["OCIREGISTRY_TOKEN_TTL_SECONDS"] = "3600"
        server = Server(data_dir, args.workers, env)
        server.start()  # migrates the schema and makes the signing key
        server.stop()
        server.cli("user", "add", USER, "--password-stdin", stdin=password + "\n")
        for name in USER_REGISTRIES:
            public = ["--public"] if name in PUBLIC_REGISTRIES else []
            server.cli("registry", "create", name, "--owner", USER, *public)
        for name in PLATFORM_REGISTRIES:
            server.cli("registry", "create", name, "--platform")
        basic = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()

        log("idle")
        server.start()
        assert server.process is not None
        for _ in range(20):
            httpx.get(f"{server.url}/v2/", headers={"Authorization": basic})
        time.sleep(args.settle)
        with Sampler(server.process.pid) as sampler:
            time.sleep(1)
        add_rows(rows, "idle", sampler)
        server.stop()

        log(f"seeding {args.repositories:,} images and tags")
        seed(f"sqlite+aiosqlite:///{data_dir / 'registry.db'}", Seeded(), args.repositories)
        server.start()
        with Sampler(server.process.pid) as sampler:
            authorization = bearer_token(server, basic)  # lists: catalog and ci pull
            pusher = "Bearer " + sign_in(
                server, basic, [f"{CI_REGISTRY}/big", f"{CI_REGISTRY}/big2"]
            )
            time.sleep(1)
        add_rows(rows, "sign-in (argon2)", sampler)
        with (
            Sampler(server.process.pid) as sampler,
            httpx.Client(
                base_url=server.url, headers={"Authorization": authorization}, timeout=300
            ) as client,
        ):
            for label, path in cases():
                log(f"{label} x {args.rounds}")
                for _ in range(args.rounds):
                    client.get(path).raise_for_status()
        add_rows(rows, f"{args.repositories // 1000}k", sampler)

        if not args.no_upload:
            chunk, digest = big_content()
            repo = f"{CI_REGISTRY}/big"
            with (
                Sampler(server.process.pid) as sampler,
                httpx.Client(
                    base_url=server.url, headers={"Authorization": pusher}, timeout=600
                ) as client,
            ):
                log("1 GiB monolithic upload")
                push_big(client, repo, chunk, digest, chunked=False)
                log("1 GiB chunked upload (64 MiB PATCHes)")
                push_big(client, f"{repo}2", chunk, digest, chunked=True)
                log("1 GiB download")
                assert pull_big(client, repo, digest) == BIG_BLOB_MIB * CHUNK
            add_rows(rows, "1 GiB up/down", sampler)
        server.stop()

        reference = None
        binary = shutil.which(args.reference) or args.reference
        if Path(binary).is_file():
            log(f"reference {binary}")
            reference = (
                f"Distribution ({Path(binary).name})",
                reference_idle(binary, folder, args.settle),
            )
        print_table(rows, reference)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
