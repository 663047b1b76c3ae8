"""`/v2/<name>/blobs/uploads/`: monolithic, chunked and resumable blob uploads, and
cross-repository mounts."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from ociregistry.auth.policy import Action
from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.uploads import UploadSession
from ociregistry.errors import BlobUploadInvalid, DigestInvalid, NameInvalid
from ociregistry.names import RepositoryName
from ociregistry.v2.common import has_body, principal, repository, services

_CONTENT_RANGE = re.compile(r"(?:bytes )?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def _created(repo: RepositoryName, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": f"/v2/{repo.full}/blobs/{digest}",
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        },
    )


def _accepted(request: Request, session: UploadSession, size: int, status: int = 202) -> Response:
    headers = services(request).uploads.progress_headers(session, size)
    headers["Content-Length"] = "0"
    return Response(status_code=status, headers=headers)


def _required_digest(request: Request) -> Digest:
    value = request.query_params.get("digest")
    if not value:
        raise DigestInvalid(
            "the digest query parameter is required to finish an upload: PUT ...?digest=sha256:…"
        )
    return Digest.parse(value)


async def _try_mount(request: Request, repo: RepositoryName, digest: Digest) -> Response | None:
    """Mount a blob from another repository when the caller may pull it there; None
    otherwise, and the caller then gets a new upload session instead (202)."""
    source_name = request.query_params.get("from")
    if not source_name:
        return None
    registry = services(request)
    try:
        source = RepositoryName.parse(source_name)
    except NameInvalid:
        return None
    if not await registry.policy.allows(await principal(request), source, Action.PULL):
        return None
    size = await registry.images.blob_size(source, digest)
    if size is None or await registry.blobs.size(digest) is None:
        return None
    await registry.images.link_blob(repo, digest, size)
    return _created(repo, digest)


async def start_upload(request: Request) -> Response:
    repo = repository(request)
    registry = services(request)
    # Allowed to push means the registry exists and is available.
    await registry.policy.require(await principal(request), repo, Action.PUSH)

    mount = request.query_params.get("mount")
    if mount:
        mounted = await _try_mount(request, repo, Digest.parse(mount))
        if mounted is not None:
            return mounted

    digest_param = request.query_params.get("digest")
    if digest_param:  # monolithic: the whole blob in this one request
        digest = Digest.parse(digest_param)
        await registry.blob_pushes.push_whole(repo, digest, request.stream())
        return _created(repo, digest)

    session = await registry.uploads.start(repo.full)
    return _accepted(request, session, 0)


async def _session(request: Request) -> tuple[RepositoryName, UploadSession]:
    repo = repository(request)
    registry = services(request)
    await registry.policy.require(await principal(request), repo, Action.PUSH)
    session = await registry.uploads.get(request.path_params["upload_id"], repo.full)
    return repo, session


async def upload_status(request: Request) -> Response:
    _, session = await _session(request)
    return _accepted(request, session, session.offset, status=204)


async def upload_chunk(request: Request) -> Response:
    _, session = await _session(request)
    start = length = None
    header = request.headers.get("content-range")
    if header:
        match = _CONTENT_RANGE.fullmatch(header.strip())
        if match is None:
            raise BlobUploadInvalid(
                f"invalid Content-Range {header[:100]!r}: expected <start>-<end>",
                detail={"Content-Range": header[:100]},
            )
        first, last = int(match.group(1)), int(match.group(2))
        if last < first:
            raise BlobUploadInvalid(
                f"invalid Content-Range {header[:100]!r}: the end is before the start",
                detail={"Content-Range": header[:100]},
            )
        start, length = first, last - first + 1
    size = await services(request).uploads.append(
        session, request.stream(), start=start, length=length
    )
    return _accepted(request, session, size)


async def finish_upload(request: Request) -> Response:
    repo, session = await _session(request)
    digest = _required_digest(request)
    registry = services(request)
    body = request.stream() if has_body(request) else None
    await registry.blob_pushes.finish(repo, session, digest, body)
    return _created(repo, digest)


async def cancel_upload(request: Request) -> Response:
    _, session = await _session(request)
    await services(request).uploads.cancel(session)
    return Response(status_code=204)
