"""skopeo copy / inspect / list-tags / delete: byte-exact round trips through the registry.

Images are written as OCI layouts (and a `dir:` layout for Docker v2s2, which skopeo's `oci:`
transport would convert) with known digests; after a trip to the registry and back the
manifests must be the very same bytes.

Pushes and deletes sign in as the platform admin (`--dest-creds` / `--creds`); pulls and
inspections stay anonymous, which the shared test registries (public ones) allow.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from clienttools import Skopeo

from support.images import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Index,
    build_image,
    build_index,
    read_dir_layout_manifest,
    read_oci_layout_blob,
    read_oci_layout_manifest,
    write_dir_layout,
    write_oci_layout,
)
from support.server import RunningServer

pytestmark = pytest.mark.clients

PUSH = ("copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false")
PULL = ("copy", "--quiet", "--preserve-digests", "--src-tls-verify=false")


def raw_manifest(skopeo: Skopeo, reference: str) -> bytes:
    """The manifest bytes the registry serves for `reference`, as skopeo fetched them."""
    output = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").output
    return output.encode()


def pull_back_as_oci(
    skopeo: Skopeo, remote: str, back: Path, content: Image | Index, media_type: str, *flags: str
) -> None:
    """Pull `remote` with skopeo into an OCI layout at `back` and find `content` (an image or an
    index) there whole: its manifest under `v1`, of `media_type`, and every blob."""
    skopeo(*PULL, *flags, f"docker://{remote}", f"oci:{back}:v1")
    manifest = read_oci_layout_manifest(back, "v1")
    assert manifest.digest == content.digest
    assert manifest.media_type == media_type
    for blob in content.blobs():
        assert read_oci_layout_blob(back, blob.digest).data == blob.data


def test_skopeo_round_trips_oci_image(
    server: RunningServer, registry: str, skopeo: Skopeo, tmp_path: Path, admin_creds: str
) -> None:
    image = build_image(f"oci-{registry}", layer_count=2)
    source = write_oci_layout(tmp_path / "source", image, tag="v1")
    remote = f"{server.address}/{registry}/oci-image:v1"

    skopeo(*PUSH, "--dest-creds", admin_creds, f"oci:{source}:v1", f"docker://{remote}")
    assert raw_manifest(skopeo, remote) == image.manifest.data

    pull_back_as_oci(skopeo, remote, tmp_path / "back", image, OCI_MANIFEST)


def test_skopeo_round_trips_docker_v2s2_image(
    server: RunningServer,
    registry: str,
    skopeo: Skopeo,
    tmp_path: Path,
    client: httpx.Client,
    admin_creds: str,
) -> None:
    image = build_image(f"v2s2-{registry}", docker=True)
    source = write_dir_layout(tmp_path / "source", image)
    remote = f"{server.address}/{registry}/docker-image:v1"

    skopeo(*PUSH, "--dest-creds", admin_creds, f"dir:{source}", f"docker://{remote}")
    assert raw_manifest(skopeo, remote) == image.manifest.data
    served = client.get(
        f"/v2/{registry}/docker-image/manifests/v1", headers={"Accept": DOCKER_MANIFEST}
    )
    assert served.headers["Content-Type"].split(";")[0] == DOCKER_MANIFEST
    assert served.headers["Docker-Content-Digest"] == image.digest

    back = tmp_path / "back"
    skopeo(*PULL, f"docker://{remote}", f"dir:{back}")
    manifest = read_dir_layout_manifest(back)
    assert manifest.data == image.manifest.data
    assert manifest.media_type == DOCKER_MANIFEST
    for blob in image.blobs():
        assert (back / blob.digest.removeprefix("sha256:")).read_bytes() == blob.data


def test_skopeo_round_trips_multi_arch_index(
    server: RunningServer, registry: str, skopeo: Skopeo, tmp_path: Path, admin_creds: str
) -> None:
    index = build_index(f"multi-{registry}")
    source = write_oci_layout(tmp_path / "source", index, tag="v1")
    remote = f"{server.address}/{registry}/multi:v1"

    skopeo(*PUSH, "--dest-creds", admin_creds, "--all", f"oci:{source}:v1", f"docker://{remote}")
    assert raw_manifest(skopeo, remote) == index.manifest.data

    # Each architecture resolves through the index to its own child image. (skopeo's "Digest"
    # is that of the top-level manifest, the index; layers and architecture are the child's.)
    for child in index.children:
        arch = child.platform["architecture"]
        inspected = json.loads(
            skopeo(
                "--override-arch",
                arch,
                "--override-os",
                "linux",
                "inspect",
                "--tls-verify=false",
                f"docker://{remote}",
            ).output
        )
        assert inspected["Digest"] == index.digest
        assert inspected["Architecture"] == arch
        assert inspected["Layers"] == [layer.digest for layer in child.layers]
        child_manifest = raw_manifest(skopeo, f"{remote.rsplit(':', 1)[0]}@{child.digest}")
        assert child_manifest == child.manifest.data

    pull_back_as_oci(skopeo, remote, tmp_path / "back", index, OCI_INDEX, "--all")


def test_skopeo_inspect_and_list_tags(
    server: RunningServer, registry: str, skopeo: Skopeo, tmp_path: Path, admin_creds: str
) -> None:
    image = build_image(f"tags-{registry}", layer_count=2)
    source = write_oci_layout(tmp_path / "source", image, tag="v1")
    repository = f"{server.address}/{registry}/tagged"
    for tag in ("v1", "v2", "latest"):
        skopeo(
            *PUSH, "--dest-creds", admin_creds, f"oci:{source}:v1", f"docker://{repository}:{tag}"
        )

    listed = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{repository}").output)
    assert sorted(listed["Tags"]) == ["latest", "v1", "v2"]

    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{repository}:v2").output
    )
    assert inspected["Digest"] == image.digest
    assert inspected["Architecture"] == "amd64"
    assert inspected["Os"] == "linux"
    assert inspected["Layers"] == [layer.digest for layer in image.layers]
    assert sorted(inspected["RepoTags"]) == ["latest", "v1", "v2"]
    assert inspected["Labels"] == {"test.label": f"tags-{registry}"}


def test_skopeo_delete_removes_manifest(
    server: RunningServer,
    registry: str,
    skopeo: Skopeo,
    tmp_path: Path,
    client: httpx.Client,
    admin_creds: str,
) -> None:
    image = build_image(f"delete-{registry}")
    source = write_oci_layout(tmp_path / "source", image, tag="v1")
    remote = f"{server.address}/{registry}/doomed:v1"
    skopeo(*PUSH, "--dest-creds", admin_creds, f"oci:{source}:v1", f"docker://{remote}")
    assert raw_manifest(skopeo, remote) == image.manifest.data

    skopeo("delete", "--tls-verify=false", "--creds", admin_creds, f"docker://{remote}")

    gone = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{remote}", check=False)
    assert gone.returncode != 0, gone.describe()
    assert "manifest unknown" in gone.output.lower(), gone.describe()
    by_digest = client.get(
        f"/v2/{registry}/doomed/manifests/{image.digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert by_digest.status_code == 404, by_digest.text
    assert by_digest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
