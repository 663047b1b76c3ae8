"""Row locks taken at the start of a write transaction, in the one order every write follows
on PostgreSQL (see "Lock order" in `database.py`): registries, then images, each set by
ascending id, then blob-level usage rows by ascending digest.

Each function locks what its transaction will change *before* it changes anything, so that a
transaction never waits for a row of a level above one it already holds: that is what makes a
cycle of waits, and so a deadlock, impossible between our own transactions. The locks are
`FOR NO KEY UPDATE`, which an UPDATE of the row takes anyway and which leaves foreign-key
checks (`FOR KEY SHARE`: a tag or a blob link inserted under the image) free to proceed; a row
about to be deleted is locked `FOR UPDATE` instead, as its DELETE would.

On SQLite every function does nothing: its writers take the database's one write lock in
turns (`BEGIN IMMEDIATE`), and rows have no locks of their own.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ociregistry.db.models import BlobUsage, Image, Registry


def _locking(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def registries(conn: Connection, registry_ids: Iterable[int], *, delete: bool = False) -> None:
    """Lock registry rows, in ascending id order: before anything of their images."""
    ids = sorted(set(registry_ids))
    if ids and _locking(conn):
        query = select(Registry.id).where(Registry.id.in_(ids)).order_by(Registry.id)
        conn.execute(query.with_for_update(key_share=not delete)).all()


def images(conn: Connection, image_ids: Iterable[int], *, delete: bool = False) -> set[int]:
    """Lock image rows, in ascending id order: before their manifests, tags, blob links, usage
    and pull events, and after their registries (when those are changed too). Returns the
    ids that still exist once locked (one deleted meanwhile is not there any more)."""
    ids = sorted(set(image_ids))
    if ids and _locking(conn):
        query = select(Image.id).where(Image.id.in_(ids)).order_by(Image.id)
        return set(conn.scalars(query.with_for_update(key_share=not delete)).all())
    return set(ids)


def image_kept(conn: Connection, image_id: int) -> bool:
    """Keep an image from being deleted until the commit (`FOR KEY SHARE`, what a row
    inserted under it takes anyway, and which waits only for a deletion of the image under
    way); False when it is gone (deleted meanwhile). For a transaction that adds under the
    image without changing it: a blob link."""
    if not _locking(conn):
        return True
    query = select(Image.id).where(Image.id == image_id).with_for_update(read=True, key_share=True)
    return conn.scalar(query) is not None


def images_with_registries(
    conn: Connection, image_ids: Iterable[int], *, delete: bool = False
) -> None:
    """Lock the registries of these images, then the images: for a transaction that changes
    the registries' usage as well (a manifest or an image deleted)."""
    ids = sorted(set(image_ids))
    if ids and _locking(conn):
        owners = select(Image.registry_id).where(Image.id.in_(ids)).distinct()
        registries(conn, conn.scalars(owners).all())
        images(conn, ids, delete=delete)


def blob_usage(conn: Connection, digests: Iterable[str]) -> None:
    """Lock the platform-level usage rows of these blobs, in ascending digest order: for a
    transaction that changes them in several passes (one per image or manifest), which would
    otherwise take them in no single order."""
    wanted = sorted(set(digests))
    if wanted and _locking(conn):
        query = select(BlobUsage.digest).where(BlobUsage.digest.in_(wanted))
        conn.execute(query.order_by(BlobUsage.digest).with_for_update(key_share=True)).all()
