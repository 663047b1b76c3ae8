"""Garbage collection reclaims what deletions leave behind, and nothing a live image or a push
in flight still needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ociregistry.blobstore import CheckedDriver, Digest
from ociregistry.catalog.candidates import BlobCandidate
from ociregistry.content.gc import GarbageCollector
from ociregistry.names import RepositoryName
from support.inprocess import InProcessRegistry
from support.oci import digest_of

REGISTRY = "gc"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[InProcessRegistry]:
    """On both databases: the candidates are recorded by dialect-specific upserts."""
    with InProcessRegistry(tmp_path / "data", database_url=database_url) as running:
        running.run(running.services.registries.create(REGISTRY, public=True))
        yield running


def push_blob(registry: InProcessRegistry, image: str, data: bytes) -> str:
    digest = digest_of(data)
    response = registry.run(
        registry.client.post(
            f"/v2/{REGISTRY}/{image}/blobs/uploads/", params={"digest": digest}, content=data
        )
    )
    assert response.status_code == 201, response.text
    return digest


def push_manifest(
    registry: InProcessRegistry, image: str, document: dict[str, object], reference: str | None
) -> str:
    body = json.dumps(document).encode()
    digest = digest_of(body)
    response = registry.run(
        registry.client.put(
            f"/v2/{REGISTRY}/{image}/manifests/{reference or digest}",
            content=body,
            headers={"Content-Type": str(document["mediaType"])},
        )
    )
    assert response.status_code == 201, response.text
    return digest


def push_image(
    registry: InProcessRegistry, image: str, layers: list[bytes], tag: str | None, **extra: object
) -> tuple[str, list[str]]:
    """An OCI image of `layers`; returns its manifest digest and its blob digests."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "image": image}).encode()
    blobs = [push_blob(registry, image, data) for data in [config, *layers]]
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blobs[0],
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(data)}
            for d, data in zip(blobs[1:], layers, strict=True)
        ],
        **extra,
    }
    return push_manifest(registry, image, document, tag), blobs


def stored(registry: InProcessRegistry, digest: str) -> bool:
    return registry.run(registry.services.blobs.size(Digest.parse(digest))) is not None


def collector(registry: InProcessRegistry, grace: float = 0) -> GarbageCollector:
    services = registry.services
    return GarbageCollector(services.db, services.blobs.driver, grace_seconds=grace)


def test_deleted_image_is_reclaimed_and_shared_blobs_stay(registry: InProcessRegistry) -> None:
    shared = b"shared layer"
    gone_manifest, gone_blobs = push_image(registry, "gone", [b"only in gone", shared], "1")
    kept_manifest, kept_blobs = push_image(registry, "kept", [shared], "1")
    registry.run(registry.services.listings.delete_image(REGISTRY, "gone"))

    dry = registry.run(collector(registry).collect(dry_run=True))
    assert dry.blobs_deleted == 3  # gone's config, its own layer and its manifest
    assert all(stored(registry, d) for d in [gone_manifest, *gone_blobs])

    report = registry.run(collector(registry).collect())
    assert report.blobs_deleted == 3 and report.bytes_freed > 0
    assert not stored(registry, gone_manifest)
    assert not stored(registry, gone_blobs[0]) and not stored(registry, gone_blobs[1])
    assert all(stored(registry, d) for d in [kept_manifest, *kept_blobs])
    fetched = registry.run(registry.client.get(f"/v2/{REGISTRY}/kept/manifests/1"))
    assert fetched.status_code == 200


def test_young_blobs_are_never_collected(registry: InProcessRegistry) -> None:
    """What a delete left a moment ago waits for the grace window, and is reported held."""
    manifest, blobs = push_image(registry, "young", [b"a young layer"], "1")
    registry.run(registry.services.listings.delete_image(REGISTRY, "young"))
    held = registry.run(collector(registry, grace=3600).collect())
    assert held.blobs_deleted == 0 and held.blobs_held == 3 and held.bytes_held > 0
    assert all(stored(registry, d) for d in [manifest, *blobs])
    assert registry.run(collector(registry, grace=0).collect()).blobs_deleted == 3


def test_a_blob_written_but_never_linked_is_collected(registry: InProcessRegistry) -> None:
    """An upload records its blob before writing it: if the link never comes (the process
    died in between), the blob is still found, without a walk of the store."""
    data = b"written, then the process died before the link"
    digest = Digest.parse(digest_of(data))
    registry.run(registry.services.images.note_blob_written(digest))
    registry.run(registry.services.blobs.put(digest, data))
    report = registry.run(collector(registry).collect())
    assert report.blobs_deleted == 1 and report.bytes_freed == len(data)
    assert not stored(registry, str(digest))


