"""`/v2/<name>/blobs/uploads/`: monolithic, chunked and resumable blob uploads, and
cross-repository mounts."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from ociregistry.auth.policy import Action, scope_for
from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.uploads import UploadSession
from ociregistry.errors import BlobUploadInvalid, DigestInvalid, NameInvalid, RangeInvalid
from ociregistry.names import RepositoryName
from ociregistry.v2.common import Access, has_body, requires, services, upload_headers

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
    headers = upload_headers(request, session.repository, session.id, size)
    headers["Content-Length"] = "0"
    return Response(status_code=status, headers=headers)


def _required_digest(request: Request) -> Digest:
    value = request.query_params.get("digest")
    if not value:
        raise DigestInvalid(
            "the digest query parameter is required to finish an upload: PUT ...?digest=sha256:…"
        )
    return Digest.parse(value)


def _mount_source(request: Request) -> RepositoryName | None:
    """The `from` of a mount; None when absent or not a repository name (then no mount)."""
    source = request.query_params.get("from")
    if not source:
        return None
    try:
        return RepositoryName.parse(source)
    except NameInvalid:
        return None


def _mount_scopes(request: Request) -> list[str]:
    """A mount's challenge also asks for pull on the source, so the token covers both."""
    source = _mount_source(request)
    if request.query_params.get("mount") and source is not None:
        return [scope_for(source, Action.PULL)]
    return []


def _content_range(request: Request) -> tuple[int, int] | None:
    """(start, length) of a `Content-Range` header; None without one."""
    header = request.headers.get("content-range")
    if not header:
        return None
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
    return first, last - first + 1


# Allowed to push means the registry exists and is available.
@requires(Action.PUSH, extra_scopes=_mount_scopes)
async def start_upload(request: Request, access: Access) -> Response:
    repo = access.repo
    parts = services(request)
    mount = request.query_params.get("mount")
    if mount:
        digest = Digest.parse(mount)
        source = _mount_source(request)  # None: automatic, unless `from` is not a name
        unusable_source = source is None and bool(request.query_params.get("from"))
        if not unusable_source and await parts.mounts.mount(access.caller, repo, digest, source):
            return _created(repo, digest)

    digest_param = request.query_params.get("digest")
    if digest_param:  # monolithic: the whole blob in this one request
        digest = Digest.parse(digest_param)
        await parts.blob_pushes.push_whole(repo, digest, request.stream())
        return _created(repo, digest)

    session = await parts.uploads.start(repo.full)
    return _accepted(request, session, 0)


async def _session(request: Request, access: Access) -> UploadSession:
    return await services(request).uploads.get(request.path_params["upload_id"], access.repo.full)


@requires(Action.PUSH)
async def upload_status(request: Request, access: Access) -> Response:
    session = await _session(request, access)
    return _accepted(request, session, session.offset, status=204)


@requires(Action.PUSH)
async def upload_chunk(request: Request, access: Access) -> Response:
    session = await _session(request, access)
    start, length = _content_range(request) or (None, None)
    size = await services(request).uploads.append(
        session, request.stream(), start=start, length=length
    )
    return _accepted(request, session, size)


@requires(Action.PUSH)
async def finish_upload(request: Request, access: Access) -> Response:
    session = await _session(request, access)
    digest = _required_digest(request)
    parts = services(request)
    content_range = _content_range(request)
    if content_range is not None:  # a last chunk must start where the upload ends, as a PATCH
        held = session.offset
        if content_range[0] != held:
            raise RangeInvalid(
                f"the last chunk starts at byte {content_range[0]} but the upload holds {held} "
                f"bytes; send it from byte {held}",
                detail={"expected_start": held, "received_start": content_range[0]},
                repository=session.repository,
                upload_id=session.id,
                received=held,
            )
    body = request.stream() if has_body(request) else None
    await parts.blob_pushes.finish(access.repo, session, digest, body)
    return _created(access.repo, digest)


@requires(Action.PUSH)
async def cancel_upload(request: Request, access: Access) -> Response:
    session = await _session(request, access)
    await services(request).uploads.cancel(session)
    return Response(status_code=204)
