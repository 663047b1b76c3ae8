"""The referrers API's answer: an OCI index of the manifests that refer to a subject."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ociregistry.catalog.images import Referrer
from ociregistry.manifests.mediatypes import OCI_INDEX


def referrers_index(referrers: Iterable[Referrer]) -> dict[str, Any]:
    manifests = []
    for referrer in referrers:
        descriptor: dict[str, Any] = {
            "mediaType": referrer.media_type,
            "digest": referrer.digest,
            "size": referrer.size,
        }
        if referrer.artifact_type:
            descriptor["artifactType"] = referrer.artifact_type
        if referrer.annotations:
            descriptor["annotations"] = referrer.annotations
        manifests.append(descriptor)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
