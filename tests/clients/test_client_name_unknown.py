"""Pushing into a registry (namespace) that does not exist fails with NAME_UNKNOWN.

Registries are created by an operator, never implicitly by a push; each client must show the
registry's NAME_UNKNOWN error to its user (docker, podman and skopeo print it as
"name unknown: ..."). The clients sign in as the platform admin first: a missing registry is
missing for everybody, so not even the admin gets an authentication error instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clienttools import NAME_UNKNOWN_PATTERN, Docker, Podman, Result, Skopeo

from support.images import build_image, rootfs_tar, write_oci_layout
from support.server import RunningServer

pytestmark = pytest.mark.clients

MISSING_REGISTRY = "no-such-registry"


def assert_name_unknown(result: Result) -> None:
    assert result.returncode != 0, result.describe()
    assert NAME_UNKNOWN_PATTERN.search(result.output), result.describe()


def test_docker_push_to_missing_registry(
    server: RunningServer, docker: Docker, tmp_path: Path
) -> None:
    tar = rootfs_tar(tmp_path / "rootfs.tar", f"missing-docker-{server.port}")
    reference = f"{server.address}/{MISSING_REGISTRY}/app:1"
    docker.import_tar(tar, reference)
    assert_name_unknown(docker("push", reference, check=False))


def test_podman_push_to_missing_registry(
    server: RunningServer, podman: Podman, tmp_path: Path
) -> None:
    tar = rootfs_tar(tmp_path / "rootfs.tar", f"missing-podman-{server.port}")
    reference = f"{server.address}/{MISSING_REGISTRY}/app:1"
    podman("import", "--quiet", tar, reference)
    assert_name_unknown(podman("push", "--tls-verify=false", reference, check=False))


def test_skopeo_copy_to_missing_registry(
    server: RunningServer, skopeo: Skopeo, tmp_path: Path, admin_creds: str
) -> None:
    source = write_oci_layout(tmp_path / "source", build_image("missing-skopeo"), tag="v1")
    result = skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        admin_creds,
        f"oci:{source}:v1",
        f"docker://{server.address}/{MISSING_REGISTRY}/app:1",
        check=False,
    )
    assert_name_unknown(result)
