"""Fixtures for the real-client tests: docker, podman and skopeo bound to this test run.

Each client is looked up once per session. When one is missing the tests that need it skip on
a developer's machine and fail in the full run (scripts/test sets OCIREGISTRY_REQUIRE_CLIENTS).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from clienttools import Docker, Podman, Skopeo, find_tool, unavailable


@pytest.fixture(scope="session")
def docker_session() -> Docker:
    """The docker client scripts/test found working against the daemon (API negotiation)."""
    docker = Docker(find_tool("docker", "OCIREGISTRY_DOCKER"))
    info = docker("version", "--format", "{{.Server.Version}}", check=False)
    if info.returncode != 0:
        unavailable(f"the docker daemon does not answer:\n{info.describe()}")
    return docker


@pytest.fixture
def docker(docker_session: Docker) -> Iterator[Docker]:
    yield docker_session
    docker_session.cleanup()


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(find_tool("podman"), tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def skopeo() -> Skopeo:
    return Skopeo(find_tool("skopeo"))
