"""A throw-away PostgreSQL cluster on 127.0.0.1 for tests (Debian's `postgresql` package, which
scripts/test installs), owned by the `postgres` user because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.server import free_port

URL_ENV = "OCIREGISTRY_DATABASE_URL"
# `OCIREGISTRY_TEST_DATABASE=postgres` runs the suite's databases on PostgreSQL instead of the
# embedded SQLite: scripts/test runs the API and access tests a second time so.
DATABASE_ENV = "OCIREGISTRY_TEST_DATABASE"


def chosen_database() -> str:
    """`sqlite` or `postgres`: the database this run puts under the shared server and under the
    modules that follow the run's choice (`database_url`)."""
    database = os.environ.get(DATABASE_ENV, "sqlite")
    if database not in ("sqlite", "postgres"):
        pytest.exit(f"{DATABASE_ENV} must be sqlite or postgres, not {database!r}", returncode=4)
    return database


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)


class PostgresCluster:
    """`initdb` and `pg_ctl start` in a temporary folder; `url` is the base connection URL."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        binaries = _binaries()
        if binaries is None:
            if os.environ.get("OCIREGISTRY_REQUIRE_CLIENTS") == "1":
                pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
            pytest.skip("PostgreSQL is not installed")
        self.binaries = binaries
        # Not under pytest's folder: that one is root's alone, and the cluster belongs to postgres.
        self.data = Path(tempfile.mkdtemp(prefix="ociregistry-postgres-"))
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"
        # Server settings (`-c name=value`), such as `log_lock_waits` for a test that reads
        # the server's log (`server_log`).
        self.settings = settings or {}

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
        initialised = _as_postgres(
            str(self.binaries / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        assert initialised.returncode == 0, initialised.stderr
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        started = _as_postgres(
            str(self.binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data / "log"),
            "-w",
            "start",
        )
        assert started.returncode == 0, started.stderr + started.stdout
        return self

    def server_log(self) -> str:
        """PostgreSQL's own log (errors such as `deadlock detected`, with both statements)."""
        done = _as_postgres("cat", str(self.data / "log"))
        return done.stdout

    def stop(self) -> None:
        _as_postgres(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.data, ignore_errors=True)

    def tool(self, *args: str) -> str:
        """Run a client tool (`createdb`, `psql`) against the cluster; its stdout."""
        tool, *rest = args
        done = _as_postgres(
            str(self.binaries / tool),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            *rest,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL for OCIREGISTRY_DATABASE_URL."""
        self.tool("createdb", name)
        return f"{self.url}/{name}"

    def restart(self) -> None:
        """Stop the server at once (`-m immediate`: every connection drops, as in a crash or a
        failover) and start it again with the same options; committed data survives."""
        done = _as_postgres(
            str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
            "-l", str(self.data / "log"), "restart",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout


@contextmanager
def fresh_database(database: str, name: str) -> Iterator[str]:
    """The `database_url` of a registry on `database`: "" (SQLite in its data folder) for
    `sqlite`; for `postgres`, database `name` on a cluster of its own, stopped on leaving."""
    if database == "sqlite":
        yield ""
        return
    cluster = PostgresCluster().start()
    try:
        yield cluster.create_database(name)
    finally:
        cluster.stop()
