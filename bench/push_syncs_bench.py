#!/usr/bin/env python3
"""How many fsyncs a small push costs the server: counted, not timed, so it holds on a busy
machine where push rates do not.

A one-worker server from this checkout (or another one's Python, `--python`, such as an old
tree's venv) runs under `strace -f -c -e trace=fsync,fdatasync`; it takes two warm-up pushes,
then N small pushes as docker sends them (POST, then PUT ?digest= with the whole blob, for a
layer and a config, then the manifest PUT), one at a time. The server is run twice, with N = 0
and N = `--pushes`, and the difference divided by N, so start-up and warm-up cancel out.
SQLite syncs its WAL with fdatasync; the filesystem driver syncs blobs and folders with fsync.

    python bench/push_syncs_bench.py [--pushes N] [--python PATH]

Needs `strace` (Debian: strace).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from registry.cases import make_pushes, push_all
from registry.harness import FORM_POST_PUT, OurServer

SYSCALLS = ("fsync", "fdatasync")


class TracedServer(OurServer):
    """Our server, one worker, under strace; its CLI run by the same Python."""

    def __init__(self, workdir: Path, python: str) -> None:
        super().__init__(workdir, 1)
        self.python = python
        self.trace = self.workdir / "strace.txt"

    def command(self) -> list[str]:
        command = [self.python, *super().command()[1:]]
        trace = ["strace", "-f", "-c", "-o", str(self.trace), "-e", f"trace={','.join(SYSCALLS)}"]
        return [*trace, *command]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [self.python, "-m", "ociregistry", *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )


def count_syncs(python: str, pushes: int) -> dict[str, int]:
    """The fsync and fdatasync calls of a server's life with `pushes` small pushes in it."""
    with tempfile.TemporaryDirectory(prefix="push-syncs-") as tmp:
        server = TracedServer(Path(tmp), python)
        server.start()
        try:
            for label, count in (("warm", 2), ("push", pushes)):
                if count:
                    work = make_pushes(SimpleNamespace(pushes=count, push_concurrency=1), label)
                    asyncio.run(push_all(server, work, 1, FORM_POST_PUT))
        finally:
            server.stop()
        summary = server.trace.read_text()
    counts = {}
    for syscall in SYSCALLS:
        found = re.search(
            rf"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?{syscall}$", summary, re.M
        )
        counts[syscall] = int(found.group(1)) if found else 0
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--python", default=sys.executable, help="the server's Python")
    args = parser.parse_args(argv)
    base = count_syncs(args.python, 0)
    loaded = count_syncs(args.python, args.pushes)
    print(f"per small push ({args.pushes} pushes, one worker, {args.python}):")
    for syscall in SYSCALLS:
        print(f"  {syscall:10} {(loaded[syscall] - base[syscall]) / args.pushes:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
