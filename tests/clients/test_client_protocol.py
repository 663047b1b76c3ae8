"""docker against the protocol answers of issue 10: a one-level name fails at once with the
message that says the form of an image reference, and a signed-in user's push mounts the layers
of a public image of another registry (token auth, cross-registry mount)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from clienttools import Docker

from authtools import add_user
from support.images import rootfs_tar
from support.server import RunningServer

pytestmark = pytest.mark.clients


def test_docker_push_of_a_one_level_name_fails_at_once(
    server: RunningServer, registry_name: str, docker: Docker, tmp_path: Path
) -> None:
    """docker retries NAME_INVALID for about a minute; DENIED it does not retry at all."""
    name = registry_name.replace("-", "x")  # a single path component: no registry in it
    tar = rootfs_tar(tmp_path / "rootfs.tar", f"one-level-{name}")
    reference = f"{server.address}/{name}:1"
    docker.import_tar(tar, reference)

    push = docker("push", reference, check=False)

    assert push.returncode != 0, push.describe()
    assert "{host}/{registry}/{image}" in push.output, push.describe()
    assert "denied" in push.output.lower(), push.describe()
    attempts = [
        line
        for line in server.log().splitlines()
        if "POST" in line and f"/v2/{name}/blobs/uploads" in line
    ]
    # One try per layer (the image has one), never docker's five retries with back-off.
    assert len(attempts) <= 1, "\n".join(attempts)


def test_docker_push_mounts_from_a_public_registry_of_another_owner(
    server: RunningServer, registry: str, docker: Docker, tmp_path: Path
) -> None:
    """A user pushes an image whose layer is in a public registry they cannot push to: docker
    asks for a token naming both repositories and the layer is mounted, not uploaded."""
    tar = rootfs_tar(tmp_path / "rootfs.tar", f"cross-mount-{registry}")
    public = f"{server.address}/{registry}/base:1"
    image_id = docker.import_tar(tar, public)
    first = docker("push", public)
    assert "Pushed" in first.output, first.describe()

    username, password = f"mnt{registry.replace('-', '')}", "mount-user-password"
    add_user(server, username, password)
    own = f"{registry}-own"
    created = httpx.post(
        f"{server.url}/api/v1/registries",
        json={"name": own},
        auth=(username, password),
        timeout=60.0,
    )
    assert created.status_code == 201, created.text

    user = docker.as_user(tmp_path / "user-docker")
    user.login(server.address, username, password)
    target = f"{server.address}/{own}/app:1"
    user.tag(image_id, target)
    second = user("push", target)
    user.logout(server.address)

    assert f"Mounted from {registry}/base" in second.output, second.describe()
    assert "Pushed" not in second.output, second.describe()
