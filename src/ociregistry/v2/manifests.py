"""`/v2/<name>/manifests/<reference>`: push, fetch, check and delete manifests by tag or digest."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ociregistry.auth.policy import Action, Principal
from ociregistry.content.manifests import Reference
from ociregistry.errors import ManifestUnknown, TagInvalid
from ociregistry.manifests.mediatypes import MAX_MANIFEST_BYTES
from ociregistry.v2.common import Access, read_body, requires, services


def pull_client(request: Request, caller: Principal) -> str:
    """Who pulls, for pull counting: the address and the credentials (SPEC §3)."""
    client = request.scope.get("client")
    address = client[0] if client else "unknown"
    return f"{address}|{caller.username or '-'}"


class _ManifestResponse(Response):
    """A manifest's answer with its headers already as ASGI wants them: the hottest answer of
    the registry need not go through `Response`'s header normalisation each time."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def _manifest_headers(media_type: str, size: int, digest: str) -> list[tuple[bytes, bytes]]:
    encoded = digest.encode("latin-1")
    return [
        (b"content-type", media_type.encode("latin-1")),
        (b"content-length", str(size).encode("latin-1")),
        (b"docker-content-digest", encoded),
        (b"etag", b'"' + encoded + b'"'),
    ]


def _existing_reference(request: Request) -> Reference:
    """A reference to look up: one that cannot be a tag names no manifest (404, as the OCI
    conformance suite expects), while pushing to it is refused as TAG_INVALID."""
    try:
        return Reference.parse(request.path_params["reference"])
    except TagInvalid as error:
        raise ManifestUnknown(error.message, detail=error.detail) from None


async def _fetch(request: Request, access: Access, *, with_body: bool) -> Response:
    repo, caller = access.repo, access.caller
    reference = _existing_reference(request)
    parts = services(request)
    record, body = await parts.manifests.get(repo, reference)
    parts.pulls.on_get_manifest(
        pull_client(request, caller),
        repo.registry,
        repo.image,
        reference.tag,
        record.digest,
        record.media_type,
        head=not with_body,
    )
    headers = _manifest_headers(record.media_type, record.size, record.digest)
    return _ManifestResponse(body if with_body else b"", headers)


@requires(Action.PULL)
async def get_manifest(request: Request, access: Access) -> Response:
    return await _fetch(request, access, with_body=True)


@requires(Action.PULL)
async def head_manifest(request: Request, access: Access) -> Response:
    return await _fetch(request, access, with_body=False)


@requires(Action.PUSH)
async def put_manifest(request: Request, access: Access) -> Response:
    """Push by tag, or by digest with any number of `?tag=` (distribution-spec main): every
    tag is set with the manifest, or, when one is invalid, nothing is (TAG_INVALID)."""
    repo = access.repo
    reference = Reference.parse(request.path_params["reference"])
    parts = services(request)
    body = await read_body(request, MAX_MANIFEST_BYTES)
    pushed = await parts.manifests.put(
        repo,
        reference,
        body,
        request.headers.get("content-type"),
        tags=request.query_params.getlist("tag"),
    )
    headers = {
        "Location": f"/v2/{repo.full}/manifests/{pushed.digest}",
        "Docker-Content-Digest": str(pushed.digest),
        "Content-Length": "0",
    }
    if pushed.subject is not None:
        headers["OCI-Subject"] = str(pushed.subject)
    response = Response(status_code=201, headers=headers)
    for tag in dict.fromkeys(pushed.tags):
        response.headers.append("OCI-Tag", tag)
    return response


@requires(Action.DELETE)
async def delete_manifest(request: Request, access: Access) -> Response:
    repo = access.repo
    reference = _existing_reference(request)
    parts = services(request)
    immutable_too = await parts.policy.may_delete_immutable(access.caller, repo.registry)
    await parts.manifests.delete(repo, reference, immutable_too=immutable_too)
    return Response(status_code=202)
