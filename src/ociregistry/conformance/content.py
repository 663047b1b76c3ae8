"""Blobs and manifests made up for the tests.

Every call makes new content (random bytes, a random config author) so that tests never share
a digest: one test deleting its blob can never break another, and a rerun against a registry
that kept old data starts clean.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCTET_STREAM = "application/octet-stream"

#: The "empty descriptor" of image-spec 1.1; its digest is fixed by the spec.
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def unknown_digest() -> str:
    """A well-formed digest of content nobody has pushed."""
    return digest_of(secrets.token_bytes(32))


def unique(prefix: str) -> str:
    """A short name no other test or run uses (valid as a tag and as a path component)."""
    return f"{prefix}-{secrets.token_hex(5)}"


@dataclass(frozen=True)
class Blob:
    """Bytes plus the media type a descriptor should give them."""

    data: bytes
    media_type: str = OCTET_STREAM
    algorithm: str = "sha256"

    @property
    def digest(self) -> str:
        return digest_of(self.data, self.algorithm)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}

    def as_type(self, media_type: str) -> Blob:
        return replace(self, media_type=media_type)


EMPTY_JSON = Blob(b"{}", OCI_EMPTY)


def random_blob(size: int = 64, media_type: str = OCTET_STREAM) -> Blob:
    return Blob(secrets.token_bytes(size), media_type)


def layer_blob(media_type: str = OCI_LAYER) -> tuple[Blob, str]:
    """A real gzipped tarball holding one random file, and its diff_id (digest of the tar)."""
    payload = f"conformance {secrets.token_hex(16)}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("conformance.txt")
        info.size, info.mode, info.mtime = len(payload), 0o644, 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return Blob(gzip.compress(tar_bytes, mtime=0), media_type), digest_of(tar_bytes)


def config_blob(diff_ids: Sequence[str] = (), media_type: str = OCI_CONFIG) -> Blob:
    """An image config; the random author makes its digest unique, as the official suite does."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "author": secrets.token_hex(8),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    return Blob(json.dumps(config, indent="\t").encode(), media_type)


@dataclass(frozen=True)
class Manifest:
    """Serialized manifest bytes; the registry must hand back exactly these bytes."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def _serialize(doc: dict[str, Any], media_type: str) -> Manifest:
    # Tab indentation (as the official suite) makes the bytes non-canonical: a registry that
    # re-serializes the JSON instead of storing the bytes changes the digest and fails.
    return Manifest(json.dumps(doc, indent="\t").encode(), media_type)


def image_manifest(
    config: Blob,
    layers: Sequence[Blob],
    *,
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
    subject: Manifest | None = None,
    annotations: dict[str, str] | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Manifest:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor(**(config_extra or {}))
    doc["layers"] = [layer.descriptor() for layer in layers]
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations:
        doc["annotations"] = annotations
    return _serialize(doc, media_type)


def index_manifest(
    manifests: Sequence[Manifest],
    *,
    media_type: str = OCI_INDEX,
    artifact_type: str | None = None,
    subject: Manifest | None = None,
    annotations: dict[str, str] | None = None,
    platforms: bool = True,
) -> Manifest:
    platform = {"architecture": "amd64", "os": "linux"}
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["manifests"] = [
        m.descriptor(**({"platform": platform} if platforms else {})) for m in manifests
    ]
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations:
        doc["annotations"] = annotations
    return _serialize(doc, media_type)


@dataclass(frozen=True)
class Image:
    """A config, its layers and the manifest that ties them together."""

    config: Blob
    layers: tuple[Blob, ...]
    manifest: Manifest
    blobs: tuple[Blob, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blobs", (self.config, *self.layers))


def make_image(
    *,
    layers: int = 1,
    docker: bool = False,
    annotations: dict[str, str] | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Image:
    """A new runnable-looking image: OCI by default, Docker schema 2 with `docker=True`."""
    layer_type, config_type, manifest_type = (
        (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST)
        if docker
        else (OCI_LAYER, OCI_CONFIG, OCI_MANIFEST)
    )
    made = [layer_blob(layer_type) for _ in range(layers)]
    config = config_blob([diff_id for _, diff_id in made], config_type)
    blobs = tuple(blob for blob, _ in made)
    manifest = image_manifest(
        config,
        blobs,
        media_type=manifest_type,
        annotations=annotations,
        config_extra=config_extra,
    )
    return Image(config, blobs, manifest)


def chunked_blob(min_chunk: int = 0, size: int = 42) -> tuple[Blob, bytes, bytes]:
    """A blob and its two chunks; chunk 1 is at least `min_chunk` long (OCI-Chunk-Min-Length)."""
    size = max(size, 2 * min_chunk + 2)
    blob = random_blob(size)
    cut = max(size // 2 + 1, min_chunk)
    return blob, blob.data[:cut], blob.data[cut:]
