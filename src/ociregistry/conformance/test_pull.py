"""Pull: fetching and checking blobs and manifests (official category "Pull").

The content is pushed once for the module (two images sharing nothing, one tagged, one only
by digest) and every test here only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ociregistry.conformance import content
from ociregistry.conformance.checks import (
    expect_digest_header,
    expect_error,
    expect_status,
    optional_feature,
)
from ociregistry.conformance.client import RegistryClient, Tracker, describe

pytestmark = pytest.mark.pull

#: An invalid reference (a tag cannot start with '.'); the official suite expects 404 for it.
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"


@dataclass(frozen=True)
class Pulled:
    tag: str
    tagged: content.Image
    untagged: content.Image


@pytest.fixture(scope="module")
def pulled(module_tracker: Tracker) -> Pulled:
    tag = content.unique("pull")
    tagged, untagged = content.make_image(), content.make_image(layers=2)
    module_tracker.push_image(tagged, tag)
    module_tracker.push_image(untagged)
    return Pulled(tag, tagged, untagged)


def test_api_version_check(client: RegistryClient) -> None:
    """GET /v2/ answers 200 on a registry that implements the spec (end-1)."""
    response = client.get("/v2/")
    expect_status(response, 200)
    version = response.headers.get("Docker-Distribution-API-Version")
    if version is not None:
        assert version == "registry/2.0", describe(response)


def test_head_nonexistent_blob_is_404(client: RegistryClient) -> None:
    response = client.head(client.blob_url(content.unknown_digest()))
    expect_status(response, 404)
    assert not response.content, f"HEAD response has a body\n{describe(response)}"


def test_head_existing_blob(client: RegistryClient, pulled: Pulled, strict: bool) -> None:
    config = pulled.tagged.config
    response = client.head(client.blob_url(config.digest))
    expect_status(response, 200)
    expect_digest_header(response, config.digest, strict=strict)
    length = response.headers.get("Content-Length")
    assert length is None or int(length) == config.size, describe(response)
    assert not response.content, f"HEAD response has a body\n{describe(response)}"


def test_get_nonexistent_blob_is_404(client: RegistryClient, strict: bool) -> None:
    response = client.get(client.blob_url(content.unknown_digest()))
    expect_error(response, 404, "BLOB_UNKNOWN", strict=strict)


@pytest.mark.parametrize("which", ["config", "layer"])
def test_get_existing_blob(
    client: RegistryClient, pulled: Pulled, strict: bool, which: str
) -> None:
    blob = pulled.tagged.config if which == "config" else pulled.tagged.layers[0]
    response = client.get(client.blob_url(blob.digest))
    expect_status(response, 200)
    assert response.content == blob.data, f"blob content differs\n{describe(response)}"
    expect_digest_header(response, blob.digest, strict=strict)


def test_get_blob_range(client: RegistryClient, pulled: Pulled, strict: bool) -> None:
    """Range requests SHOULD be supported for blobs (resumable downloads)."""
    blob = pulled.tagged.layers[0]
    response = client.get(client.blob_url(blob.digest), headers={"Range": "bytes=2-9"})
    expect_status(response, 200, 206)
    optional_feature(response.status_code == 206, "Range on blob GET", response, strict=strict)
    assert response.content == blob.data[2:10], describe(response)
    assert response.headers.get("Content-Range") == f"bytes 2-9/{blob.size}", describe(response)


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_nonexistent_manifest_is_404(client: RegistryClient, method: str) -> None:
    """The official suite's invalid reference: 404, whatever else the registry thinks of it."""
    response = client.request(method, client.manifest_url(NONEXISTENT_MANIFEST))
    expect_status(response, 404)


def test_get_unknown_tag_is_manifest_unknown(client: RegistryClient, strict: bool) -> None:
    response = client.get_manifest(content.unique("missing"), accept=[content.OCI_MANIFEST])
    expect_error(response, 404, "MANIFEST_UNKNOWN", strict=strict)


def test_get_unknown_digest_is_manifest_unknown(client: RegistryClient, strict: bool) -> None:
    response = client.get_manifest(content.unknown_digest(), accept=[content.OCI_MANIFEST])
    expect_error(response, 404, "MANIFEST_UNKNOWN", strict=strict)


@pytest.mark.parametrize("which", ["tagged", "untagged"])
def test_head_manifest_by_digest(
    client: RegistryClient, pulled: Pulled, strict: bool, which: str
) -> None:
    manifest = getattr(pulled, which).manifest
    response = client.head(
        client.manifest_url(manifest.digest), headers={"Accept": content.OCI_MANIFEST}
    )
    expect_status(response, 200)
    expect_digest_header(response, manifest.digest, strict=strict)
    length = response.headers.get("Content-Length")
    assert length is None or int(length) == manifest.size, describe(response)


def test_head_manifest_by_tag(client: RegistryClient, pulled: Pulled, strict: bool) -> None:
    response = client.head(
        client.manifest_url(pulled.tag), headers={"Accept": content.OCI_MANIFEST}
    )
    expect_status(response, 200)
    expect_digest_header(response, pulled.tagged.manifest.digest, strict=strict)


@pytest.mark.parametrize("which", ["tagged", "untagged"])
def test_get_manifest_by_digest(
    client: RegistryClient, pulled: Pulled, strict: bool, which: str
) -> None:
    manifest = getattr(pulled, which).manifest
    response = client.get_manifest(manifest.digest, accept=[content.OCI_MANIFEST])
    expect_status(response, 200)
    assert response.content == manifest.data, f"manifest bytes differ\n{describe(response)}"
    assert response.headers.get("Content-Type", "").startswith(content.OCI_MANIFEST), describe(
        response
    )
    expect_digest_header(response, manifest.digest, strict=strict)


def test_get_manifest_by_tag(client: RegistryClient, pulled: Pulled, strict: bool) -> None:
    manifest = pulled.tagged.manifest
    response = client.get_manifest(pulled.tag, accept=[content.OCI_MANIFEST])
    expect_status(response, 200)
    assert response.content == manifest.data, f"manifest bytes differ\n{describe(response)}"
    expect_digest_header(response, manifest.digest, strict=strict)


def test_error_body_is_oci_json(client: RegistryClient, strict: bool) -> None:
    """A malformed digest reference: 400 with an OCI error body, or 404 (official check)."""
    response = client.get_manifest("sha256:totallywrong", accept=[content.OCI_MANIFEST])
    expect_status(response, 400, 404)
    if response.status_code == 400:
        expect_error(response, 400, strict=True)  # any spec error code, as the official suite
    else:
        expect_error(response, 404, "MANIFEST_UNKNOWN", strict=strict)


def test_invalid_blob_digest(client: RegistryClient, strict: bool) -> None:
    response = client.get(client.blob_url("sha256:totallywrong"))
    expect_status(response, 400, 404)
    if response.status_code == 400:
        expect_error(response, 400, "DIGEST_INVALID", strict=strict)
    else:
        expect_error(response, 404, "BLOB_UNKNOWN", "DIGEST_INVALID", strict=strict)


def test_pull_from_nonexistent_repository_is_404(
    client: RegistryClient, namespace: str, strict: bool
) -> None:
    """ "An attempt to pull a nonexistent repository MUST return response code 404"."""
    missing = f"{namespace}-{content.unique('nothere')}"
    response = client.get_manifest("latest", name=missing, accept=[content.OCI_MANIFEST])
    expect_error(response, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN", strict=strict)
