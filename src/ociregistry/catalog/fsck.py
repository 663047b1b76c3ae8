"""`ociregistry fsck`: the one place the store is walked, to compare it with the database.

Garbage collection never lists the store (its candidates come from the database), so what a
crash, a hand-edited bucket or a failing disk leaves behind is found here, by an explicit,
read-only check: blobs the database knows that the store lacks (a pull of them fails), objects
no row knows (space nobody will reclaim; those already recorded as garbage candidates are
counted apart, the collector will take them), and, with `verify`, blobs whose bytes no longer
match their digest (each hashed as a stream, never held whole). The check changes nothing and
runs beside a serving registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.driver import FileInfo, StorageDriver
from ociregistry.blobstore.hashing import OneShotHash
from ociregistry.blobstore.store import blob_path, digest_of_path
from ociregistry.catalog.candidates import BlobCandidate
from ociregistry.db.database import Database
from ociregistry.db.models import ImageBlob, ManifestReference

Progress = Callable[[FileInfo], None]
"""Called once per object walked (after its check), for a progress bar."""


@dataclass
class Problem:
    """One thing wrong: `kind` is `missing`, `unknown`, `size` or `digest`."""

    kind: str
    path: str
    digest: str | None
    detail: str


@dataclass
class FsckReport:
    objects: int = 0  # objects walked under blobs/
    bytes: int = 0
    known: int = 0  # blobs the database knows
    verified: int = 0  # blobs hashed (with verify)
    awaiting_collection: int = 0  # unknown objects that are garbage candidates
    problems: list[Problem] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for problem in self.problems if problem.kind == kind)


async def known_blobs(db: Database) -> dict[str, int]:
    """Every digest the database knows (linked into an image or referenced by a manifest),
    with its size: as linked (measured when stored), else as a manifest claims it."""
    linked = select(ImageBlob.digest, func.max(ImageBlob.size)).group_by(ImageBlob.digest)
    referenced = select(ManifestReference.digest, func.max(ManifestReference.size)).group_by(
        ManifestReference.digest
    )
    async with db.read() as conn:
        known = {digest: int(size) for digest, size in (await conn.execute(referenced)).all()}
        known.update((digest, int(size)) for digest, size in (await conn.execute(linked)).all())
    return known


async def candidate_digests(db: Database) -> set[str]:
    async with db.read() as conn:
        return set((await conn.scalars(select(BlobCandidate.digest))).all())


async def digest_matches(driver: StorageDriver, path: str, digest: Digest) -> bool:
    """Hash the object at `path` as a stream (off the event loop) and compare."""
    hasher = OneShotHash(digest.algorithm)
    async for chunk in driver.reader(path):
        await asyncio.to_thread(hasher.update, chunk)
    return hasher.digest() == digest


async def check_store(
    db: Database, driver: StorageDriver, *, verify: bool = False, progress: Progress | None = None
) -> FsckReport:
    """Walk `blobs/` once and compare it with the database."""
    known = await known_blobs(db)
    candidates = await candidate_digests(db)
    report = FsckReport(known=len(known))
    seen: set[str] = set()
    async for info in driver.walk("blobs"):
        report.objects += 1
        report.bytes += info.size
        _check_object(report, info, known, candidates, seen)
        digest = digest_of_path(info.path)
        if verify and digest is not None and str(digest) in known:
            report.verified += 1
            if not await digest_matches(driver, info.path, digest):
                report.problems.append(
                    Problem("digest", info.path, str(digest), "the bytes do not hash to it")
                )
        if progress is not None:
            progress(info)
    for digest in sorted(known.keys() - seen):
        path = blob_path(Digest.parse(digest))
        report.problems.append(
            Problem("missing", path, digest, "the database knows it, the store lacks it")
        )
    return report


def _check_object(
    report: FsckReport,
    info: FileInfo,
    known: dict[str, int],
    candidates: set[str],
    seen: set[str],
) -> None:
    digest = digest_of_path(info.path)
    if digest is None:
        report.problems.append(Problem("unknown", info.path, None, "not a blob's path"))
        return
    name = str(digest)
    seen.add(name)
    if name not in known:
        if name in candidates:
            report.awaiting_collection += 1
        else:
            report.problems.append(Problem("unknown", info.path, name, "no row knows it"))
    elif known[name] != info.size:
        report.problems.append(
            Problem("size", info.path, name, f"{info.size} bytes, the database says {known[name]}")
        )


def as_json(report: FsckReport) -> dict[str, Any]:
    return {
        "objects": report.objects,
        "bytes": report.bytes,
        "known": report.known,
        "verified": report.verified,
        "awaiting_collection": report.awaiting_collection,
        "problems": [problem.__dict__ for problem in report.problems],
    }
