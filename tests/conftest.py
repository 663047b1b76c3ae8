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

from server import RunningServer

_counter = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One registry for the whole session; tests keep apart by using their own registries."""
    running = RunningServer(tmp_path_factory.mktemp("shared") / "data").start()
    yield running
    running.stop()


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
