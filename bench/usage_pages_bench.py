#!/usr/bin/env python3
"""What exact usage costs a manifest PUT on SQLite, counted rather than timed.

On a shared machine the HTTP figures of `bench/usage_bench.py` move by ±10 % from run to run,
more than the cost they measure. This one runs a manifest PUT's transaction
(`catalog.images._record_manifest`, as the PUT handler runs it) in-process on a fresh SQLite
database, with usage upkeep and with it made a no-op (as usage_bench.py does: no usage rows,
the SQLite usage triggers dropped, the PUT's check of the manifest's
references made in both), and counts the pages each commit appends to the WAL (automatic
checkpoints off, so the WAL's length is the count): a commit's I/O, and most of its CPU, is
proportional to them, and the count does not depend on the machine's load. It also prints
the process's CPU per transaction (timed, so as noisy as the machine).

The work is usage_bench.py's: manifests of 8 images, each with a config of its own and two
layers every manifest shares, a tag each. With upkeep, the PUTs are followed by the counts
that a worker makes after them (catalog/usage_deferred.py: every `BATCH` PUTs, a transaction
that counts them all), whose pages and CPU are shared among those PUTs.

`--instructions` counts user-space instructions instead, with valgrind's callgrind (a count,
steady however busy the machine): the same transactions in four child processes, with and
without upkeep, each putting W (warm-up) and W + N manifests of the same prepared work; the
difference over N is the instructions per PUT, the whole process's (Python, SQLAlchemy, SQLite)
and nothing but the PUTs'.

    python bench/usage_pages_bench.py [--manifests N] [--rounds N] [--pushed] [--connections 2]
    python bench/usage_pages_bench.py --instructions [--manifests 300] [--warmup 200] [--pushed]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

import ociregistry.catalog.images as images
import ociregistry.catalog.usage as usage
import ociregistry.catalog.usage_deferred as usage_deferred
from ociregistry.db.database import _sqlite_sync_engine, migrate
from ociregistry.db.models import Registry
from ociregistry.manifests.parse import parse_manifest
from ociregistry.names import RepositoryName

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WAL_FRAME = 24 + 4096  # frame header and a page of the default size
UPKEEP = images.note_stored


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Database:
    """A migrated SQLite database with one registry, written as the server writes it."""

    def __init__(self, folder: Path, *, kept: bool, connections: int = 1) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "registry.db"
        url = f"sqlite+aiosqlite:///{self.path}"
        migrate(url)
        # The PUTs take turns on `connections` engines (a connection each, as each worker
        # has its own): SQLite drops a connection's page cache when another one committed
        # since its last transaction, so with two every PUT starts cold, as on the server.
        self.engines = [_sqlite_sync_engine(url) for _ in range(connections)]
        self.engine = self.engines[0]
        for engine in self.engines:
            event.listen(
                engine,
                "connect",
                lambda dbapi, _record: dbapi.execute("PRAGMA wal_autocheckpoint=0"),
            )
        with self.engine.begin() as conn:
            conn.execute(Registry.__table__.insert(), {"resource_id": "bench", "name": "bench"})
            if not kept:  # SQLite's upkeep runs in triggers too (migration 0018)
                for trigger in usage.SQLITE_TRIGGERS:
                    conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
        # Seeded, so that a count is repeatable: the same digests, the same B-trees.
        self.random = random.Random(14)
        self.layers = [self.random.randbytes(2000), self.random.randbytes(3000)]

    def wal_pages(self) -> float:
        wal = Path(f"{self.path}-wal")
        return (wal.stat().st_size - 32) / WAL_FRAME if wal.exists() else 0.0

    def checkpoint(self) -> None:
        raw = sqlite3.connect(self.path)
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        raw.close()

    def prepare(self, count: int, label: str, *, pushed: bool) -> list[tuple[Any, ...]]:
        """Upload (link) each manifest's blobs, as the pushes before the PUT do: all before
        the first PUT, or (`pushed`) each manifest's right before its PUT, as a client pushes
        an image (`put` links them then, outside the figures)."""
        work = []
        for n in range(count):
            repo = RepositoryName("bench", f"put{n % 8}")
            config = json.dumps(
                {"os": "linux", "label": f"{label}-{n}-{self.random.randbytes(4).hex()}"}
            )
            blobs = [config.encode(), *self.layers]
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(blobs[0]),
                    "size": len(blobs[0]),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer),
                        "size": len(layer),
                    }
                    for layer in self.layers
                ],
            }
            body = json.dumps(manifest).encode()
            if not pushed:
                self.link(repo, blobs)
            parsed = parse_manifest(body, OCI_MANIFEST)
            put = (repo, sha256(body), len(body), parsed, [f"{label}-{n}"])
            work.append((blobs if pushed else [], put))
        return work

    def link(self, repo: RepositoryName, blobs: list[bytes]) -> None:
        with self.engine.begin() as conn:
            for blob in blobs:
                images.link_blob_in(conn, repo, sha256(blob), len(blob))

    def put(self, work: list[tuple[Any, ...]], *, counted: bool) -> tuple[float, float]:
        """The PUTs' transactions, and (`counted`) the counts that follow them, as a worker
        counts them (`usage_deferred.BATCH` at a time, in a transaction of their own): WAL
        pages and CPU microseconds per PUT."""
        self.checkpoint()
        pages = cpu = 0.0
        for number, (blobs, item) in enumerate(work):
            if blobs:
                self.link(item[0], blobs)
            before = self.wal_pages()
            started = time.process_time()
            with self.engines[number % len(self.engines)].begin() as conn:
                images._record_manifest(conn, *item)
            if counted and ((number + 1) % usage_deferred.BATCH == 0 or number == len(work) - 1):
                with self.engines[(number + 1) % len(self.engines)].begin() as conn:
                    usage_deferred.count_pending(conn)
            cpu += time.process_time() - started
            pages += self.wal_pages() - before
        return pages / len(work), cpu * 1e6 / len(work)


def upkeep(on: bool) -> None:
    """The "off" upkeep: no usage rows (the PUT's check of the manifest's references, which
    the count leaves to the PUT, still made); `put` then counts nothing."""
    images.note_stored = UPKEEP if on else lambda *args, **kwargs: None


def child(label: str, prepared: int, count: int, pushed: bool) -> None:
    """One counted process: `prepared` manifests made ready, the first `count` put."""
    with tempfile.TemporaryDirectory(prefix="usage-count-") as tmp:
        database = Database(Path(tmp), kept=label == "kept")
        upkeep(label == "kept")
        work = database.prepare(prepared, label, pushed=pushed)
        database.put(work[:count], counted=label == "kept")


def instructions(label: str, prepared: int, count: int, pushed: bool) -> int:
    """The instructions callgrind counts in a child that puts `count` manifests."""
    command = [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        "--cache-sim=no",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        label,
        "--manifests",
        str(prepared),
        "--warmup",
        str(count),
        *(["--pushed"] if pushed else []),
    ]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no count from callgrind: {done.stderr[-2000:]}")
    return int(found.group(1))


def count_instructions(manifests: int, warmup: int, pushed: bool) -> None:
    """Instructions per PUT with and without upkeep: (W + N PUTs) - (W PUTs), over N."""
    per_put = {}
    for label in ("kept", "off"):
        prepared = warmup + manifests
        low = instructions(label, prepared, warmup, pushed)
        high = instructions(label, prepared, prepared, pushed)
        per_put[label] = (high - low) / manifests
        print(f"{label}: {low:,} and {high:,} instructions", file=sys.stderr)
    kept, off = per_put["kept"], per_put["off"]
    print(f"{'manifest PUT, SQLite':30} {'kept':>10} {'off':>10} {'upkeep':>10}")
    print(f"{'instructions per PUT':30} {kept:10,.0f} {off:10,.0f} {kept - off:10,.0f}")
    order = "each right after its blobs" if pushed else "after all their blobs"
    print(
        f"(callgrind, {manifests} PUTs after {warmup}, {order}; "
        f"upkeep {(kept - off) / off * 100:.1f} % of a PUT without it)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pushed",
        action="store_true",
        help="link each manifest's blobs right before its PUT, as a client pushes an image "
        "(default: every manifest's blobs before the first PUT, as usage_bench.py's PUTs)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per PUT with callgrind (--manifests after --warmup)",
    )
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="PUTs take turns on this many connections (2: each starts with a cold page "
        "cache, as with two workers; the timed CPU figure then includes reading pages back)",
    )
    parser.add_argument("--child", choices=("kept", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.manifests, args.warmup, args.pushed)
        return 0
    if args.instructions:
        manifests = 300 if "--manifests" not in (argv or sys.argv) else args.manifests
        count_instructions(manifests, args.warmup, args.pushed)
        return 0
    figures: dict[str, list[tuple[float, float]]] = {"kept": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="usage-pages-") as tmp:
        databases = {
            label: Database(Path(tmp) / label, kept=label == "kept", connections=args.connections)
            for label in figures
        }
        for round_number in range(args.rounds):
            for label in figures if round_number % 2 == 0 else list(figures)[::-1]:
                upkeep(label == "kept")
                work = databases[label].prepare(
                    args.manifests, f"{label}{round_number}", pushed=args.pushed
                )
                figures[label].append(databases[label].put(work, counted=label == "kept"))
                pages, cpu = figures[label][-1]
                print(
                    f"round {round_number + 1} {label}: {pages:.2f} WAL pages, "
                    f"{cpu:.0f} µs CPU per PUT",
                    file=sys.stderr,
                )
        upkeep(True)
    median = statistics.median
    print(f"{'manifest PUT, SQLite':30} {'kept':>8} {'off':>8} {'cost':>8}")
    for title, index in (("WAL pages per PUT", 0), ("CPU µs per PUT (timed)", 1)):
        kept = median(f[index] for f in figures["kept"])
        off = median(f[index] for f in figures["off"])
        print(f"{title:30} {kept:8.2f} {off:8.2f} {(kept - off) / off * 100:7.1f}%")
    order = "each right after its blobs" if args.pushed else "after all their blobs"
    print(
        f"(medians of {args.rounds} rounds of {args.manifests} PUTs, {order}, "
        f"on {args.connections} connection(s) in turn)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
