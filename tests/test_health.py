"""`/livez` and `/readyz` on a real server with two workers: what probes see when the
database, the schema or the storage fails, and when shutdown begins."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.server import RunningServer

POLL_SECONDS = 30.0  # a deadline for a state to show up, not a measure of anything


def _poll(url: str, wanted: int) -> httpx.Response:
    """GET `url` until it answers `wanted` (readiness results are cached a few seconds)."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        response = httpx.get(url, timeout=10.0)
        if response.status_code == wanted or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path / "data", workers=2).start()
    yield running
    running.kill()


def test_livez_answers_without_credentials_and_says_nothing_private(
    own_server: RunningServer,
) -> None:
    response = httpx.get(f"{own_server.url}/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response.headers["cache-control"]


def test_readyz_is_ready_when_database_schema_and_storage_answer(
    own_server: RunningServer,
) -> None:
    response = httpx.get(f"{own_server.url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": "ok", "storage": "ok"},
    }


def test_readyz_names_failing_storage_and_recovers(own_server: RunningServer) -> None:
    storage = own_server.data_dir / "storage"
    aside = own_server.data_dir / "storage-aside"
    storage.rename(aside)
    storage.write_text("not a directory")  # every write under it now fails
    try:
        response = _poll(f"{own_server.url}/readyz", 503)
        assert response.status_code == 503
        body = response.json()
        assert body["checks"]["storage"] == "failing"
        assert body["checks"]["database"] == "ok"
        assert str(own_server.data_dir) not in response.text  # nothing private
    finally:
        storage.unlink()
        aside.rename(storage)
    assert _poll(f"{own_server.url}/readyz", 200).status_code == 200
    # liveness never depended on it
    assert httpx.get(f"{own_server.url}/livez").status_code == 200


def test_readyz_names_a_schema_behind_the_code(own_server: RunningServer) -> None:
    database = sqlite3.connect(own_server.data_dir / "registry.db")
    (head,) = database.execute("SELECT version_num FROM alembic_version").fetchone()
    with database:
        database.execute("UPDATE alembic_version SET version_num = '0001'")
    try:
        response = _poll(f"{own_server.url}/readyz", 503)
        assert response.status_code == 503
        assert response.json()["checks"] == {
            "database": "ok",
            "schema": "failing",
            "storage": "ok",
        }
    finally:
        with database:
            database.execute("UPDATE alembic_version SET version_num = ?", (head,))
        database.close()
    assert _poll(f"{own_server.url}/readyz", 200).status_code == 200


def test_readyz_turns_503_as_soon_as_shutdown_begins(tmp_path: Path) -> None:
    running = RunningServer(
        tmp_path / "data", workers=2, env={"OCIREGISTRY_SHUTDOWN_DELAY_SECONDS": "5"}
    ).start()
    try:
        assert httpx.get(f"{running.url}/readyz").status_code == 200
        assert running.process is not None
        os.killpg(running.process.pid, signal.SIGTERM)
        assert _poll(f"{running.url}/readyz", 503).status_code == 503
        seen = [httpx.get(f"{running.url}/readyz", timeout=10.0) for _ in range(4)]
        assert all(r.status_code == 503 for r in seen), [r.status_code for r in seen]
        assert seen[0].json()["checks"] == {"shutdown": "shutting down"}
        assert httpx.get(f"{running.url}/livez", timeout=10.0).status_code == 200
        assert running.process.wait(timeout=60) == 0
    finally:
        running.kill()
