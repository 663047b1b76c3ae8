"""Blobs that may have become garbage, recorded when it happens, so that garbage collection
never has to walk the store (on S3, listing a bucket of millions of objects takes hours and is
billed per thousand keys).

Every deletion that can leave a blob unreferenced (a manifest, an image, a registry's images,
an unlinked blob, the untagged cleanup) records the digests it dropped here, with the time, in
the same transaction. An upload that takes chunks records its blob too, in its claim, *before*
the bytes are written: if the process dies between writing the blob and linking it, the blob is
still findable. A fresh session finished in one request (a small blob, docker's usual push)
writes its link in the transaction that drops the session instead; a link is a reference, so it
records a candidate only when that drop loses (`content/blobpushes.py`). The
collector takes candidates older than the grace window, checks again that nothing references
them, deletes them from the store in batches and drops their rows; a candidate that is
referenced by then is simply dropped. Recording again refreshes the time, so a blob pushed
again restarts its grace window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, bindparam, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Select

from ociregistry.db.database import execute_on_driver
from ociregistry.db.models import (
    DIGEST_LENGTH,
    Base,
    ImageBlob,
    ManifestReference,
    utcnow,
)


class BlobCandidate(Base):
    """A blob that some deletion (or an upload) may have left unreferenced, and since when."""

    __tablename__ = "blob_candidates"

    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: not known yet
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def _insert(dialect: str) -> Any:
    table = BlobCandidate.__table__
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _upsert(statement: Any) -> Any:
    """Recording again restarts the grace window; a known size is kept."""
    return statement.on_conflict_do_update(
        index_elements=["digest"],
        set_={
            "since": statement.excluded.since,
            "size": func.coalesce(statement.excluded.size, BlobCandidate.size),
        },
    )


def _from_select(dialect: str, rows: Select[Any]) -> Any:
    # `WHERE` in `rows` keeps SQLite from reading ON CONFLICT as a join's ON.
    return _upsert(_insert(dialect).from_select(["digest", "size", "since"], rows))


def of_image_blobs(dialect: str, *where: Any) -> Any:
    """The statement recording the `image_blobs` rows matching `where` (an image's blobs,
    and its manifests, which are linked there too): run it before deleting them."""
    rows = (
        select(ImageBlob.digest, func.max(ImageBlob.size), _now())
        .where(*where)
        .group_by(ImageBlob.digest)
        .order_by(ImageBlob.digest)  # rows are locked in digest order (db/database.py)
    )
    return _from_select(dialect, rows)


def of_images(dialect: str, image_ids: Any) -> Any:
    """The statement recording every blob the images `image_ids` (a list or a subquery)
    hold: run it before deleting them."""
    return of_image_blobs(dialect, ImageBlob.image_id.in_(image_ids))


def of_manifests(dialect: str, manifest_ids: Any) -> Any:
    """The statement recording what the manifests `manifest_ids` point at (run it before
    deleting them); the manifests' own blobs are `image_blobs` rows (`of_image_blobs`)."""
    rows = (
        select(ManifestReference.digest, func.max(ManifestReference.size), _now())
        .where(ManifestReference.manifest_id.in_(manifest_ids))
        .group_by(ManifestReference.digest)
        .order_by(ManifestReference.digest)
    )
    return _from_select(dialect, rows)


def _now() -> Any:
    return literal(utcnow(), DateTime(timezone=True))


def of_digests(dialect: str) -> Any:
    """The statement recording digests given as parameters: `[{"digest", "size", "since"}]`."""
    return _upsert(_insert(dialect))


# One digest of a size not known yet, per dialect, as each blob upload records its blob: a
# module-level statement, compiled once and run on the driver (`execute_on_driver`).
_WRITTEN = {
    dialect: _upsert(
        _insert(dialect).values(
            digest=bindparam("candidate"), size=bindparam("known_size"), since=bindparam("at")
        )
    )
    for dialect in ("sqlite", "postgresql")
}


def record_written_sync(conn: Connection, digest: str) -> None:
    """Record one blob about to be written (its size not known yet) as a candidate."""
    statement = _WRITTEN[conn.dialect.name]
    execute_on_driver(conn, statement, {"candidate": digest, "known_size": None, "at": utcnow()})


def rows(digests: Iterable[tuple[str, int | None]], now: datetime | None = None) -> list[dict]:
    """Parameters for `of_digests`, in digest order (the order their rows are locked in)."""
    moment = now or utcnow()
    return [
        {"digest": d, "size": s, "since": moment}
        for d, s in sorted(digests, key=lambda pair: pair[0])
    ]


async def record(conn: AsyncConnection, digests: Iterable[tuple[str, int | None]]) -> None:
    """Record `(digest, size or None)` pairs as candidates on an open write connection."""
    values = rows(digests)
    if values:
        await conn.execute(of_digests(conn.dialect.name), values)


def record_sync(conn: Connection, digests: Iterable[tuple[str, int | None]]) -> None:
    values = rows(digests)
    if values:
        conn.execute(of_digests(conn.dialect.name), values)
