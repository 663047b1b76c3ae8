"""The process model of `ociregistry serve`: a small supervisor that imports none of the
application, and worker processes that each import it for themselves.

The supervisor is the process the test started (`serve` replaces itself with it); what it
imported shows in /proc/PID/maps as the shared objects of native extensions, which every heavy
part of the application carries (SQLAlchemy, sqlite3, cryptography, argon2's cffi, uvloop).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from support.server import RunningServer
from support.waiting import wait_for

# Native extensions loaded by the application (database, tokens, passwords, event loop).
APPLICATION_EXTENSIONS = ("_sqlite3", "sqlalchemy", "cryptography", "_cffi_backend", "uvloop")
SUPERVISOR_MAX_RSS_MIB = 30  # issue 15: the supervisor needs none of the application
DEADLINE_SECONDS = 60.0  # for states to show up, not a measure of anything


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _workers(server: RunningServer) -> set[int]:
    assert server.process is not None
    supervisor = server.process.pid
    found = set()
    for pid in server.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if pid != supervisor and b"ociregistry.ops.worker" in cmdline:
            found.add(pid)
    return found


def _serving(server: RunningServer) -> set[int]:
    """The workers whose application has started (a worker that exists may still be starting:
    killing the other one then would leave none serving)."""
    log = server.log()
    return {pid for pid in _workers(server) if f"[{pid}] Application startup complete" in log}


def test_the_supervisor_imports_none_of_the_application(server: RunningServer) -> None:
    assert server.process is not None
    supervisor = server.process.pid
    mapped = _mapped(supervisor)
    assert [name for name in APPLICATION_EXTENSIONS if name in mapped] == []
    rss = _rss_mib(supervisor)
    print(f"\nsupervisor RSS {rss:.1f} MiB")
    assert rss <= SUPERVISOR_MAX_RSS_MIB
    # The workers do load the application: what the supervisor lacks is really looked for.
    workers = _workers(server)
    assert len(workers) == server.workers
    for pid in workers:
        assert "uvloop" in _mapped(pid) and "cryptography" in _mapped(pid)


def test_the_workers_share_one_signal_of_the_write_lock(server: RunningServer) -> None:
    """Each worker gets the supervisor's eventfd, by which a worker that releases SQLite's
    write lock wakes another waiting for it (`db/write_lock.py`): the same descriptor
    number in each (inherited), an eventfd."""
    assert server.workers > 1
    given = set()
    for pid in _workers(server):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        fd = int(argv[argv.index("--write-lock-fd") + 1])
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventfd]"
        given.add(fd)
    assert len(given) == 1


def test_sighup_replaces_every_worker_and_sigint_stops_cleanly(fresh_server: RunningServer) -> None:
    server = fresh_server
    assert server.process is not None
    before = _workers(server)
    assert len(before) == server.workers
    os.kill(server.process.pid, signal.SIGHUP)

    def replaced() -> bool:
        now = _workers(server)
        return len(now) == server.workers and not now & before

    wait_for(replaced, "new workers in place of the old ones", DEADLINE_SECONDS)

    def serving() -> bool:
        try:
            return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving, "the new workers to serve", DEADLINE_SECONDS)
    metrics_dir = Path(
        Path(f"/proc/{server.process.pid}/cmdline")
        .read_bytes()
        .split(b"\0")[-2]
        .decode()  # the supervisor's last argument: --metrics-dir DIR
    )
    assert metrics_dir.is_dir() and metrics_dir.name.startswith("ociregistry-metrics-")
    os.killpg(server.process.pid, signal.SIGINT)  # Ctrl-C in a terminal
    assert server.process.wait(timeout=DEADLINE_SECONDS) == 0
    assert not metrics_dir.exists()


# Never needed by a worker serving the registry: Alembic (serve migrates), the S3 client (only
# with s3:// storage) and the test and OpenAPI tooling.
NOT_IN_A_WORKER = (
    "alembic", "mako", "pygments", "aiobotocore", "botocore", "schemathesis", "hypothesis",
    "jsonschema", "openapi_spec_validator", "pytest",
)  # fmt: skip

WORKER_PROBE = """
import asyncio, sys
from ociregistry.app import create_app_from_environment

async def main():
    app = create_app_from_environment()
    async with app.router.lifespan_context(app):
        pass

asyncio.run(main())
print(" ".join(sorted(sys.modules)))
"""


def test_a_worker_imports_only_what_it_serves_with(server: RunningServer) -> None:
    """What a worker does (import the app, run its startup and shutdown), in a fresh
    interpreter on the server's data folder: nothing it never uses is loaded."""
    env = {**server.env, "OCIREGISTRY_DATA_DIR": str(server.data_dir)}
    probe = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    loaded = {name.split(".")[0] for name in probe.stdout.split()}
    assert "starlette" in loaded and "sqlalchemy" in loaded  # the probe did load the app
    assert sorted(loaded & set(NOT_IN_A_WORKER)) == []


def test_the_worker_finds_the_same_migration_head_as_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from ociregistry.db.database import MIGRATIONS
    from ociregistry.ops.health import migration_head

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert migration_head() == ScriptDirectory.from_config(config).get_current_head()


def test_a_worker_that_cannot_start_during_an_outage_does_not_stop_the_server(
    fresh_server: RunningServer,
) -> None:
    """A worker killed while the storage is away is replaced by one whose start fails; the
    other worker keeps serving, and once the storage is back a new worker starts. Before,
    the supervisor took that failed start for a broken installation and stopped everything."""
    wait_for(lambda: len(_serving(fresh_server)) == 2, "two workers serving", DEADLINE_SECONDS)
    assert fresh_server.process is not None
    storage = fresh_server.data_dir / "storage"
    aside = fresh_server.data_dir / "storage-aside"
    victim = min(_workers(fresh_server))
    storage.rename(aside)
    storage.write_text("not a directory")  # a worker's start now fails on the storage
    try:
        os.kill(victim, signal.SIGKILL)
        process = fresh_server.process
        wait_for(
            lambda: (
                "failed its start while another serves" in fresh_server.log()
                or process.poll() is not None
            ),
            "the supervisor to see a replacement worker fail its start",
            DEADLINE_SECONDS,
        )
        assert fresh_server.process.poll() is None, fresh_server.log()
        assert httpx.get(f"{fresh_server.url}/livez").status_code == 200
    finally:
        storage.unlink()
        aside.rename(storage)
    wait_for(lambda: len(_workers(fresh_server)) == 2, "a replacement worker", DEADLINE_SECONDS)
    wait_for(
        lambda: httpx.get(f"{fresh_server.url}/readyz").status_code == 200,
        "readiness again",
        DEADLINE_SECONDS,
    )
    assert fresh_server.process.poll() is None