def test_pushed_blobs_are_dropped_from_the_candidates(registry: InProcessRegistry) -> None:
    """Every finished upload is a candidate; once linked, collection drops it and keeps the
    blob."""
    manifest, blobs = push_image(registry, "live", [b"a live layer"], "1")
    assert candidate_digests(registry) >= set(blobs)
    assert registry.run(collector(registry).collect()).blobs_deleted == 0
    assert candidate_digests(registry) == set()
    assert all(stored(registry, d) for d in [manifest, *blobs])


def test_deleted_manifest_and_registry_are_reclaimed(registry: InProcessRegistry) -> None:
    manifest, blobs = push_image(registry, "m", [b"layer of m"], None)
    deleted = registry.run(registry.client.delete(f"/v2/{REGISTRY}/m/manifests/{manifest}"))
    assert deleted.status_code == 202
    assert registry.run(collector(registry).collect()).blobs_deleted == 1  # layers stay linked
    assert not stored(registry, manifest) and all(stored(registry, d) for d in blobs)

    registry.run(registry.services.registries.create("gc-gone", public=True))
    body = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    config = digest_of(body)
    answer = registry.run(
        registry.client.post(
            "/v2/gc-gone/x/blobs/uploads/", params={"digest": config}, content=body
        )
    )
    assert answer.status_code == 201
    assert registry.run(collector(registry).collect()).blobs_deleted == 0  # linked: dropped
    registry.run(registry.services.registries.delete("gc-gone", delete_images=True, wait=True))
    assert registry.run(collector(registry).collect()).blobs_deleted == 1
    assert not stored(registry, config)


def test_a_deleted_blob_link_is_reclaimed(registry: InProcessRegistry) -> None:
    """`DELETE /v2/…/blobs/<digest>` of a blob no manifest came for: the blob goes too."""
    digest = push_blob(registry, "unlinked", b"a blob whose manifest never came")
    assert registry.run(collector(registry).collect()).blobs_deleted == 0  # linked: dropped
    deleted = registry.run(registry.client.delete(f"/v2/{REGISTRY}/unlinked/blobs/{digest}"))
    assert deleted.status_code == 202, deleted.text
    assert registry.run(collector(registry).collect()).blobs_deleted == 1
    assert not stored(registry, digest)


def candidate_digests(registry: InProcessRegistry) -> set[str]:
    async def read() -> set[str]:
        async with registry.services.db.read() as conn:
            return set((await conn.scalars(select(BlobCandidate.digest))).all())

    return registry.run(read())


def test_delete_untagged_keeps_what_is_still_needed(registry: InProcessRegistry) -> None:
    untagged, _ = push_image(registry, "app", [b"layer u"], None)
    child, _ = push_image(registry, "app", [b"layer c"], None)
    child_size = len(
        registry.run(registry.client.get(f"/v2/{REGISTRY}/app/manifests/{child}")).content
    )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": child,
                "size": child_size,
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    }
    push_manifest(registry, "app", index, "multi")
    tagged, _ = push_image(registry, "app", [b"layer t"], "1")
    subject_size = len(
        registry.run(registry.client.get(f"/v2/{REGISTRY}/app/manifests/{tagged}")).content
    )
    referrer, _ = push_image(
        registry,
        "app",
        [b"signature"],
        None,
        subject={"mediaType": OCI_MANIFEST, "digest": tagged, "size": subject_size},
    )

    report = registry.run(collector(registry).collect(delete_untagged=True))
    assert report.manifests_deleted == 1
    manifests = registry.services.images
    repo = RepositoryName(REGISTRY, "app")
    assert registry.run(manifests.find_manifest(repo, digest=Digest.parse(untagged))) is None
    for kept in (child, tagged, referrer):
        assert registry.run(manifests.find_manifest(repo, digest=Digest.parse(kept))) is not None
    assert not stored(registry, untagged)


def test_collection_never_walks_the_store(registry: InProcessRegistry) -> None:
    """Candidates come from the database: no walk, no `stat` of blobs whose size the database
    knows, and the garbage goes in one `delete_many` (one DeleteObjects on S3)."""
    kept_manifest, _ = push_image(registry, "many", [b"layer %d" % n for n in range(20)], "1")
    gone_manifest, gone_blobs = push_image(registry, "gone", [b"gone layer"], "1")
    registry.run(registry.services.listings.delete_image(REGISTRY, "gone"))
    operations: list[tuple[str, str]] = []
    traced = CheckedDriver(
        registry.services.blobs.driver.driver,
        lambda operation, path, _seconds, _error: operations.append((operation, path)),
    )
    services = registry.services
    report = registry.run(GarbageCollector(services.db, traced, grace_seconds=0).collect())
    assert report.blobs_deleted == 3
    assert [op for op, _ in operations] == ["delete_many"]
    assert not any(stored(registry, d) for d in [gone_manifest, *gone_blobs])
    assert stored(registry, kept_manifest)
