"""Push: blob uploads (streamed, monolithic, chunked), mounts and manifest uploads.

Each test makes and pushes its own content and the `tracker` deletes it afterwards; no test
depends on another one having run.
"""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from ociregistry.conformance import content
from ociregistry.conformance.checks import (
    expect_digest_header,
    expect_error,
    expect_location,
    expect_status,
    json_body,
    optional_feature,
)
from ociregistry.conformance.client import RegistryClient, Tracker, describe, parse_challenge
from ociregistry.conformance.settings import Settings

pytestmark = pytest.mark.push


def _assert_blob(client: RegistryClient, blob: content.Blob, name: str | None = None) -> None:
    response = client.get(client.blob_url(blob.digest, name))
    expect_status(response, 200)
    assert response.content == blob.data, f"stored blob differs\n{describe(response)}"


def _assert_no_blob(client: RegistryClient, digest: str, name: str | None = None) -> None:
    response = client.head(client.blob_url(digest, name))
    expect_status(response, 404)


def _chunk_min(response: httpx.Response) -> int:
    """OCI-Chunk-Min-Length (spec 1.1): the registry's smallest accepted non-final chunk."""
    value = response.headers.get("OCI-Chunk-Min-Length", "0")
    assert value.isdigit(), f"OCI-Chunk-Min-Length is not a number\n{describe(response)}"
    return int(value)


# Streamed and monolithic uploads -------------------------------------------------------------


