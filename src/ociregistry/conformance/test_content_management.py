"""Content management: deleting tags, manifests and blobs, and what the API shows afterwards.

Registries MAY disable deletion (400 UNSUPPORTED or 405); a lenient run then skips the checks
that depend on it, a strict run fails.
"""

from __future__ import annotations

import httpx
import pytest

from ociregistry.conformance import content
from ociregistry.conformance.checks import (
    expect_error,
    expect_status,
    json_body,
    optional_feature,
)
from ociregistry.conformance.client import RegistryClient, Tracker, describe

pytestmark = pytest.mark.content_management


def _tags(client: RegistryClient) -> list[str]:
    response = client.tags()
    expect_status(response, 200)
    return json_body(response).get("tags") or []


def _deleted(response: httpx.Response, what: str, *, strict: bool) -> None:
    """202 Accepted, or deletion disabled (400 UNSUPPORTED / 405) which may skip the test."""
    expect_status(response, 202, 400, 405)
    if response.status_code == 400:
        expect_error(response, 400, "UNSUPPORTED", strict=strict)
    optional_feature(response.status_code == 202, f"{what} deletion", response, strict=strict)


def test_delete_tag(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """Deleting a tag removes only that tag: the manifest and its other tags stay."""
    image = content.make_image()
    gone, kept = content.unique("deltag"), content.unique("keeptag")
    tracker.push_image(image, gone)
    tracker.push_manifest(image.manifest, kept)
    before = _tags(client)
    assert gone in before and kept in before

    _deleted(client.delete(client.manifest_url(gone)), "tag", strict=strict)

    after = _tags(client)
    assert gone not in after, f"deleted tag still listed: {after}"
    assert kept in after, f"other tag of the manifest vanished: {after}"
    assert len(after) < len(before)
    expect_error(client.get_manifest(gone), 404, "MANIFEST_UNKNOWN", strict=strict)
    still = client.get_manifest(image.manifest.digest, accept=[content.OCI_MANIFEST])
    expect_status(still, 200)
    by_kept = client.get_manifest(kept, accept=[content.OCI_MANIFEST])
    expect_status(by_kept, 200)
    assert by_kept.content == image.manifest.data, describe(by_kept)


def test_delete_manifest_by_digest(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """After DELETE by digest the manifest, and every tag pointing at it, are gone."""
    image = content.make_image()
    tag = content.unique("delman")
    tracker.push_image(image, tag)
    before = _tags(client)
    assert tag in before

    _deleted(client.delete(client.manifest_url(image.manifest.digest)), "manifest", strict=strict)

    response = client.get_manifest(image.manifest.digest, accept=[content.OCI_MANIFEST])
    expect_error(response, 404, "MANIFEST_UNKNOWN", strict=strict)
    expect_status(client.head(client.manifest_url(image.manifest.digest)), 404)
    expect_status(client.get_manifest(tag, accept=[content.OCI_MANIFEST]), 404)
    after = _tags(client)
    assert tag not in after, f"tag of a deleted manifest still listed: {after}"
    assert len(after) < len(before)


def test_delete_manifest_twice_is_404(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    image = content.make_image()
    tracker.push_image(image)
    _deleted(client.delete(client.manifest_url(image.manifest.digest)), "manifest", strict=strict)
    again = client.delete(client.manifest_url(image.manifest.digest))
    expect_error(again, 404, "MANIFEST_UNKNOWN", strict=strict)


def test_delete_unknown_manifest_is_404(client: RegistryClient, strict: bool) -> None:
    response = client.delete(client.manifest_url(content.unknown_digest()))
    expect_status(response, 404, 405)
    optional_feature(response.status_code == 404, "manifest deletion", response, strict=strict)
    expect_error(response, 404, "MANIFEST_UNKNOWN", strict=strict)


def test_delete_manifest_in_unknown_repository(
    client: RegistryClient, namespace: str, strict: bool
) -> None:
    """ "If the repository does not exist, the response MUST return 404 Not Found"."""
    missing = f"{namespace}-{content.unique('nothere')}"
    response = client.delete(client.manifest_url(content.unknown_digest(), missing))
    expect_error(response, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN", strict=strict)


def test_delete_blob(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    blob = content.random_blob()
    tracker.push_blob(blob)
    _deleted(client.delete(client.blob_url(blob.digest)), "blob", strict=strict)
    response = client.get(client.blob_url(blob.digest))
    expect_error(response, 404, "BLOB_UNKNOWN", strict=strict)
    expect_status(client.head(client.blob_url(blob.digest)), 404)


def test_delete_image_blobs_after_manifest(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """The official teardown order: manifest first, then its config and layer blobs."""
    image = content.make_image()
    tracker.push_image(image, content.unique("delimg"))
    _deleted(client.delete(client.manifest_url(image.manifest.digest)), "manifest", strict=strict)
    for blob in image.blobs:
        _deleted(client.delete(client.blob_url(blob.digest)), "blob", strict=strict)
        expect_status(client.get(client.blob_url(blob.digest)), 404)


def test_delete_unknown_blob_is_404(client: RegistryClient, strict: bool) -> None:
    response = client.delete(client.blob_url(content.unknown_digest()))
    expect_status(response, 404, 405)
    optional_feature(response.status_code == 404, "blob deletion", response, strict=strict)
    expect_error(response, 404, "BLOB_UNKNOWN", strict=strict)


def test_deleted_referrer_leaves_referrers_list(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    subject = content.make_image()
    tracker.push_image(subject)
    tracker.push_blob(content.EMPTY_JSON)
    payload = content.random_blob(media_type="application/vnd.example.signature")
    tracker.push_blob(payload)
    kept, gone = (
        content.image_manifest(
            content.EMPTY_JSON,
            [payload],
            artifact_type="application/vnd.example.signature",
            subject=subject.manifest,
            annotations={"org.example.n": str(i)},
        )
        for i in range(2)
    )
    tracker.push_manifest(kept)
    tracker.push_manifest(gone)
    url = client.referrers_url(subject.manifest.digest)
    listed = client.get(url)
    expect_status(listed, 200)
    digests = {entry["digest"] for entry in json_body(listed)["manifests"]}
    assert digests == {kept.digest, gone.digest}, describe(listed)

    _deleted(client.delete(client.manifest_url(gone.digest)), "manifest", strict=strict)

    listed = client.get(url)
    expect_status(listed, 200)
    digests = {entry["digest"] for entry in json_body(listed)["manifests"]}
    assert digests == {kept.digest}, f"deleted referrer still listed\n{describe(listed)}"


def test_deleted_upload_content_is_not_a_blob(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """Cancelling an upload (end-13) leaves no blob behind and no usable session."""
    blob = content.random_blob()
    started = tracker.start_upload()
    expect_status(started, 202)
    patched = client.patch_chunk(client.location(started), blob.data, start=0)
    expect_status(patched, 202)
    location = client.location(patched)
    expect_status(client.delete(location), 204)
    expect_status(client.head(client.blob_url(blob.digest)), 404)
    expect_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN", strict=strict)
