"""podman push / pull over plain HTTP (--tls-verify=false), with a throwaway vfs store."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from clienttools import DIGEST_PATTERN, Podman

from support.images import rootfs_tar
from support.server import RunningServer

pytestmark = pytest.mark.clients

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def test_podman_push_then_pull_by_tag_and_by_digest(
    server: RunningServer, registry: str, podman: Podman, tmp_path: Path, client: httpx.Client
) -> None:
    tar = rootfs_tar(tmp_path / "rootfs.tar", f"podman-{registry}")
    repository = f"{server.address}/{registry}/app"
    reference = f"{repository}:1.0"
    image_id = podman("import", "--quiet", tar, reference).output.strip().splitlines()[-1]
    assert podman.image_id(reference) == image_id.removeprefix("sha256:")

    digest_file = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", digest_file, reference)
    digest = digest_file.read_text().strip()
    assert DIGEST_PATTERN.fullmatch(digest), digest

    # What podman pushed is served under the tag, with the digest podman computed.
    manifest = client.get(f"/v2/{registry}/app/manifests/1.0", headers={"Accept": MANIFEST_ACCEPT})
    assert manifest.status_code == 200, manifest.text
    assert manifest.headers["Docker-Content-Digest"] == digest
    config_digest = json.loads(manifest.content)["config"]["digest"]
    assert config_digest == f"sha256:{podman.image_id(reference)}"

    podman("rmi", "--force", reference)
    assert podman.image_id(reference) is None

    podman("pull", "--tls-verify=false", reference)
    assert podman.image_id(reference) == image_id.removeprefix("sha256:")

    podman("rmi", "--force", reference)
    by_digest = f"{repository}@{digest}"
    podman("pull", "--tls-verify=false", by_digest)
    assert podman.image_id(by_digest) == image_id.removeprefix("sha256:")
    digest_seen = podman("image", "inspect", "--format", "{{.Digest}}", by_digest).output.strip()
    assert digest_seen == digest
