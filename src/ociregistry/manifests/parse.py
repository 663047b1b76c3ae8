"""Parsing and validating manifests as pushed, before anything is stored.

A manifest's bytes are never rewritten: its digest is the digest of the bytes as sent. This
module only reads them to learn what the manifest references, so the registry can check that
everything it needs exists, and to answer the referrers API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ociregistry.blobstore.digest import Digest
from ociregistry.errors import DigestInvalid, ManifestInvalid, Unsupported
from ociregistry.manifests import mediatypes as mt


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: str | None = None  # os/arch[/variant], for an index's children
    foreign: bool = False


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blobs: list[Descriptor] = field(default_factory=list)  # config and layers
    children: list[Descriptor] = field(default_factory=list)  # an index's manifests
    subject: Descriptor | None = None
    artifact_type: str | None = None  # as the referrers API reports it
    annotations: dict[str, str] | None = None


def _bare(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _descriptor(value: Any, where: str, *, platform: bool = False) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} must be a descriptor object", detail={"field": where})
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}.mediaType must be a string", detail={"field": where})
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}.digest must be a string", detail={"field": where})
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(
            f"{where}.size must be a non-negative integer", detail={"field": where}
        )
    try:
        parsed_digest = Digest.parse(digest)
    except (DigestInvalid, Unsupported) as error:
        raise ManifestInvalid(f"{where}.digest: {error.message}", detail={"field": where}) from None
    return Descriptor(
        media_type=media_type,
        digest=parsed_digest,
        size=size,
        platform=_platform(value.get("platform")) if platform else None,
        foreign=media_type in mt.FOREIGN_LAYERS and bool(value.get("urls")),
    )


def _platform(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    parts = [value.get("os"), value.get("architecture"), value.get("variant")]
    text = "/".join(str(part) for part in parts if part)
    return text or None


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string", detail={"field": "mediaType"})
    header = _bare(content_type)
    if header in ("application/json", "application/octet-stream"):
        header = None  # clients that do not name a type; judge by the document
    if declared and header and declared != header:
        raise ManifestInvalid(
            f"the manifest's mediaType {declared!r} disagrees with its Content-Type {header!r}",
            detail={"mediaType": declared, "contentType": header},
        )
    media_type = declared or header
    if media_type is None:
        # OCI makes mediaType optional; tell an index from an image by its shape.
        media_type = mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST
    if media_type in mt.SCHEMA1:
        raise ManifestInvalid(
            "Docker schema 1 manifests are not supported; push with a current client, which "
            "sends Docker schema 2 or OCI manifests",
            detail={"mediaType": media_type},
        )
    if media_type not in mt.MANIFESTS:
        raise ManifestInvalid(
            f"unsupported manifest media type {media_type!r}; use an OCI image manifest or "
            "index, or a Docker schema 2 manifest or manifest list",
            detail={"mediaType": media_type},
        )
    return media_type


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Check a manifest's structure and collect what it references. Raises MANIFEST_INVALID."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestInvalid(f"the manifest is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("the manifest must be a JSON object")
    if document.get("schemaVersion") == 1 or _bare(content_type) in mt.SCHEMA1:
        raise ManifestInvalid(
            "Docker schema 1 manifests are not supported; push with a current client, which "
            "sends Docker schema 2 or OCI manifests",
            detail={"schemaVersion": 1},
        )
    if document.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2", detail={"field": "schemaVersion"})
    media_type = _media_type(document, content_type)

    annotations = document.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise ManifestInvalid("annotations must map strings to strings")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid("artifactType must be a string", detail={"field": "artifactType"})
    subject = None
    if document.get("subject") is not None:
        subject = _descriptor(document["subject"], "subject")

    if media_type in mt.INDEXES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise ManifestInvalid("an index must have a manifests array")
        children = [
            _descriptor(entry, f"manifests[{i}]", platform=True) for i, entry in enumerate(entries)
        ]
        return ParsedManifest(
            media_type,
            children=children,
            subject=subject,
            artifact_type=artifact_type,
            annotations=annotations,
        )

    if "manifests" in document:
        raise ManifestInvalid(f"a {media_type} must not have a manifests array")
    config = _descriptor(document.get("config"), "config")
    layers_value = document.get("layers", [])
    if not isinstance(layers_value, list):
        raise ManifestInvalid("layers must be an array", detail={"field": "layers"})
    layers = [_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers_value)]
    return ParsedManifest(
        media_type,
        blobs=[config, *layers],
        subject=subject,
        artifact_type=artifact_type or config.media_type,
        annotations=annotations,
    )
