#!/usr/bin/env python3
"""What a small push costs the server, counted where counting is possible, so the figures
hold on a busy machine where push rates do not: database transactions and SQL statements per
request (in-process, `push_cost_count.py`), and the server's CPU per push (one worker, from
/proc before and after the pushes).

A push is what docker sends for a small image: POST, then PUT ?digest= with the whole blob,
for a layer and a config, then the manifest PUT. `--python` runs the same with another
checkout's venv (an old tree's), so before and after compare side by side:

    python bench/push_cost_bench.py [--pushes N] [--python PATH] [--profile OUT.svg|OUT.txt]

`--profile` records the worker with py-spy (pip install py-spy) during the CPU run: a flame
graph for .svg, collapsed stacks otherwise. SQL statements are counted by sqlite3's trace of
every connection, whatever runs them; "through SQLAlchemy" are those SQLAlchemy executed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from registry.cases import make_pushes, push_all
from registry.harness import FORM_POST_PUT, OurServer

HERE = Path(__file__).resolve().parent
KINDS = ("POST", "PUT blob", "PUT manifest")
WARM_PUSHES = 20


def count(python: str, pushes: int) -> dict[str, Counter[str]]:
    """Transactions and statements per request kind, per push, in-process."""
    with tempfile.TemporaryDirectory(prefix="push-cost-") as tmp:
        env = {**os.environ, "OCIREGISTRY_PULL_COUNTING": "false"}
        verbose = os.environ.get("PUSH_COST_SHOW") or os.environ.get("PUSH_COST_PROFILE")
        done = subprocess.run(
            [python, str(HERE / "push_cost_count.py"), str(Path(tmp) / "data"), str(pushes)],
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.PIPE,
            text=True,
            env=env,
            timeout=600,
        )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    table: dict[str, Counter[str]] = {}
    for kind, what, n in json.loads(done.stdout.strip().splitlines()[-1]):
        if kind in KINDS:
            table.setdefault(kind, Counter())[what] = n / pushes
    return table


class Server(OurServer):
    """Our server, one worker, run by `python` (this checkout's or another one's)."""

    def __init__(self, workdir: Path, python: str) -> None:
        super().__init__(workdir, 1)
        self.python = python
        self.env["OCIREGISTRY_PULL_COUNTING"] = "false"

    def command(self) -> list[str]:
        return [self.python, *super().command()[1:]]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [self.python, "-m", "ociregistry", *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )


def _py_spy(pid: int, output: str) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-o", output]
    # --gil: only the thread that holds the GIL, which is where the worker spends its CPU.
    command += ["--pid", str(pid), "--subprocesses", "--rate", "1000", "--nonblocking", "--gil"]
    if not output.endswith(".svg"):
        command += ["--format", "raw"]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # attached before the clock starts
    return spy


def cpu(python: str, pushes: int, concurrency: int, profile: str | None) -> float:
    """Server CPU per push, milliseconds: one worker, /proc before and after the pushes."""
    with tempfile.TemporaryDirectory(prefix="push-cost-") as tmp:
        server = Server(Path(tmp), python)
        server.start()
        spy = None
        try:
            warm = make_pushes(
                SimpleNamespace(pushes=WARM_PUSHES, push_concurrency=concurrency), "w"
            )
            asyncio.run(push_all(server, warm, concurrency, FORM_POST_PUT))
            work = make_pushes(SimpleNamespace(pushes=pushes, push_concurrency=concurrency), "p")
            if profile and server.process is not None:
                spy = _py_spy(server.process.pid, profile)
            before = server.cpu_seconds()
            asyncio.run(push_all(server, work, concurrency, FORM_POST_PUT))
            spent = server.cpu_seconds() - before
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(60)
            server.stop()
    return spent * 1000 / pushes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--python", default=sys.executable, help="the server's Python")
    parser.add_argument("--profile", help="py-spy output of the CPU run (.svg, else raw)")
    parser.add_argument("--no-count", action="store_true", help="only the CPU figure")
    parser.add_argument("--no-cpu", action="store_true", help="only the counts")
    args = parser.parse_args(argv)
    print(f"per small push ({args.pushes} pushes, {args.python}):")
    if not args.no_count:
        table = count(args.python, min(args.pushes, 100))
        total: Counter[str] = Counter()
        for row in table.values():
            total.update(row)
        for kind in (*KINDS, "all"):
            row = total if kind == "all" else table.get(kind, Counter())
            print(
                f"  {kind:13} transactions {row['transactions']:5.2f}"
                f"  SQL statements {row['statements']:5.2f}"
                f"  through SQLAlchemy {row['sqlalchemy']:5.2f}"
            )
    if not args.no_cpu:
        per = cpu(args.python, args.pushes, args.concurrency, args.profile)
        print(f"  server CPU   {per:.2f} ms per push (one worker, concurrency {args.concurrency})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
