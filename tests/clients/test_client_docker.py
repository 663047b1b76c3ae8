"""docker push / pull against the real server, the way a user guide tells people to do it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from clienttools import Docker, pushed_digest

from support.images import DOCKER_MANIFEST, rootfs_tar
from support.server import RunningServer

pytestmark = pytest.mark.clients


def import_image(docker: Docker, tmp_path: Path, label: str) -> str:
    """A fresh one-layer image in the daemon (from a tar: there is no base image to pull)."""
    tar = rootfs_tar(tmp_path / "rootfs.tar", label)
    return docker.import_tar(tar, f"ociregistry-test/{label}:src")


def test_docker_push_then_pull_by_tag_and_by_digest(
    server: RunningServer, registry: str, docker: Docker, tmp_path: Path, client: httpx.Client
) -> None:
    image_id = import_image(docker, tmp_path, f"docker-{registry}")
    repository = f"{server.address}/{registry}/app"
    reference = f"{repository}:1.0"
    docker.tag(image_id, reference)

    push = docker("push", reference)
    digest = pushed_digest(push.output)

    # The registry serves the manifest docker pushed under the tag, with that digest.
    head = client.head(f"/v2/{registry}/app/manifests/1.0", headers={"Accept": DOCKER_MANIFEST})
    assert head.status_code == 200, head
    assert head.headers["Docker-Content-Digest"] == digest

    # Forget the image locally, so the pulls below must fetch every blob from the registry.
    docker("rmi", "--force", image_id)
    assert docker.image_id(image_id) is None

    docker.pull(reference)
    assert docker.image_id(reference) == image_id

    docker("rmi", "--force", image_id)
    by_digest = f"{repository}@{digest}"
    pull = docker.pull(by_digest)
    assert digest in pull.output, pull.describe()
    assert docker.image_id(by_digest) == image_id
    assert by_digest in docker.repo_digests(by_digest)


def test_docker_push_to_second_repository_mounts_layers(
    server: RunningServer, registry: str, docker: Docker, tmp_path: Path, client: httpx.Client
) -> None:
    image_id = import_image(docker, tmp_path, f"mount-{registry}")
    first = f"{server.address}/{registry}/app:1.0"
    second = f"{server.address}/{registry}/copy:1.0"
    docker.tag(image_id, first)
    first_push = docker("push", first)
    assert "Pushed" in first_push.output, first_push.describe()

    docker.tag(image_id, second)
    second_push = docker("push", second)

    # docker asks for a cross-repository mount of each layer it knows is in {registry}/app;
    # a registry that mounts answers 201 and docker prints "Mounted from", not "Pushed".
    assert f"Mounted from {registry}/app" in second_push.output, second_push.describe()
    assert "Pushed" not in second_push.output, second_push.describe()
    assert pushed_digest(second_push.output) == pushed_digest(first_push.output)

    tags = client.get(f"/v2/{registry}/copy/tags/list")
    assert tags.status_code == 200, tags.text
    assert tags.json()["tags"] == ["1.0"]


def test_docker_shows_the_quota_message_as_is(
    server: RunningServer, registry: str, docker: Docker, tmp_path: Path, client: httpx.Client
) -> None:
    """Issue 14: a push over the registry's quota fails at the manifest with a message docker
    prints word for word: what the registry uses, its quota, what the push needs."""
    patched = client.patch(f"/api/v1/registries/{registry}", json={"quota_bytes": 1000})
    assert patched.status_code == 200, patched.text
    image_id = import_image(docker, tmp_path, f"quota-{registry}")
    reference = f"{server.address}/{registry}/app:1.0"
    docker.tag(image_id, reference)

    push = docker("push", reference, check=False)
    assert push.returncode != 0, push.describe()
    assert f"denied: registry {registry} would exceed its storage quota" in push.output, (
        push.describe()
    )
    assert "uses 0 B of 1000 B and this push needs" in push.output, push.describe()
    assert client.head(f"/v2/{registry}/app/manifests/1.0").status_code == 404


def test_docker_shows_the_immutable_tag_message_as_is(
    server: RunningServer, registry: str, docker: Docker, tmp_path: Path, client: httpx.Client
) -> None:
    """Issue 14: pushing another image under an immutable tag fails with a message docker
    prints word for word, naming the tag and the rule; the same image again succeeds."""
    patched = client.patch(f"/api/v1/registries/{registry}", json={"immutable_tags": ["v*"]})
    assert patched.status_code == 200, patched.text
    reference = f"{server.address}/{registry}/app:v1"
    first = import_image(docker, tmp_path / "first", f"immutable-1-{registry}")
    docker.tag(first, reference)
    docker("push", reference)
    again = docker("push", reference, check=False)
    assert again.returncode == 0, again.describe()

    second = import_image(docker, tmp_path / "second", f"immutable-2-{registry}")
    docker.tag(second, reference)
    push = docker("push", reference, check=False)
    assert push.returncode != 0, push.describe()
    assert f"denied: tag v1 of {registry}/app is immutable (rule 'v*' of the registry)" in (
        push.output
    ), push.describe()
