"""`ociregistry storage copy`: move a filesystem data folder's blobs into another store (an S3
bucket), so an installation can leave its disk.

Resumable: an object already at the destination with the right size is skipped, so a copy
that was interrupted (or one run while the registry still served, to catch up later) is simply
run again. Verified: each blob is hashed as it streams to the destination, and a blob whose
bytes do not match its digest is not made visible there (`put_stream` fails, nothing appears);
it is reported, and the copy goes on with the others. Only `blobs/` is copied: uploads in
progress are not (a client whose upload was cut off by the switch starts it again).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.driver import FileInfo, StorageDriver, StorageError
from ociregistry.blobstore.hashing import OneShotHash
from ociregistry.blobstore.store import digest_of_path

Progress = Callable[[FileInfo, str], None]
"""Called once per blob with what was done: `copied`, `skipped` or `failed`."""


class DigestMismatch(StorageError):
    """A source blob whose bytes do not hash to its digest: it is not copied."""


@dataclass
class CopyReport:
    copied: int = 0
    bytes_copied: int = 0
    skipped: int = 0  # already at the destination with the right size
    failed: list[str] = field(default_factory=list)  # "path: why"
    ignored: list[str] = field(default_factory=list)  # objects that are no blob of ours


async def _verified(chunks: AsyncIterable[bytes], digest: Digest) -> AsyncIterator[bytes]:
    """Pass `chunks` through, hashing them; fail at the end (before the destination commits
    the object) when they do not hash to `digest`."""
    hasher = OneShotHash(digest.algorithm)
    async for chunk in chunks:
        await asyncio.to_thread(hasher.update, chunk)
        yield chunk
    if hasher.digest() != digest:
        raise DigestMismatch(f"its bytes hash to {hasher.digest()}, not {digest}")


async def source_blobs(source: StorageDriver) -> list[FileInfo]:
    """Every object under the source's `blobs/`, in path order (a filesystem walk: cheap)."""
    return sorted([info async for info in source.walk("blobs")], key=lambda info: info.path)


async def copy_blobs(
    source: StorageDriver,
    destination: StorageDriver,
    blobs: list[FileInfo],
    *,
    progress: Progress | None = None,
) -> CopyReport:
    report = CopyReport()
    for info in blobs:
        digest = digest_of_path(info.path)
        if digest is None:
            report.ignored.append(info.path)
            continue
        there = await destination.stat(info.path)
        if there is not None and there.size == info.size:
            report.skipped += 1
            outcome = "skipped"
        else:
            try:
                await destination.put_stream(info.path, _verified(source.reader(info.path), digest))
            except DigestMismatch as error:
                report.failed.append(f"{info.path}: {error}")
                outcome = "failed"
            else:
                report.copied += 1
                report.bytes_copied += info.size
                outcome = "copied"
        if progress is not None:
            progress(info, outcome)
    return report
