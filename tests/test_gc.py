"""Garbage collection reclaims what deletions leave behind, and nothing a live image or a push
in flight still needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociregistry.blobstore import CheckedDriver, Digest
from ociregistry.content.gc import GarbageCollector
from ociregistry.names import RepositoryName
from support.inprocess import InProcessRegistry
from support.oci import digest_of

REGISTRY = "gc"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[InProcessRegistry]:
    running = InProcessRegistry(tmp_path / "data")
    running.run(running.services.registries.create(REGISTRY, public=True))
    yield running
    running.close()


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
    """A blob written a moment ago (an upload finishing, not yet linked) is left alone."""
    data = b"an upload that is about to be linked"
    digest = Digest.parse(digest_of(data))
    registry.run(registry.services.blobs.put(digest, data))
    assert registry.run(collector(registry, grace=3600).collect()).blobs_deleted == 0
    assert stored(registry, str(digest))
    assert registry.run(collector(registry, grace=0).collect()).blobs_deleted == 1


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


def test_collection_walks_the_store_once(registry: InProcessRegistry) -> None:
    """One walk of the store and a set difference against the database: no `stat` per blob,
    and only the garbage is touched again (checked, then deleted)."""
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
    assert [op for op, _ in operations if op != "delete"] == ["walk"]
    deleted = {path.rpartition("/")[2] for op, path in operations if op == "delete"}
    assert deleted == {d.partition(":")[2] for d in [gone_manifest, *gone_blobs]}
    assert stored(registry, kept_manifest)
