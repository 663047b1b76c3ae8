"""Cross-repository blob mounts: the one home of the workflow `POST …/blobs/uploads/?mount=`.

A mount links a blob the registry already stores into another repository, so a client need
not upload it again. It is only ever an optimisation: whenever the caller may not read the
blob where it lives (or it lives nowhere), nothing is mounted and nothing is revealed, and the
client simply uploads (202). Who may read what is the access policy's answer alone.

- With `from`: the blob must be in that repository and the caller must be allowed to pull
  there. A token that lacks the source's pull scope, held by a user who could pull it, is asked
  to come back with one naming both repositories (401, as Distribution's token auth does).
- Without `from` (automatic cross-mount): any repository holding the blob that the caller may
  pull will do.
"""

from __future__ import annotations

from ociregistry.auth.policy import AccessPolicy, Action, Principal, scope_for
from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.store import BlobStore
from ociregistry.catalog.images import Images
from ociregistry.errors import AuthenticationRequired, RegistryError
from ociregistry.names import RepositoryName


class Mounts:
    def __init__(self, images: Images, blobs: BlobStore, policy: AccessPolicy) -> None:
        self.images = images
        self.blobs = blobs
        self.policy = policy

    async def mount(
        self,
        caller: Principal,
        target: RepositoryName,
        digest: Digest,
        source: RepositoryName | None,
    ) -> bool:
        """Link `digest` into `target` (which the caller may push to) from `source`, or from
        any readable repository when `source` is None; False when nothing was mounted."""
        if source is None:
            candidates = await self.images.repositories_holding(digest, near=target)
            source = await self.policy.pullable_source(caller, candidates)
            if source is None:
                return False
        else:
            try:
                await self.policy.require(caller, source, Action.PULL)
            except AuthenticationRequired as error:
                raise AuthenticationRequired(
                    f"{error.message}: a mount needs pull on {source.full} in the same token",
                    f"{scope_for(target, Action.PUSH)} {scope_for(source, Action.PULL)}",
                    error="insufficient_scope",
                ) from None
            except RegistryError:  # cannot see it: an ordinary upload, and nothing said
                return False
        size = await self.images.blob_size(source, digest)
        if size is None or await self.blobs.size(digest) is None:
            return False
        await self.images.link_blob(target, digest, size)
        return True
