"""Pushing, fetching and deleting manifests: validation, bytes in the blob store, rows in the
catalog, in the order that keeps every acknowledged push durable."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ociregistry.blobstore.digest import DEFAULT_ALGORITHM, HEX_LENGTHS, Digest, is_digest
from ociregistry.blobstore.store import BlobStore
from ociregistry.catalog.images import Images, ManifestRecord
from ociregistry.errors import (
    DigestInvalid,
    ManifestUnknown,
    NameUnknown,
    TagInvalid,
)
from ociregistry.manifests.parse import ParsedManifest, parse_manifest
from ociregistry.names import RepositoryName, is_tag

# Per worker process: thousands of manifests (a few KiB each), within the worker's memory
# budget (issue 15: under 150 MiB, with eight workers on a large machine).
CACHE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest reference from a URL: a tag or a digest, never both."""

    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        if is_digest(text):
            return cls(digest=Digest.parse(text))
        return cls(tag=cls.parse_tag(text))

    @staticmethod
    def parse_tag(text: str) -> str:
        """A tag, or TAG_INVALID saying what a tag may hold."""
        if not is_tag(text):
            raise TagInvalid(
                f"invalid tag {text[:200]!r}: use up to 128 characters of [A-Za-z0-9_.-], "
                "not starting with '.' or '-'",
                detail={"tag": text[:200]},
            )
        return text


@dataclass(frozen=True, slots=True)
class PushedManifest:
    digest: Digest
    subject: Digest | None
    tags: list[str] = field(default_factory=list)  # set besides the reference's own tag


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
        self,
        repo: RepositoryName,
        reference: Reference,
        body: bytes,
        content_type: str | None,
        tags: Sequence[str] = (),
    ) -> PushedManifest:
        """Store a manifest and point its tags at it: the reference's tag, if it is one, and
        `tags` (`?tag=` of a push by digest), all in one transaction or none."""
        for tag in tags:
            Reference.parse_tag(tag)  # one bad tag fails the push before anything is written
        if reference.digest is not None:
            digest = Digest.of(body, reference.digest.algorithm)
            if digest != reference.digest:
                raise DigestInvalid(
                    f"the manifest's bytes have digest {digest}, not {reference.digest}",
                    detail={"expected": str(reference.digest), "actual": str(digest)},
                )
            parsed: ParsedManifest = parse_manifest(body, content_type)
            await self.images.missing_references(repo, parsed)
        else:
            parsed = parse_manifest(body, content_type)
            # The digest a manifest pushed by tag is known by: sha256, unless `repo` already
            # holds these very bytes under another algorithm (pushed by a sha512 digest
            # first), which the client then expects to be answered (the conformance suite's
            # sha512 data). Looked up in the same read as the references.
            others = [Digest.of(body, a) for a in HEX_LENGTHS if a != DEFAULT_ALGORITHM]
            held = await self.images.missing_references(repo, parsed, also=others)
            digest = next((d for d in others if d in held), Digest.of(body, DEFAULT_ALGORITHM))
        await self.blobs.put(digest, body)  # durable before any row points at it
        await self.images.record_manifest(
            repo, digest, len(body), parsed, reference.tag, more_tags=tags
        )
        self.cache.put(str(digest), body)
        return PushedManifest(digest, parsed.subject.digest if parsed.subject else None, [*tags])

    async def delete(
        self, repo: RepositoryName, reference: Reference, *, immutable_too: bool = False
    ) -> None:
        """Delete a tag, or a manifest with its tags; `immutable_too` when the caller may
        delete immutable tags (the access policy's `may_delete_immutable`)."""
        if reference.digest is not None:
            deleted = await self.images.delete_manifest(
                repo, reference.digest, immutable_too=immutable_too
            )
        else:
            assert reference.tag is not None
            deleted = await self.images.delete_tag(repo, reference.tag, immutable_too=immutable_too)
        if not deleted:
            await self.images.require_image(repo)
            shown = reference.tag or str(reference.digest)
            raise ManifestUnknown(
                f"manifest {shown} is not in {repo.full}", detail={"reference": shown}
            )
