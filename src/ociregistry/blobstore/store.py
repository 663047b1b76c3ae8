"""Content-addressed blobs on top of a storage driver.

Layout (relative to the driver's root)::

    blobs/<algorithm>/<first two hex digits>/<hex>    one file per digest, whoever uses it
    uploads/<uuid>/...                                an upload's staged bytes (the driver's)

A blob path is built only from a parsed `Digest`, an upload path only from a parsed UUID.
One copy of each digest exists however many repositories link to it; which repositories may
see a blob is metadata, kept in the catalog.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ociregistry.blobstore.digest import HEX_LENGTHS, Digest
from ociregistry.blobstore.driver import StorageDriver
from ociregistry.errors import RegistryError


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def digest_of_path(path: str) -> Digest | None:
    """The digest whose blob lives at `path`, or None when `path` is not a blob's path (a
    walk of `blobs` meeting something we never wrote)."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "blobs" or parts[1] not in HEX_LENGTHS:
        return None
    _, algorithm, prefix, name = parts
    if len(name) != HEX_LENGTHS[algorithm] or not name.startswith(prefix):
        return None
    try:
        digest = Digest.parse(f"{algorithm}:{name}")
    except RegistryError:
        return None
    return digest if blob_path(digest) == path else None


class BlobStore:
    """Read, write and delete blobs by digest."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def size(self, digest: Digest) -> int | None:
        """The blob's size, or None when the store does not hold it."""
        info = await self.driver.stat(blob_path(digest))
        return None if info is None else info.size

    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return self.driver.reader(blob_path(digest), offset, length)

    async def get(self, digest: Digest) -> bytes:
        """A small blob whole: manifests, configs."""
        return await self.driver.get_content(blob_path(digest))

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store a small blob whose digest the caller has checked; durable when this returns."""
        await self.driver.put_content(blob_path(digest), data)

    async def redirect_url(self, digest: Digest) -> str | None:
        return await self.driver.redirect_url(blob_path(digest))
