"""`/v2/<name>/blobs/<digest>`: fetch (whole or a byte range), check and delete blobs."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from ociregistry.auth.policy import Action
from ociregistry.blobstore.digest import Digest
from ociregistry.errors import BlobUnknown, RangeNotSatisfiable
from ociregistry.names import RepositoryName
from ociregistry.v2.common import Access, requires, services

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, length) a `Range` header asks for; None for the whole blob.

    Multiple ranges are not supported and get the whole blob, as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = min(int(last), size)
        start = size - length
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        length = end - start + 1
    if start >= size or length <= 0:
        raise RangeNotSatisfiable(
            f"range {header} is outside the blob's {size} bytes",
            size=size,
        )
    return start, length


async def _locate(request: Request, repo: RepositoryName) -> tuple[Digest, int]:
    digest = Digest.parse(request.path_params["digest"])
    parts = services(request)
    size = await parts.images.blob_size(repo, digest)
    if size is None:
        await parts.images.require_image(repo)
        raise BlobUnknown(f"blob {digest} is not in {repo.full}", detail={"digest": str(digest)})
    return digest, size


@requires(Action.PULL)
async def head_blob(request: Request, access: Access) -> Response:
    digest, size = await _locate(request, access.repo)
    return Response(
        headers={
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(digest),
            "Accept-Ranges": "bytes",
            "ETag": f'"{digest}"',
        }
    )


@requires(Action.PULL)
async def get_blob(request: Request, access: Access) -> Response:
    digest, size = await _locate(request, access.repo)
    blobs = services(request).blobs
    redirect = await blobs.redirect_url(digest)
    if redirect:
        # The digest rides on the redirect: the object store's answer cannot carry it.
        return RedirectResponse(
            redirect, status_code=307, headers={"Docker-Content-Digest": str(digest)}
        )
    if await blobs.size(digest) is None:
        raise BlobUnknown(f"blob {digest} is missing from storage", detail={"digest": str(digest)})
    headers = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
    }
    byte_range = parse_range(request.headers.get("range"), size)
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(blobs.read(digest), headers=headers)
    start, length = byte_range
    headers["Content-Length"] = str(length)
    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return StreamingResponse(blobs.read(digest, start, length), status_code=206, headers=headers)


@requires(Action.DELETE)
async def delete_blob(request: Request, access: Access) -> Response:
    repo = access.repo
    digest = Digest.parse(request.path_params["digest"])
    parts = services(request)
    if not await parts.images.unlink_blob(repo, digest):
        await parts.images.require_image(repo)
        raise BlobUnknown(f"blob {digest} is not in {repo.full}", detail={"digest": str(digest)})
    return Response(status_code=202, headers={"Docker-Content-Digest": str(digest)})
