"""`/v2/<name>/referrers/<digest>`: the manifests whose `subject` is a digest, as an OCI index."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from ociregistry.auth.policy import Action
from ociregistry.blobstore.digest import Digest
from ociregistry.content.referrers import referrers_index
from ociregistry.manifests.mediatypes import OCI_INDEX
from ociregistry.v2.common import Access, requires, services


@requires(Action.PULL)
async def list_referrers(request: Request, access: Access) -> Response:
    """Allowed to pull means the registry exists; an image with nothing pushed yet (or no
    image at all) has no referrers: an empty index, as the spec asks, not NAME_UNKNOWN."""
    repo = access.repo
    subject = Digest.parse(request.path_params["digest"])
    parts = services(request)
    artifact_type = request.query_params.get("artifactType") or None
    referrers = await parts.images.referrers(repo, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return Response(json.dumps(referrers_index(referrers)), media_type=OCI_INDEX, headers=headers)