def test_streamed_upload(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """POST, PATCH the whole blob without Content-Range, then PUT ?digest= with no body."""
    blob = content.random_blob(100)
    started = client.request("POST", client.uploads_url())
    expect_status(started, 202)
    tracker.track_upload(started)
    patched = client.request(
        "PATCH",
        client.location(started),
        content=blob.data,
        headers={"Content-Type": content.OCTET_STREAM},
    )
    expect_status(patched, 202)
    expect_location(patched)
    range_header = patched.headers.get("Range")
    if strict or range_header is not None:
        assert range_header == f"0-{blob.size - 1}", describe(patched)
    tracker.track_blob(blob.digest)
    done = client.finish_upload(client.location(patched), blob.digest)
    expect_status(done, 201)
    expect_location(done)
    expect_digest_header(done, blob.digest, strict=strict)
    _assert_blob(client, blob)


def test_single_post_upload(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """POST ?digest= with the blob: 201 (MAY be supported) or 202 and a session to PUT to."""
    blob = content.config_blob()
    tracker.track_blob(blob.digest)
    response = client.request(
        "POST",
        client.uploads_url(),
        content=blob.data,
        headers={"Content-Type": content.OCTET_STREAM},
        params={"digest": blob.digest},
    )
    expect_status(response, 201, 202)
    expect_location(response)
    if response.status_code == 201:
        _assert_blob(client, blob)
        pulled = client.get(client.location(response))
        expect_status(pulled, 200)
        assert pulled.content == blob.data, f"Location is not the blob\n{describe(pulled)}"
        return
    _assert_no_blob(client, blob.digest)
    optional_feature(False, "single-POST monolithic upload", response, strict=strict)


def test_post_then_put_upload(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    blob = content.config_blob()
    started = client.request("POST", client.uploads_url())
    expect_status(started, 202)
    tracker.track_upload(started)
    tracker.track_blob(blob.digest)
    done = client.finish_upload(client.location(started), blob.digest, blob.data)
    expect_status(done, 201)
    expect_digest_header(done, blob.digest, strict=strict)
    _assert_blob(client, blob)
    pulled = client.get(client.location(done))
    expect_status(pulled, 200)
    assert pulled.content == blob.data, f"Location is not a pullable blob URL\n{describe(pulled)}"


def test_layer_upload(client: RegistryClient, tracker: Tracker) -> None:
    layer, _ = content.layer_blob()
    tracker.push_blob(layer)
    head = client.head(client.blob_url(layer.digest))
    expect_status(head, 200)
    _assert_blob(client, layer)


def test_empty_blob_upload(client: RegistryClient, tracker: Tracker) -> None:
    blob = content.Blob(b"")
    tracker.push_blob(blob)
    head = client.head(client.blob_url(blob.digest))
    expect_status(head, 200)
    assert head.headers.get("Content-Length", "0") == "0", describe(head)


def test_blob_push_is_idempotent(client: RegistryClient, tracker: Tracker) -> None:
    """Clients re-push blobs that already exist; that must succeed again."""
    blob = content.random_blob()
    tracker.push_blob(blob)
    again = client.put_blob(blob)
    expect_status(again, 201)
    _assert_blob(client, blob)


def test_sha512_blob(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """sha512 is a registered digest algorithm; registries MAY support it."""
    blob = content.Blob(content.random_blob().data, algorithm="sha512")
    tracker.track_blob(blob.digest)
    response = client.put_blob(blob)
    if response.status_code == 400:
        expect_error(response, 400, "DIGEST_INVALID", "UNSUPPORTED", strict=strict)
    optional_feature(response.status_code == 201, "sha512 digests", response, strict=strict)
    expect_digest_header(response, blob.digest, strict=strict)
    _assert_blob(client, blob)


def test_put_with_mismatched_digest(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    blob, claimed = content.random_blob(), content.unknown_digest()
    tracker.track_blob(blob.digest)
    tracker.track_blob(claimed)
    started = tracker.start_upload()
    expect_status(started, 202)
    response = client.finish_upload(client.location(started), claimed, blob.data)
    expect_error(response, 400, "DIGEST_INVALID", strict=strict)
    _assert_no_blob(client, claimed)
    _assert_no_blob(client, blob.digest)


def test_single_post_with_mismatched_digest(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    blob, claimed = content.random_blob(), content.unknown_digest()
    tracker.track_blob(claimed)
    response = client.request(
        "POST",
        client.uploads_url(),
        content=blob.data,
        headers={"Content-Type": content.OCTET_STREAM},
        params={"digest": claimed},
    )
    if response.status_code == 202:  # single-POST not supported: the body was not taken
        tracker.track_upload(response)
        optional_feature(False, "single-POST monolithic upload", response, strict=strict)
    expect_error(response, 400, "DIGEST_INVALID", strict=strict)
    _assert_no_blob(client, claimed)


@pytest.mark.parametrize(
    "bad_digest",
    ["sha256:totallywrong", "sha256:" + "a" * 10, "nosuchalgorithm:" + "a" * 64, "sha256"],
)
def test_put_with_invalid_digest(
    client: RegistryClient, tracker: Tracker, strict: bool, bad_digest: str
) -> None:
    started = tracker.start_upload()
    expect_status(started, 202)
    response = client.finish_upload(client.location(started), bad_digest, b"some bytes")
    expect_error(response, 400, "DIGEST_INVALID", "UNSUPPORTED", strict=strict)


def test_put_without_digest_is_rejected(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """The closing PUT MUST carry ?digest=; without it the upload is not complete."""
    started = tracker.start_upload()
    expect_status(started, 202)
    location = client.location(started)
    response = client.request(
        "PUT", location, content=b"abc", headers={"Content-Type": content.OCTET_STREAM}
    )
    expect_error(response, 400, "DIGEST_INVALID", "BLOB_UPLOAD_INVALID", strict=strict)


# Chunked uploads ---------------------------------------------------------------------------


def test_chunked_upload(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """POST, two PATCHes with Content-Range, status GET on a stale URL, closing PUT."""
    started = tracker.start_upload()
    expect_status(started, 202)
    first_location = client.location(started)
    blob, chunk1, chunk2 = content.chunked_blob(_chunk_min(started))
    tracker.track_blob(blob.digest)

    first = client.patch_chunk(first_location, chunk1, start=0)
    expect_status(first, 202)
    expect_location(first)
    assert first.headers.get("Range") == f"0-{len(chunk1) - 1}", describe(first)

    status = client.get(first_location)  # the URL of before the PATCH must still work
    expect_status(status, 204)
    expect_location(status)
    assert status.headers.get("Range") == f"0-{len(chunk1) - 1}", describe(status)

    second = client.patch_chunk(client.location(first), chunk2, start=len(chunk1))
    expect_status(second, 202)
    expect_location(second)
    assert second.headers.get("Range") == f"0-{blob.size - 1}", describe(second)

    done = client.finish_upload(client.location(second), blob.digest)
    expect_status(done, 201)
    expect_location(done)
    expect_digest_header(done, blob.digest, strict=strict)
    _assert_blob(client, blob)


def test_chunked_upload_final_chunk_in_put(client: RegistryClient, tracker: Tracker) -> None:
    """ "The final chunk MAY be uploaded using a PATCH request or … in the closing PUT"."""
    started = tracker.start_upload()
    expect_status(started, 202)
    blob, chunk1, chunk2 = content.chunked_blob(_chunk_min(started))
    tracker.track_blob(blob.digest)
    first = client.patch_chunk(client.location(started), chunk1, start=0)
    expect_status(first, 202)
    done = client.finish_upload(client.location(first), blob.digest, chunk2, start=len(chunk1))
    expect_status(done, 201)
    expect_location(done)
    _assert_blob(client, blob)


def test_out_of_order_chunk_is_416(client: RegistryClient, tracker: Tracker) -> None:
    """A chunk not starting at the current end: 416, and the session stays usable (resume)."""
    started = tracker.start_upload()
    expect_status(started, 202)
    location = client.location(started)
    blob, chunk1, chunk2 = content.chunked_blob(_chunk_min(started))
    tracker.track_blob(blob.digest)

    response = client.patch_chunk(location, chunk2, start=len(chunk1))
    expect_status(response, 416)

    status = client.get(location)
    expect_status(status, 204)
    location = client.location(status)
    first = client.patch_chunk(location, chunk1, start=0)
    expect_status(first, 202)
    second = client.patch_chunk(client.location(first), chunk2, start=len(chunk1))
    expect_status(second, 202)
    done = client.finish_upload(client.location(second), blob.digest)
    expect_status(done, 201)
    _assert_blob(client, blob)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_out_of_order_closing_put_is_416(
    client: RegistryClient, tracker: Tracker, strict: bool, algorithm: str
) -> None:
    """A last chunk on the closing PUT that skips bytes: 416 with the current Range, as for a
    PATCH; the session stays usable and nothing is stored under the digest."""
    started = tracker.start_upload()
    expect_status(started, 202)
    blob, chunk1, chunk2 = content.chunked_blob(_chunk_min(started), size=3067)
    blob = content.Blob(blob.data, algorithm=algorithm)
    tracker.track_blob(blob.digest)
    first = client.patch_chunk(client.location(started), chunk1, start=0)
    expect_status(first, 202)

    gap = len(chunk1) + 100
    skipped = client.finish_upload(client.location(first), blob.digest, chunk2[100:], start=gap)
    expect_status(skipped, 416)
    if strict or "Range" in skipped.headers:
        assert skipped.headers.get("Range") == f"0-{len(chunk1) - 1}", describe(skipped)
    _assert_no_blob(client, blob.digest)

    done = client.finish_upload(client.location(first), blob.digest, chunk2, start=len(chunk1))
    expect_status(done, 201)
    _assert_blob(client, blob)


def test_retried_chunk_is_416_with_current_range(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """Sending chunk 1 again (official "Retry previous blob chunk"): 416 saying where we are."""
    started = tracker.start_upload()
    expect_status(started, 202)
    blob, chunk1, chunk2 = content.chunked_blob(_chunk_min(started))
    tracker.track_blob(blob.digest)
    first = client.patch_chunk(client.location(started), chunk1, start=0)
    expect_status(first, 202)

    retry = client.patch_chunk(client.location(started), chunk1, start=0)
    expect_status(retry, 416)
    if strict or "Range" in retry.headers:
        assert retry.headers.get("Range") == f"0-{len(chunk1) - 1}", describe(retry)

    second = client.patch_chunk(client.location(first), chunk2, start=len(chunk1))
    expect_status(second, 202)
    done = client.finish_upload(client.location(second), blob.digest)
    expect_status(done, 201)
    _assert_blob(client, blob)


def test_invalid_content_range(client: RegistryClient, tracker: Tracker) -> None:
    """A Content-Range not matching ^[0-9]+-[0-9]+$ is refused (416 or 400)."""
    started = tracker.start_upload()
    expect_status(started, 202)
    location = client.location(started)
    response = client.request(
        "PATCH",
        location,
        content=b"abcd",
        headers={"Content-Type": content.OCTET_STREAM, "Content-Range": "bytes=zero-three"},
    )
    expect_status(response, 400, 416)


def test_chunked_upload_with_mismatched_digest(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    started = tracker.start_upload()
    expect_status(started, 202)
    blob, chunk1, chunk2 = content.chunked_blob(_chunk_min(started))
    claimed = content.unknown_digest()
    tracker.track_blob(blob.digest)
    tracker.track_blob(claimed)
    first = client.patch_chunk(client.location(started), chunk1, start=0)
    expect_status(first, 202)
    second = client.patch_chunk(client.location(first), chunk2, start=len(chunk1))
    expect_status(second, 202)
    response = client.finish_upload(client.location(second), claimed)
    expect_error(response, 400, "DIGEST_INVALID", strict=strict)
    _assert_no_blob(client, claimed)
    _assert_no_blob(client, blob.digest)


def test_upload_status_of_unknown_session(client: RegistryClient, strict: bool) -> None:
    response = client.get(f"{client.uploads_url()}{uuid.uuid4()}")
    expect_error(response, 404, "BLOB_UPLOAD_UNKNOWN", strict=strict)


def test_cancel_upload(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """DELETE on the upload URL ends the session; it is unknown afterwards (end-13)."""
    started = tracker.start_upload()
    expect_status(started, 202)
    blob, chunk1, _ = content.chunked_blob(_chunk_min(started))
    tracker.track_blob(blob.digest)
    first = client.patch_chunk(client.location(started), chunk1, start=0)
    expect_status(first, 202)
    location = client.location(first)

    cancelled = client.delete(location)
    expect_status(cancelled, 204)
    status = client.get(location)
    expect_error(status, 404, "BLOB_UPLOAD_UNKNOWN", strict=strict)
    finished = client.finish_upload(location, blob.digest, blob.data[len(chunk1) :])
    expect_error(finished, 404, "BLOB_UPLOAD_UNKNOWN", strict=strict)
    _assert_no_blob(client, blob.digest)


def test_completed_session_is_closed(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    blob = content.random_blob()
    started = tracker.start_upload()
    expect_status(started, 202)
    location = client.location(started)
    tracker.track_blob(blob.digest)
    expect_status(client.finish_upload(location, blob.digest, blob.data), 201)
    again = client.patch_chunk(location, b"more", start=blob.size)
    expect_error(again, 404, "BLOB_UPLOAD_UNKNOWN", strict=strict)


# Cross-repository mounts -------------------------------------------------------------------


def test_mount_without_from_yields_session(
    client: RegistryClient, tracker: Tracker, crossmount_namespace: str
) -> None:
    response = client.request(
        "POST",
        client.uploads_url(crossmount_namespace),
        params={"mount": content.unknown_digest()},
    )
    expect_status(response, 202)
    location = client.location(response)
    assert location.path.startswith(f"/v2/{crossmount_namespace}/blobs/uploads/"), describe(
        response
    )
    tracker.track_upload(response)


def test_mount_from_another_repository(
    client: RegistryClient,
    tracker: Tracker,
    namespace: str,
    crossmount_namespace: str,
    strict: bool,
) -> None:
    blob = content.random_blob()
    tracker.push_blob(blob)
    tracker.track_blob(blob.digest, crossmount_namespace)
    response = client.request(
        "POST",
        client.uploads_url(crossmount_namespace),
        params={"mount": blob.digest, "from": namespace},
    )
    expect_status(response, 201, 202)
    location = client.location(response)
    if response.status_code == 202:
        assert location.path.startswith(f"/v2/{crossmount_namespace}/blobs/uploads/"), describe(
            response
        )
        tracker.track_upload(response)
        optional_feature(False, "cross-repository mount", response, strict=strict)
    assert location.path == f"/v2/{crossmount_namespace}/blobs/{blob.digest}", describe(response)
    expect_digest_header(response, blob.digest, strict=strict)
    _assert_blob(client, blob, crossmount_namespace)


def test_mount_challenge_names_the_source(
    client: RegistryClient,
    tracker: Tracker,
    namespace: str,
    crossmount_namespace: str,
    settings: Settings,
) -> None:
    """Token auth: the 401 of a mount asks for pull on `from` too (as Distribution does), so a
    client that fetches the token the challenge names gets a mount, not a new upload."""
    blob = content.random_blob()
    tracker.push_blob(blob)
    tracker.track_blob(blob.digest, crossmount_namespace)
    params = {"mount": blob.digest, "from": namespace}
    with httpx.Client(base_url=settings.root_url, timeout=60.0) as anonymous:
        response = anonymous.post(client.uploads_url(crossmount_namespace), params=params)
    if (
        response.status_code != 401
        or "bearer" not in response.headers.get("WWW-Authenticate", "").lower()
    ):
        if response.status_code == 202:
            tracker.track_upload(response)
        pytest.skip("the registry does not challenge for a token")
    _, challenge = parse_challenge(response.headers["WWW-Authenticate"])
    scopes = challenge.get("scope", "").split()
    assert f"repository:{namespace}:pull" in scopes, f"challenge: {challenge}"
    assert any(
        scope.startswith(f"repository:{crossmount_namespace}:") and "push" in scope
        for scope in scopes
    ), f"challenge: {challenge}"
    mounted = client.request("POST", client.uploads_url(crossmount_namespace), params=params)
    expect_status(mounted, 201)
    _assert_blob(client, blob, crossmount_namespace)


def test_mount_of_missing_blob_falls_back_to_upload(
    client: RegistryClient, tracker: Tracker, namespace: str, crossmount_namespace: str
) -> None:
    """An impossible mount answers 202 with an ordinary upload session the client can use."""
    blob = content.random_blob()
    tracker.track_blob(blob.digest, crossmount_namespace)
    response = client.request(
        "POST",
        client.uploads_url(crossmount_namespace),
        params={"mount": blob.digest, "from": namespace},
    )
    expect_status(response, 202)
    done = client.finish_upload(client.location(response), blob.digest, blob.data)
    expect_status(done, 201)
    _assert_blob(client, blob, crossmount_namespace)


def test_mount_from_unknown_repository_falls_back(
    client: RegistryClient, tracker: Tracker, namespace: str, crossmount_namespace: str
) -> None:
    blob = content.random_blob()
    tracker.push_blob(blob)
    response = client.request(
        "POST",
        client.uploads_url(crossmount_namespace),
        params={"mount": blob.digest, "from": f"{namespace}-{content.unique('nothere')}"},
    )
    expect_status(response, 202)
    assert client.location(response).path.startswith(
        f"/v2/{crossmount_namespace}/blobs/uploads/"
    ), describe(response)
    tracker.track_upload(response)


def test_automatic_crossmount(
    client: RegistryClient, tracker: Tracker, crossmount_namespace: str, settings: Settings
) -> None:
    """OCI_AUTOMATIC_CROSSMOUNT: a mount without `from` finds the blob (201) or does not (202)."""
    enabled = settings.automatic_crossmount
    if enabled is None:
        pytest.skip("OCI_AUTOMATIC_CROSSMOUNT not set")
    blob = content.random_blob()
    tracker.push_blob(blob)
    tracker.track_blob(blob.digest, crossmount_namespace)
    response = client.request(
        "POST", client.uploads_url(crossmount_namespace), params={"mount": blob.digest}
    )
    expect_status(response, 201 if enabled else 202)
    if response.status_code == 202:
        tracker.track_upload(response)


# Manifests ---------------------------------------------------------------------------------


def test_put_manifest_by_tags(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    image = content.make_image()
    for blob in image.blobs:
        tracker.push_blob(blob)
    tags = [content.unique(f"test{i}") for i in range(4)]
    tracker.track_manifest(image.manifest.digest)
    for tag in tags:
        response = client.put_manifest(image.manifest, tag)
        expect_status(response, 201)
        expect_location(response)
        expect_digest_header(response, image.manifest.digest, strict=strict)
    by_digest = client.get_manifest(image.manifest.digest, accept=[content.OCI_MANIFEST])
    expect_status(by_digest, 200)
    assert by_digest.content == image.manifest.data, describe(by_digest)
    for tag in tags:
        by_tag = client.get_manifest(tag, accept=[content.OCI_MANIFEST])
        expect_status(by_tag, 200)
        assert by_tag.content == image.manifest.data, describe(by_tag)


def test_put_manifest_with_tag_parameters(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """distribution-spec main: PUT …/manifests/<digest>?tag=a&tag=b sets every tag and answers
    OCI-Tag for each."""
    image = content.make_image()
    for blob in image.blobs:
        tracker.push_blob(blob)
    tracker.track_manifest(image.manifest.digest)
    tags = [content.unique(f"param{i}") for i in range(3)]
    response = client.http.put(
        client.manifest_url(image.manifest.digest),
        params=[("tag", tag) for tag in tags],
        content=image.manifest.data,
        headers={"Content-Type": image.manifest.media_type},
    )
    expect_status(response, 201)
    headers = response.headers.get_list("OCI-Tag")
    announced = [value.strip() for header in headers for value in header.split(",")]
    optional_feature(bool(announced), "tag parameters on a manifest push", response, strict=strict)
    assert sorted(announced) == sorted(tags), describe(response)
    for tag in tags:
        pulled = client.get_manifest(tag, accept=[content.OCI_MANIFEST])
        expect_status(pulled, 200)
        assert pulled.content == image.manifest.data, describe(pulled)


def test_invalid_tag_parameter_sets_no_tag(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """One invalid tag among the `tag` parameters fails the push; no tag is set."""
    image = content.make_image()
    for blob in image.blobs:
        tracker.push_blob(blob)
    tracker.track_manifest(image.manifest.digest)
    good = content.unique("good")
    response = client.http.put(
        client.manifest_url(image.manifest.digest),
        params=[("tag", good), ("tag", "-" + good)],
        content=image.manifest.data,
        headers={"Content-Type": image.manifest.media_type},
    )
    if response.status_code == 201 and not response.headers.get("OCI-Tag"):
        optional_feature(False, "tag parameters on a manifest push", response, strict=strict)
    expect_error(response, 400, "TAG_INVALID", strict=strict)
    expect_status(client.get_manifest(good), 404)


def test_sha512_manifest_pushed_by_tag(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """A sha512 image pushed by digest, then by tag: the tag answers the sha512 digest."""
    layer, _ = content.layer_blob()
    layer = content.Blob(layer.data, layer.media_type, algorithm="sha512")
    config = content.Blob(content.config_blob().data, content.OCI_CONFIG, algorithm="sha512")
    for blob in (config, layer):
        tracker.track_blob(blob.digest)
        response = client.put_blob(blob)
        optional_feature(response.status_code == 201, "sha512 digests", response, strict=strict)
    manifest = content.image_manifest(config, [layer])
    digest = content.digest_of(manifest.data, "sha512")
    tracker.track_manifest(digest)
    by_digest = client.put_manifest(manifest, digest)
    optional_feature(by_digest.status_code == 201, "sha512 manifests", by_digest, strict=strict)
    tag = content.unique("sha512")
    by_tag = client.put_manifest(manifest, tag)
    expect_status(by_tag, 201)
    expect_digest_header(by_tag, digest, strict=strict)
    pulled = client.get_manifest(tag, accept=[content.OCI_MANIFEST])
    expect_status(pulled, 200)
    expect_digest_header(pulled, digest, strict=strict)


def test_put_manifest_by_digest(client: RegistryClient, tracker: Tracker) -> None:
    image = content.make_image()
    response = tracker.push_image(image)
    expect_location(response)
    pulled = client.get(client.location(response), headers={"Accept": content.OCI_MANIFEST})
    expect_status(pulled, 200)
    assert pulled.content == image.manifest.data, (
        f"Location is not the manifest\n{describe(pulled)}"
    )


def test_put_manifest_with_mismatched_digest(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    image, claimed = content.make_image(), content.unknown_digest()
    for blob in image.blobs:
        tracker.push_blob(blob)
    tracker.track_manifest(claimed)
    tracker.track_manifest(image.manifest.digest)
    response = client.put_manifest(image.manifest, claimed)
    expect_error(response, 400, "DIGEST_INVALID", "MANIFEST_INVALID", strict=strict)
    expect_status(client.get_manifest(claimed), 404)


def test_manifest_with_no_layers(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """The official "emptylayer" case: a manifest whose layers list is empty."""
    config = content.config_blob()
    tracker.push_blob(config)
    manifest = content.image_manifest(config, [])
    tracker.track_manifest(manifest.digest)
    response = client.put_manifest(manifest, content.unique("emptylayer"))
    optional_feature(
        response.status_code == 201, "manifests without layers", response, strict=strict
    )
    expect_location(response)


def test_manifest_bytes_and_unknown_fields_are_kept(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    """Descriptor fields the registry does not know (and `data`) must not be dropped."""
    config = content.config_blob()
    extra = {
        "data": base64.b64encode(config.data).decode(),
        "newUnspecifiedField": "aGVsbG8gd29ybGQ=",
    }
    layer, _ = content.layer_blob()
    manifest = content.image_manifest(
        config, [layer], config_extra=extra, annotations={"org.example.test": "kept"}
    )
    tracker.push_blob(config)
    tracker.push_blob(layer)
    response = tracker.push_manifest(manifest, content.unique("fields"))
    expect_digest_header(response, manifest.digest, strict=strict)
    pulled = client.get_manifest(manifest.digest, accept=[content.OCI_MANIFEST])
    expect_status(pulled, 200)
    assert pulled.content == manifest.data, f"manifest was rewritten\n{describe(pulled)}"


def test_sparse_index_is_accepted(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """An index MAY name manifests the repository does not hold (a sparse index, the main
    suite's OCI_DATA_SPARSE); the registry stores it as pushed."""
    image = content.make_image()
    index = content.index_manifest([image.manifest])
    tracker.track_manifest(index.digest)
    response = client.put_manifest(index, content.unique("sparse"))
    optional_feature(response.status_code == 201, "sparse indexes", response, strict=strict)
    pulled = client.get_manifest(index.digest, accept=[content.OCI_INDEX])
    expect_status(pulled, 200)
    assert pulled.content == index.data, describe(pulled)


@pytest.mark.parametrize("missing", ["layer", "config"])
def test_manifest_referencing_missing_content(
    client: RegistryClient, tracker: Tracker, strict: bool, missing: str
) -> None:
    """A registry MAY reject image manifests whose blobs it does not have.

    The spec names no status for the rejection (its endpoint table gives 404 for failed manifest
    PUTs; docker/distribution answers 400 MANIFEST_BLOB_UNKNOWN), so either is accepted.
    """
    image = content.make_image()
    absent = image.layers[0] if missing == "layer" else image.config
    for blob in image.blobs:
        if blob is not absent:
            tracker.push_blob(blob)
    manifest = image.manifest
    tracker.track_manifest(manifest.digest)
    response = client.put_manifest(manifest)
    if response.status_code == 201:
        optional_feature(False, "rejecting manifests with missing content", response, strict=strict)
    expect_error(
        response,
        (400, 404),
        "MANIFEST_BLOB_UNKNOWN",
        "BLOB_UNKNOWN",
        "MANIFEST_UNKNOWN",
        strict=strict,
    )
    expect_status(client.get_manifest(manifest.digest), 404)


@pytest.mark.parametrize(
    "body",
    [
        b"blablabla",
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
        b' "config": "not a descriptor", "layers": {}}',
    ],
    ids=["not-json", "bad-schema"],
)
def test_invalid_manifest_is_rejected(client: RegistryClient, strict: bool, body: bytes) -> None:
    tag = content.unique("invalid")
    response = client.request(
        "PUT",
        client.manifest_url(tag),
        content=body,
        headers={"Content-Type": content.OCI_MANIFEST},
    )
    expect_error(response, 400, "MANIFEST_INVALID", strict=strict)
    expect_status(client.get_manifest(tag), 404)


def test_invalid_tag_is_rejected(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    """Tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}; anything else never becomes a tag."""
    image = content.make_image()
    for blob in image.blobs:
        tracker.push_blob(blob)
    tracker.track_manifest(image.manifest.digest)
    bad_tag = "-" + "a" * 10
    response = client.put_manifest(image.manifest, bad_tag)
    expect_status(response, 400, 404)
    expect_error(
        response,
        response.status_code,
        "TAG_INVALID",
        "MANIFEST_INVALID",
        "NAME_INVALID",
        "MANIFEST_UNKNOWN",
        "UNSUPPORTED",
        strict=strict,
    )
    tags = client.tags()
    if tags.status_code == 200:
        assert bad_tag not in (json_body(tags).get("tags") or []), describe(tags)


def test_retag_moves_the_tag(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    tag = content.unique("moving")
    first, second = content.make_image(), content.make_image()
    tracker.push_image(first, tag)
    tracker.push_image(second, tag)
    response = client.get_manifest(tag, accept=[content.OCI_MANIFEST])
    expect_status(response, 200)
    assert response.content == second.manifest.data, describe(response)
    expect_digest_header(response, second.manifest.digest, strict=strict)
    old = client.get_manifest(first.manifest.digest, accept=[content.OCI_MANIFEST])
    expect_status(old, 200)


def test_image_index(client: RegistryClient, tracker: Tracker, strict: bool) -> None:
    images = [content.make_image(), content.make_image()]
    for image in images:
        tracker.push_image(image)
    index = content.index_manifest([image.manifest for image in images])
    response = tracker.push_manifest(index, content.unique("index"))
    expect_location(response)
    expect_digest_header(response, index.digest, strict=strict)
    pulled = client.get_manifest(index.digest, accept=[content.OCI_INDEX, content.OCI_MANIFEST])
    expect_status(pulled, 200)
    assert pulled.content == index.data, describe(pulled)
    assert pulled.headers.get("Content-Type", "").startswith(content.OCI_INDEX), describe(pulled)


def test_docker_schema2_manifest_and_list(
    client: RegistryClient, tracker: Tracker, strict: bool
) -> None:
    image = content.make_image(docker=True)
    tracker.push_image(image, content.unique("docker"))
    pulled = client.get_manifest(image.manifest.digest, accept=[content.DOCKER_MANIFEST])
    expect_status(pulled, 200)
    assert pulled.content == image.manifest.data, describe(pulled)
    assert pulled.headers.get("Content-Type", "").startswith(content.DOCKER_MANIFEST), describe(
        pulled
    )
    listing = content.index_manifest([image.manifest], media_type=content.DOCKER_LIST)
    tracker.push_manifest(listing, content.unique("dockerlist"))
    pulled = client.get_manifest(listing.digest, accept=[content.DOCKER_LIST])
    expect_status(pulled, 200)
    assert pulled.content == listing.data, describe(pulled)
    assert pulled.headers.get("Content-Type", "").startswith(content.DOCKER_LIST), describe(pulled)


def test_artifact_manifest(client: RegistryClient, tracker: Tracker) -> None:
    """An image-spec 1.1 artifact: artifactType, the empty config, a non-image layer."""
    payload = content.random_blob(media_type="application/vnd.example.payload")
    tracker.push_blob(content.EMPTY_JSON)
    tracker.push_blob(payload)
    manifest = content.image_manifest(
        content.EMPTY_JSON, [payload], artifact_type="application/vnd.example.artifact"
    )
    assert content.EMPTY_JSON.digest == content.EMPTY_JSON_DIGEST
    tracker.push_manifest(manifest, content.unique("artifact"))
    pulled = client.get_manifest(manifest.digest, accept=[content.OCI_MANIFEST])
    expect_status(pulled, 200)
    assert pulled.content == manifest.data, describe(pulled)


def test_invalid_repository_name(client: RegistryClient, namespace: str, strict: bool) -> None:
    """Repository names are lower case; an upper-case one is NAME_INVALID (or simply unknown)."""
    response = client.start_upload(f"{namespace}/Not-Lower-Case")
    expect_status(response, 400, 404)
    if strict:
        expect_error(response, 400, "NAME_INVALID", strict=True)
    else:
        expect_error(response, response.status_code, "NAME_INVALID", "NAME_UNKNOWN", strict=False)
