"""Finishing a blob upload and linking the blob into the repository: one home for both steps.

The blob becomes visible in storage first (durable), then the repository's link is written, so
a 201 never names a blob the store lacks. The blob is recorded as a garbage candidate
(`catalog/candidates.py`), so a blob written but never linked is still collected: before the
bytes when a session takes chunks (in its claim). When the request carries the whole blob of a
fresh session, the link is written in the transaction that drops the session, and a link is
a reference the collector checks: no candidate is needed beside it, and one is recorded only
when that drop loses (another request wrote to the session), in the same transaction. A
process killed between the blob's rename and that commit leaves an unlinked blob for
`ociregistry fsck`, as before.
The `/v2` handlers call this; it knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.uploads import Uploads, UploadSession
from ociregistry.catalog.images import Images, link_blob_in, note_blob_written_in
from ociregistry.names import RepositoryName


class BlobPushes:
    def __init__(self, uploads: Uploads, images: Images) -> None:
        self.uploads = uploads
        self.images = images

    async def finish(
        self,
        repo: RepositoryName,
        session: UploadSession,
        digest: Digest,
        body: AsyncIterable[bytes] | None,
    ) -> int:
        """Take the last chunk of a session, check the digest, store and link the blob.

        The garbage candidate is recorded in the session's claim and the link written with its
        drop; a fresh session finished whole links in its drop, and records the candidate
        only if the drop loses (see `Uploads._finish_whole`)."""
        return await self.uploads.finish(
            session,
            digest,
            body,
            before=lambda conn: note_blob_written_in(conn, digest),
            after=lambda conn, size: link_blob_in(conn, repo, digest, size),
        )

    async def push_whole(
        self, repo: RepositoryName, digest: Digest, body: AsyncIterable[bytes]
    ) -> int:
        """A monolithic upload (`POST ?digest=`): store and link the blob."""
        await self.images.note_blob_written(digest)
        size = await self.uploads.put_whole(digest, body)
        await self.images.link_blob(repo, digest, size)
        return size
