"""Pushing, fetching and deleting manifests: validation, bytes in the blob store, rows in the
catalog, in the order that keeps every acknowledged push durable."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ociregistry.blobstore.digest import DEFAULT_ALGORITHM, Digest, is_digest
from ociregistry.blobstore.store import BlobStore
from ociregistry.catalog.images import Images, ManifestRecord
from ociregistry.errors import DigestInvalid, ManifestUnknown, NameUnknown, RegistryError
from ociregistry.manifests.parse import ParsedManifest, parse_manifest
from ociregistry.names import RepositoryName, is_tag

CACHE_BYTES = 64 << 20


class TagInvalid(RegistryError):
    code, status = "TAG_INVALID", 400


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest reference from a URL: a tag or a digest, never both."""

    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        if is_digest(text):
            return cls(digest=Digest.parse(text))
        if not is_tag(text):
            raise TagInvalid(
                f"invalid tag {text[:200]!r}: use up to 128 characters of [A-Za-z0-9_.-], "
                "not starting with '.' or '-'",
                detail={"tag": text[:200]},
            )
        return cls(tag=text)


@dataclass(frozen=True, slots=True)
class PushedManifest:
    digest: Digest
    subject: Digest | None


class ManifestCache:
    """Manifest bytes by digest. Content-addressed bytes never change, so this cache never
    needs invalidating; it only saves a file read on the hottest path."""

    def __init__(self, capacity_bytes: int = CACHE_BYTES) -> None:
        self.capacity = capacity_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, digest: str) -> bytes | None:
        body = self._entries.get(digest)
        if body is not None:
            self._entries.move_to_end(digest)
        return body

    def put(self, digest: str, body: bytes) -> None:
        if digest in self._entries or len(body) > self.capacity // 8:
            return
        self._entries[digest] = body
        self._bytes += len(body)
        while self._bytes > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)


class Manifests:
    def __init__(self, images: Images, blobs: BlobStore) -> None:
        self.images = images
        self.blobs = blobs
        self.cache = ManifestCache()

    async def get(self, repo: RepositoryName, reference: Reference) -> tuple[ManifestRecord, bytes]:
        record = await self.images.find_manifest(repo, tag=reference.tag, digest=reference.digest)
        if record is None:
            if await self.images.image_id(repo) is None:
                raise NameUnknown(
                    f"repository {repo.full} is not known", detail={"name": repo.full}
                )
            shown = reference.tag or str(reference.digest)
            raise ManifestUnknown(
                f"manifest {shown} is not in {repo.full}", detail={"reference": shown}
            )
        body = self.cache.get(record.digest)
        if body is None:
            body = await self.blobs.get(Digest.parse(record.digest))
            self.cache.put(record.digest, body)
        return record, body

    async def put(
        self, repo: RepositoryName, reference: Reference, body: bytes, content_type: str | None
    ) -> PushedManifest:
        algorithm = reference.digest.algorithm if reference.digest else DEFAULT_ALGORITHM
        digest = Digest.of(body, algorithm)
        if reference.digest is not None and digest != reference.digest:
            raise DigestInvalid(
                f"the manifest's bytes have digest {digest}, not {reference.digest}",
                detail={"expected": str(reference.digest), "actual": str(digest)},
            )
        parsed: ParsedManifest = parse_manifest(body, content_type)
        await self.images.missing_references(repo, parsed)
        await self.blobs.put(digest, body)  # durable before any row points at it
        await self.images.record_manifest(repo, digest, len(body), parsed, reference.tag)
        self.cache.put(str(digest), body)
        return PushedManifest(digest, parsed.subject.digest if parsed.subject else None)

    async def delete(self, repo: RepositoryName, reference: Reference) -> None:
        if reference.digest is not None:
            deleted = await self.images.delete_manifest(repo, reference.digest)
        else:
            assert reference.tag is not None
            deleted = await self.images.delete_tag(repo, reference.tag)
        if not deleted:
            await self.images.require_image(repo)
            shown = reference.tag or str(reference.digest)
            raise ManifestUnknown(
                f"manifest {shown} is not in {repo.full}", detail={"reference": shown}
            )
