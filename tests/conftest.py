"""Shared fixtures: a real registry server process and unique names for each test."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import s3gateway
from support.cluster import Cluster, require_nginx
from support.pgcluster import URL_ENV, PostgresCluster, chosen_database
from support.s3gateway import S3Gateway
from support.server import RunningServer

_counter = itertools.count()


# `OCIREGISTRY_TEST_DATABASE=postgres` (support/pgcluster.py) runs the shared server on a
# PostgreSQL cluster of its own instead of the embedded SQLite.
# `OCIREGISTRY_TEST_SERVER=cluster` makes the shared server three instances on PostgreSQL and S3
# behind nginx (tests/support/cluster.py): scripts/test runs the client, API and console tests a
# third time so, to prove that any instance may answer any request.
SERVER_ENV = "OCIREGISTRY_TEST_SERVER"


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One registry for the whole session; tests keep apart by using their own registries."""
    database = chosen_database()
    kind = os.environ.get(SERVER_ENV, "single")
    if kind not in ("single", "cluster"):
        pytest.exit(f"{SERVER_ENV} must be single or cluster, not {kind!r}", returncode=4)
    if kind == "cluster":
        # The cluster duck-types as a RunningServer: address, url, admin, cli, env, data_dir, log.
        yield request.getfixturevalue("cluster")
        return
    cluster = PostgresCluster().start() if database == "postgres" else None
    env = {URL_ENV: cluster.create_database("shared")} if cluster else None
    running = RunningServer(tmp_path_factory.mktemp("shared") / "data", env=env).start()
    yield running
    running.stop()
    if cluster is not None:
        cluster.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A registry of this test's own, for restarts and crashes."""
    running = RunningServer(tmp_path / "data").start()
    yield running
    running.kill()


@pytest.fixture
def registry_name() -> str:
    """A registry (namespace) name no other test uses."""
    return f"reg{os.getpid()}-{next(_counter)}"


@pytest.fixture
def registry(server: RunningServer, registry_name: str) -> str:
    """A fresh, existing public registry on the shared server."""
    server.create_registry(registry_name)
    return registry_name


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client signed in as the platform admin (Basic credentials on every request)."""
    with httpx.Client(base_url=server.url, timeout=60.0, auth=server.admin) as http:
        yield http


@pytest.fixture(scope="module")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for one test module, with the server settings of the module's
    `POSTGRES_SETTINGS` (a dict of `-c` options) if it has any; each test takes a database of
    its own on it (`create_database`)."""
    settings = getattr(request.module, "POSTGRES_SETTINGS", None)
    cluster = PostgresCluster(settings).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test twice: on SQLite ("", the registry's own file in its data folder) and on a
    fresh database of the module's PostgreSQL cluster, for code whose SQL differs by dialect.
    (A module-scoped registry takes `support.pgcluster.fresh_database` instead.)"""
    if request.param == "sqlite":
        return ""
    postgres: PostgresCluster = request.getfixturevalue("postgres")
    return postgres.create_database(f"test{next(_counter)}")


@pytest.fixture(scope="session")
def s3_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Gateway]:
    """A real S3 server (Ceph's RADOS Gateway) for the whole session, started on first use
    (about 6 s) and stopped, every daemon, at the end. Without Ceph the S3 tests skip, except in
    the full run (OCIREGISTRY_REQUIRE_CLIENTS=1), where they fail."""
    if not s3gateway.installed():
        reason = f"Ceph is not installed (apt-get install {' '.join(s3gateway.PACKAGES)})"
        if os.environ.get("OCIREGISTRY_REQUIRE_CLIENTS") == "1":
            pytest.fail(f"{reason} (OCIREGISTRY_REQUIRE_CLIENTS=1)", pytrace=False)
        pytest.skip(reason)
    gateway = S3Gateway(tmp_path_factory.mktemp("s3gateway"))
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def cluster(s3_gateway: S3Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three instances on one PostgreSQL and one bucket behind nginx (tests/support/cluster.py), for
    the `cluster` tests; a test that kills an instance gets it back before the next test."""
    require_nginx()
    postgres = PostgresCluster().start()
    running = Cluster(tmp_path_factory.mktemp("cluster"), postgres, s3_gateway)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        postgres.stop()
