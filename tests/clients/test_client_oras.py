"""oras-py pushes artifacts that refer to an image; the referrers API must list them.

Two ways in: oras-py's own `push(..., subject=...)` (its artifact type is then the config
media type, as the spec says for manifests without `artifactType`), and a hand-built manifest
with an explicit `artifactType`, pushed with oras-py's lower-level `upload_blob` /
`upload_manifest`, since `push` has no way to set that field.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import oras.client
import oras.container
import oras.oci
import pytest
from clienttools import push_image_http

from support.images import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Blob, Image, build_image
from support.server import RunningServer

pytestmark = pytest.mark.clients

SBOM_CONFIG_TYPE = "application/vnd.example.sbom.config.v1+json"
SBOM_LAYER_TYPE = "application/spdx+json"
SIGNATURE_ARTIFACT_TYPE = "application/vnd.example.signature.v1"


def oras_client(server: RunningServer, config_dir: Path) -> oras.client.OrasClient:
    """An oras-py client signed in as the platform admin. `login` records the credentials in
    a docker config file, here one in the test's temp dir rather than ~/.docker."""
    client = oras.client.OrasClient(hostname=server.address, insecure=True)
    username, password = server.admin
    client.login(
        username,
        password,
        hostname=server.address,
        config_path=str(config_dir / "config.json"),
    )
    return client


def subject_of(image: Image) -> oras.oci.Subject:
    """oras' Subject for an image pushed byte-exact (Subject.from_manifest re-serializes)."""
    return oras.oci.Subject(
        mediaType=image.manifest.media_type, digest=image.digest, size=image.manifest.size
    )


def referrers(client: httpx.Client, repository: str, digest: str, **params: str) -> httpx.Response:
    response = client.get(f"/v2/{repository}/referrers/{digest}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX
    return response


def manifest_digest(client: httpx.Client, repository: str, tag: str) -> str:
    response = client.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert response.status_code == 200, response
    return response.headers["Docker-Content-Digest"]


def test_oras_push_with_subject_is_listed_by_referrers(
    server: RunningServer, registry: str, client: httpx.Client, tmp_path: Path
) -> None:
    repository = f"{registry}/app"
    image = build_image(f"subject-{registry}")
    push_image_http(client, repository, image, "1.0")

    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": registry}))
    config = tmp_path / "config.json"
    config.write_text("{}")
    response = oras_client(server, tmp_path / "oras").push(
        target=f"{server.address}/{repository}:sbom",
        files=[f"{sbom}:{SBOM_LAYER_TYPE}"],
        manifest_config=f"{config}:{SBOM_CONFIG_TYPE}",
        subject=subject_of(image),
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    # A registry that handles `subject` itself says so; otherwise clients fall back to tags.
    assert response.headers.get("OCI-Subject") == image.digest

    artifact_digest = manifest_digest(client, repository, "sbom")
    listing = referrers(client, repository, image.digest).json()
    assert listing["schemaVersion"] == 2
    assert listing["mediaType"] == OCI_INDEX
    [entry] = listing["manifests"]
    assert entry["digest"] == artifact_digest
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["artifactType"] == SBOM_CONFIG_TYPE


def test_oras_artifact_type_field_and_referrers_filter(
    server: RunningServer, registry: str, client: httpx.Client, tmp_path: Path
) -> None:
    repository = f"{registry}/app"
    image = build_image(f"signed-{registry}")
    push_image_http(client, repository, image, "1.0")
    registry_client = oras_client(server, tmp_path / "oras")
    container = oras.container.Container(f"{server.address}/{repository}:signature")

    empty = Blob(OCI_EMPTY, b"{}")
    signature = Blob("application/octet-stream", f"signature of {image.digest}".encode())
    for blob in (empty, signature):
        path = tmp_path / blob.digest.removeprefix("sha256:")
        path.write_bytes(blob.data)
        uploaded = registry_client.upload_blob(str(path), container, blob.descriptor())
        assert uploaded.status_code in (201, 202), uploaded.text

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "config": empty.descriptor(),
        "layers": [signature.descriptor()],
        "subject": image.manifest.descriptor(),
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    response = registry_client.upload_manifest(manifest, container)
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == image.digest
    signature_digest = response.headers["Docker-Content-Digest"]

    # An unrelated artifact for the same subject, to see the filter work.
    other = tmp_path / "notes.txt"
    other.write_text("release notes")
    registry_client.push(
        target=f"{server.address}/{repository}:notes",
        files=[f"{other}:text/plain"],
        subject=subject_of(image),
        disable_path_validation=True,
        quiet=True,
    )

    everything = referrers(client, repository, image.digest).json()["manifests"]
    assert {entry["digest"] for entry in everything} == {
        signature_digest,
        manifest_digest(client, repository, "notes"),
    }
    [listed] = [entry for entry in everything if entry["digest"] == signature_digest]
    assert listed["artifactType"] == SIGNATURE_ARTIFACT_TYPE
    assert listed["annotations"] == manifest["annotations"]

    filtered = referrers(client, repository, image.digest, artifactType=SIGNATURE_ARTIFACT_TYPE)
    assert [entry["digest"] for entry in filtered.json()["manifests"]] == [signature_digest]
    assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
