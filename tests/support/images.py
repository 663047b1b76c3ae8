"""Build small container images on disk, with no network, for the real-client tests.

There is no Docker Hub here, so every image a client pushes is made by these helpers:

- `rootfs_tar` writes a plain tar of a few files, for `docker import` / `podman import`.
- `build_image` / `build_index` make the blobs and manifests of an OCI image, a Docker v2s2
  image or a multi-arch OCI index in memory, byte for byte, so tests know every digest.
- `write_oci_layout` lays them out for skopeo's `oci:` transport and `write_dir_layout` for its
  `dir:` transport (which, unlike `oci:`, keeps Docker media types unconverted).
- `read_oci_layout_manifest` / `read_dir_layout_manifest` read back what skopeo wrote, so a
  round trip through the registry can be compared by digest.

Everything is deterministic (fixed mtimes, sorted keys), so the same call gives the same
digests; pass a distinct `label` when a test needs an image nobody pushed before.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.oci import canonical_json, digest_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
FIXED_CREATED = "2024-01-01T00:00:00Z"
FIXED_MTIME = 1704067200  # FIXED_CREATED as a Unix time


def sha256_digest(data: bytes) -> str:
    """The `sha256:<hex>` content address that registries and layouts use."""
    return digest_of(data, "sha256")


@dataclass(frozen=True)
class Blob:
    """Some bytes with the media type they are referenced under."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        """An OCI descriptor for this blob; `extra` adds platform, annotations, etc."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Image:
    """One image manifest with its config and layers (all as exact bytes)."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    platform: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        """Every blob the manifest references (config first)."""
        return [self.config, *self.layers]


@dataclass(frozen=True)
class Index:
    """An image index (multi-arch image) with the images it lists."""

    manifest: Blob
    children: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        """Child manifests and their blobs: everything a layout must hold besides the index."""
        found: dict[str, Blob] = {}
        for child in self.children:
            for blob in (child.manifest, *child.blobs()):
                found[blob.digest] = blob
        return list(found.values())


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """A reproducible tar of `files` (path -> content): root-owned, fixed mtime, sorted."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            content = files[name]
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(content)
            info.mtime = FIXED_MTIME
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0, so compressing the same tar twice gives the same layer digest."""
    return gzip.compress(data, mtime=0)


def sample_files(label: str, extra_bytes: int = 0) -> dict[str, bytes]:
    """A few small files whose content depends on `label`, so each label is a new image."""
    return {
        "etc/os-release": f'NAME="ociregistry test image"\nID=test\nLABEL="{label}"\n'.encode(),
        "hello.sh": f"#!/bin/sh\necho hello from {label}\n".encode(),
        "data/payload.bin": hashlib.sha256(label.encode()).digest() * (1 + extra_bytes // 32),
    }


def rootfs_tar(path: Path, label: str) -> Path:
    """Write an uncompressed root filesystem tar for `docker import` / `podman import`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tar_bytes(sample_files(label)))
    return path


def build_image(
    label: str,
    *,
    architecture: str = "amd64",
    os_name: str = "linux",
    docker: bool = False,
    layer_count: int = 1,
) -> Image:
    """An OCI image (or, with `docker=True`, a Docker v2s2 image) of `layer_count` layers."""
    layer_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    tars = [tar_bytes(sample_files(f"{label}/{architecture}/layer{i}")) for i in range(layer_count)]
    layers = tuple(Blob(layer_type, gzip_bytes(tar)) for tar in tars)
    config_doc = {
        "architecture": architecture,
        "os": os_name,
        "created": FIXED_CREATED,
        "config": {"Cmd": ["/hello.sh"], "Labels": {"test.label": label}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar) for tar in tars]},
        "history": [{"created": FIXED_CREATED, "created_by": "tests/images.py"}] * layer_count,
    }
    config = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, canonical_json(config_doc))
    manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    platform = {"architecture": architecture, "os": os_name}
    return Image(Blob(manifest_type, canonical_json(manifest_doc)), config, layers, platform)


def build_index(label: str, architectures: Sequence[str] = ("amd64", "arm64")) -> Index:
    """A multi-arch OCI index with one small image per architecture (linux)."""
    children = tuple(build_image(label, architecture=arch) for arch in architectures)
    index_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.manifest.descriptor(platform=child.platform) for child in children],
    }
    return Index(Blob(OCI_INDEX, canonical_json(index_doc)), children)


def write_oci_layout(directory: Path, top: Image | Index, tag: str = "latest") -> Path:
    """An OCI image layout holding `top` under `tag`, for skopeo's `oci:DIR:TAG`."""
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for blob in [*top.blobs(), top.manifest]:
        (blob_dir / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [top.manifest.descriptor(annotations={REF_NAME_ANNOTATION: tag})],
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def read_oci_layout_manifest(directory: Path, tag: str = "latest") -> Blob:
    """The manifest tagged `tag` in an OCI layout (as skopeo wrote it), as exact bytes."""
    index = json.loads((directory / "index.json").read_text())
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get(REF_NAME_ANNOTATION) == tag:
            return read_oci_layout_blob(directory, descriptor["digest"], descriptor["mediaType"])
    raise KeyError(f"no manifest tagged {tag!r} in {directory}/index.json: {index}")


def read_oci_layout_blob(directory: Path, digest: str, media_type: str = "") -> Blob:
    """One blob of an OCI layout; its digest is checked against the file's content."""
    algorithm, hex_digest = digest.split(":", 1)
    blob = Blob(media_type, (directory / "blobs" / algorithm / hex_digest).read_bytes())
    assert blob.digest == digest, f"layout blob {digest} holds bytes of digest {blob.digest}"
    return blob


def write_dir_layout(directory: Path, image: Image) -> Path:
    """skopeo's `dir:` layout of one image: it keeps Docker v2s2 media types as they are."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "version").write_text("Directory Transport Version: 1.1\n")
    (directory / "manifest.json").write_bytes(image.manifest.data)
    for blob in image.blobs():
        (directory / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    return directory


def read_dir_layout_manifest(directory: Path) -> Blob:
    """The manifest of a `dir:` layout, with the media type it declares."""
    data = (directory / "manifest.json").read_bytes()
    return Blob(json.loads(data).get("mediaType", ""), data)
