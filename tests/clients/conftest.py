"""Fixtures for the real-client tests: docker, podman and skopeo bound to this test run.

Each client is looked up once per session. When one is missing the tests that need it skip on
a developer's machine and fail in the full run (scripts/test sets OCIREGISTRY_REQUIRE_CLIENTS).

Pushing needs a signed-in user, so the session's docker and podman log in to the shared server
as the platform admin (with credential stores in temp dirs, never the machine's own) and log
out when the session ends; skopeo is given credentials per call. Tests that need other users
make clients of their own (`Docker.as_user`, `Skopeo.with_auth_file`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from clienttools import Docker, Podman, Skopeo, find_tool, unavailable

from support.server import RunningServer


@pytest.fixture(scope="session")
def docker_session(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Docker]:
    """The docker client scripts/test found working against the daemon (API negotiation),
    signed in to the shared server as the platform admin."""
    docker = Docker(find_tool("docker", "OCIREGISTRY_DOCKER"), tmp_path_factory.mktemp("docker"))
    info = docker("version", "--format", "{{.Server.Version}}", check=False)
    if info.returncode != 0:
        unavailable(f"the docker daemon does not answer:\n{info.describe()}")
    login = docker.login(server.address, *server.admin)
    assert "Login Succeeded" in login.output, login.describe()
    yield docker
    docker.logout(server.address)


@pytest.fixture
def docker(docker_session: Docker) -> Iterator[Docker]:
    yield docker_session
    docker_session.cleanup()


@pytest.fixture(scope="session")
def podman(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with a store of its own, signed in to the shared server as the platform admin."""
    podman = Podman(find_tool("podman"), tmp_path_factory.mktemp("podman"))
    login = podman.login(server.address, *server.admin)
    assert "Login Succeeded" in login.output, login.describe()
    yield podman
    podman.logout(server.address)


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with an auth file nobody writes: anonymous unless a call passes credentials."""
    return Skopeo(find_tool("skopeo"), tmp_path_factory.mktemp("skopeo") / "auth.json")


@pytest.fixture(scope="session")
def admin_creds(server: RunningServer) -> str:
    """`user:password` of the platform admin, for skopeo's `--creds` options."""
    return ":".join(server.admin)
