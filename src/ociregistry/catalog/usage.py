"""Exact storage usage, kept current with every change (issue 14).

A manifest *references* its own bytes and its config and layers (foreign layers, which the
registry does not hold, excepted); an index's children are manifests of their own. Three
tables count those references at three levels, so every figure is a sum over one index:

- `image_usage` (image, blob): how many manifests of the image reference the blob; an
  image's `size_bytes` is the sum of the sizes of its rows.
- `registry_usage` (registry, blob): in how many images of the registry the blob is
  referenced; a registry's `size_bytes` is the sum of its rows, each blob once.
- `blob_usage` (blob: its id and digest): in how many registries the blob is referenced. A
  row exists from the moment a blob is first linked into any image (an upload, a mount, a
  manifest), so rows with no reference are exactly the bytes awaiting garbage collection;
  rows referenced by one registry only are that registry's `unique_bytes`.

On SQLite a manifest is counted after its PUT, with every manifest pushed since, and whatever
reads a figure or takes references away counts what is pending first (catalog/usage_deferred.py,
migration 0022); PostgreSQL counts in the PUT. Either way, each figure read is exact.

A blob's id is given in the order blobs enter the store, so the rows a push adds at the two
lower levels, keyed by it, go to the end of the image's and the registry's rows: a page per
level, where rows keyed by digest took a page per blob and level (migration 0018; a page
written costs a transaction about 10 µs on SQLite, its WAL frame, fsync and checkpoint).

Adding a manifest adds one reference per blob at the image level; only a blob new to the image
goes up a level, and only one new to the registry reaches the platform. Removing works the same
way down. On SQLite adding is one statement, the image level, which triggers carry up (migration
0018), then the registries' sizes grown by what reached them, each once (migration 0024); on
PostgreSQL one statement of data-modifying CTEs. The registry's `size_bytes` grows in the
database, which is also where a quota is enforced: two pushes racing on different workers or
instances serialise on that row (on SQLite, on the one write lock), and the second sees the
first's bytes (SPEC: a 403 is decided in the database, not from a figure read earlier). Rows are
touched in digest order, so transactions on PostgreSQL lock them in one order and never deadlock
on each other. A transaction that removes several manifests or images changes `blob_usage` once
per manifest or image, so in several passes: it locks every row it may change first, in digest
order (`lock_for_manifests`, `lock_for_images`), right after its registry and image locks (the
lock order of db/database.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Table, bindparam, case, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ociregistry.catalog.usage_deferred import MOVE_MARK, count_pending, grow_sizes
from ociregistry.db import locks
from ociregistry.db.models import (
    BlobUsage,
    Image,
    ImageBlob,
    ImageUsage,
    Manifest,
    ManifestReference,
    Registry,
    RegistryUsage,
)
from ociregistry.errors import ManifestBlobUnknown, NameInvalid, QuotaExceeded
from ociregistry.manifests.parse import ParsedManifest

Entries = Mapping[str, int]  # digest -> size

_IMAGE = ImageUsage.__table__
_REGISTRY = RegistryUsage.__table__
_BLOB = BlobUsage.__table__


MAX_QUOTA_BYTES = 2**63 - 1


def check_quota(value: int) -> int:
    """A quota in bytes: 0 (none) up to what a BIGINT holds (a bad one is INVALID_ARGUMENT in
    the API, as a bad remark is)."""
    if not 0 <= value <= MAX_QUOTA_BYTES:
        raise NameInvalid(
            f"quota_bytes must be 0 (no quota) or a positive number of bytes, not {value}",
            detail={"field": "quota_bytes"},
        )
    return value


def manifest_entries(digest: str, size: int, parsed: ParsedManifest) -> dict[str, int]:
    """The blobs one manifest references: itself, its config and its layers, each once."""
    entries = {digest: size}
    for descriptor in parsed.blobs:
        if not descriptor.foreign:
            entries.setdefault(str(descriptor.digest), descriptor.size)
    return entries


def human_bytes(count: int) -> str:
    """`1.5 MiB`: how a quota message reads."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover


_KEYS = {"image_usage": "image_id", "registry_usage": "registry_id", "blob_usage": None}

# Statements are built once per database kind (see catalog/images.py): building and compiling
# one costs more than running it, and these run on every manifest push.

# On SQLite a manifest's references are one statement on the transaction's own sqlite3
# connection: the image level for all its blobs, counted from the links, so a blob the
# manifest names but the image does not hold (unlinked since the check before the
# transaction) adds no row, one fewer than it was given (the statement's count of changed
# rows, not a RETURNING, which SQLite runs through a temporary table); the caller refuses it.
# The references are so checked under the transaction's lock at no cost of a statement of
# their own. Triggers (migration 0018) carry each blob new to the image up to the registry and
# the platform, and the sizes of the image and the registry with it, inside SQLite: as a
# statement each through Python they cost ten round trips per PUT for a few microseconds of
# SQLite's work each; and, since migration 0020, without a temporary table per blob. Since
# migration 0024 the registry's size grows once, after the statement (`grow_sizes`), where the
# quota is checked on it (_SIZE_GROWN).
SQLITE_TRIGGERS = ("usage_blob_stored", "usage_image_added", "usage_registry_added")
_SIZE_GROWN = """
    SELECT r.size_bytes, r.quota_bytes, d.bytes FROM usage_delta AS d
    JOIN registries AS r ON r.id = d.registry_id WHERE d.registry_id = ?
"""
_SQLITE_BATCH = 500  # blobs per statement, well within SQLite's limit of bound values


@cache
def _sqlite_image_up(count: int) -> str:
    return (
        "INSERT INTO image_usage (image_id, blob_id, size, refs) "
        "SELECT l.image_id, b.id, l.size, 1 FROM image_blobs AS l "
        "JOIN blob_usage AS b ON b.digest = l.digest "
        f"WHERE l.image_id = ? AND l.digest IN ({_marks(count)}) "
        "ON CONFLICT (image_id, blob_id) DO UPDATE SET refs = refs + 1"
    )


@cache
def _sqlite_linked(count: int) -> str:
    return (
        f"SELECT digest, size FROM image_blobs WHERE image_id = ? AND digest IN ({_marks(count)})"
    )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# On PostgreSQL the whole of add_manifest is this one statement: a round trip to the server
# costs more than the work, and a push with new blobs took five (one per level, and the image's
# and the registry's sizes). Data-modifying CTEs all run, each level fed by the RETURNING of
# the one below; the rows are taken in the same order as before (levels bottom up, blobs in
# digest order). The registry grows only within its quota: when `added` > 0 and `grown` = 0
# the caller raises QuotaExceeded and the transaction rolls every level back.
_POSTGRESQL_ADD = text(
    """
    WITH image_level AS (
        INSERT INTO image_usage (image_id, blob_id, size, refs)
        SELECT l.image_id, b.id, l.size, 1 FROM image_blobs AS l
        JOIN blob_usage AS b ON b.digest = l.digest
        WHERE l.image_id = :image AND l.digest = ANY(CAST(:digests AS text[]))
        ORDER BY l.digest
        ON CONFLICT (image_id, blob_id) DO UPDATE SET refs = image_usage.refs + 1
        RETURNING blob_id, size, refs
    ), new_in_image AS (
        SELECT blob_id, size FROM image_level WHERE refs = 1
    ), image_size AS (
        UPDATE images
        SET size_bytes = size_bytes + (SELECT CAST(sum(size) AS bigint) FROM new_in_image)
        WHERE id = :image AND EXISTS (SELECT 1 FROM new_in_image)
        RETURNING id
    ), registry_level AS (
        INSERT INTO registry_usage (registry_id, blob_id, size, refs)
        SELECT :registry, blob_id, size, 1 FROM new_in_image ORDER BY blob_id
        ON CONFLICT (registry_id, blob_id) DO UPDATE SET refs = registry_usage.refs + 1
        RETURNING blob_id, size, refs
    ), new_in_registry AS (
        SELECT blob_id, size FROM registry_level WHERE refs = 1
    ), added AS (
        SELECT CAST(coalesce(sum(size), 0) AS bigint) AS bytes FROM new_in_registry
    ), grown AS (
        UPDATE registries SET size_bytes = size_bytes + (SELECT bytes FROM added)
        WHERE id = :registry AND (SELECT bytes FROM added) > 0
          AND (quota_bytes <= 0 OR size_bytes + (SELECT bytes FROM added) <= quota_bytes)
        RETURNING id
    ), platform_level AS (
        INSERT INTO blob_usage (digest, size, refs)
        SELECT b.digest, n.size, 1 FROM new_in_registry AS n
        JOIN blob_usage AS b ON b.id = n.blob_id ORDER BY b.digest
        ON CONFLICT (digest) DO UPDATE SET refs = blob_usage.refs + 1
        RETURNING digest
    )
    SELECT (SELECT bytes FROM added), (SELECT count(*) FROM grown),
           (SELECT count(*) FROM image_level), (SELECT count(*) FROM image_size),
           (SELECT count(*) FROM platform_level)
    """
)


@cache
def _stored(dialect: str) -> Any:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_BLOB)
    return insert.on_conflict_do_nothing(index_elements=["digest"])


_BLOB_ID = select(_BLOB.c.id).where(_BLOB.c.digest == bindparam("b_digest")).scalar_subquery()


@cache
def _down(table: Table) -> Any:
    """One reference less; RETURNING the count left, the size and the blob's id. The levels
    below the platform are keyed by the blob's id, found by its digest (a unique key)."""
    key = _KEYS[table.name]
    if key:
        conditions = [table.c[key] == bindparam("b_key"), table.c.blob_id == _BLOB_ID]
        blob_id = table.c.blob_id
    else:
        conditions = [table.c.digest == bindparam("b_digest")]
        blob_id = table.c.id
    return (
        update(table)
        .where(*conditions, table.c.refs > 0)
        .values(refs=table.c.refs - 1)
        .returning(table.c.refs, table.c.size, blob_id)
    )


_IMAGE_SIZE = (
    update(Image)
    .where(Image.id == bindparam("b_id"))
    .values(size_bytes=Image.size_bytes + bindparam("b_delta"))
)
_REGISTRY_SIZE = (
    update(Registry)
    .where(Registry.id == bindparam("b_id"))
    .values(size_bytes=Registry.size_bytes + bindparam("b_delta"))
)


def _sqlite3(conn: Connection) -> sqlite3.Connection | None:
    """The transaction's own sqlite3 connection, when the database is SQLite and the
    connection a synchronous one (Database.transaction)."""
    driver = conn.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


def _count_down(
    conn: Connection, table: Table, key: int | None, digests: Iterable[str], *, keep: bool
) -> dict[str, int]:
    """One reference less to each blob at one level; the blobs left with none (their rows go,
    unless `keep`)."""
    statement = _down(table)
    gone: dict[str, int] = {}
    gone_ids = []
    for digest in sorted(digests):
        row = conn.execute(statement, {"b_digest": digest, "b_key": key}).first()
        if row is not None and row.refs == 0:
            gone[digest] = row.size
            gone_ids.append(row[2])
    if gone and not keep:
        name = _KEYS[table.name]
        assert name is not None
        conn.execute(
            delete(table).where(
                table.c[name] == key, table.c.blob_id.in_(gone_ids), table.c.refs == 0
            )
        )
    return gone


def note_stored(conn: Connection, digest: str, size: int, *, manifest: bool = False) -> None:
    """A blob entered the store (linked into an image): from now on it is either referenced
    or awaiting garbage collection. On SQLite the link's trigger (usage_blob_stored) did it,
    unless the blob is a `manifest` of that image (migration 0022: the count gives the row)."""
    if conn.dialect.name == "sqlite" and not manifest:
        return
    conn.execute(_stored(conn.dialect.name), {"digest": digest, "size": size, "refs": 0})


def note_collected(conn: Connection, digest: str) -> None:
    """Garbage collection removed a blob's bytes (never one a manifest names, counted or
    not: collection checks the manifests' references, not these rows)."""
    conn.execute(delete(_BLOB).where(_BLOB.c.digest == digest, _BLOB.c.refs == 0))


def _refuse(conn: Connection, registry_id: int, added: int) -> None:
    name, used, quota = conn.execute(
        select(Registry.name, Registry.size_bytes, Registry.quota_bytes).where(
            Registry.id == registry_id
        )
    ).one()
    raise QuotaExceeded(
        f"registry {name} would exceed its storage quota: it uses {human_bytes(used)} of "
        f"{human_bytes(quota)} and this push needs {human_bytes(added)} more; delete images "
        "or ask a platform admin for a larger quota",
        detail={"registry": name, "used_bytes": used, "quota_bytes": quota, "needed_bytes": added},
    )


def add_manifest(conn: Connection, registry_id: int, image_id: int, entries: Entries) -> None:
    """A manifest was added to an image: count its references, refusing it if one of its
    blobs is not linked into the image (ManifestBlobUnknown) or if its new bytes exceed the
    registry's quota (QuotaExceeded); the caller's transaction then rolls back. A blob the
    image held already stops at the first level. On SQLite one statement, the image level,
    run on the driver, which triggers carry up (migration 0018), then the registry's size
    grown by what reached it, once (migration 0024); on PostgreSQL one statement for every
    level (_POSTGRESQL_ADD)."""
    raw = _sqlite3(conn)
    if raw is None and conn.dialect.name == "postgresql":
        digests = sorted(entries)
        added, grown, linked, *_ = conn.execute(
            _POSTGRESQL_ADD,
            {"image": image_id, "registry": registry_id, "digests": digests},
        ).one()
        if linked < len(digests):
            _unlinked(conn, image_id, digests)
        if added and not grown:
            _refuse(conn, registry_id, int(added))
        return
    if raw is None:  # pragma: no cover - SQLite is always run on its sqlite3 connection
        raise RuntimeError("usage upkeep on SQLite needs the transaction's sqlite3 connection")
    digests = sorted(entries)
    counted = 0
    for start in range(0, len(digests), _SQLITE_BATCH):
        batch = digests[start : start + _SQLITE_BATCH]
        counted += raw.execute(_sqlite_image_up(len(batch)), (image_id, *batch)).rowcount
    if counted < len(digests):
        _check_linked(raw, image_id, digests)
    grown = raw.execute(_SIZE_GROWN, (registry_id,)).fetchone()
    if grown is None:  # no blob new to the registry: no size to grow
        return
    used, quota, added = grown
    if quota > 0 and used + added > quota:
        _refuse(conn, registry_id, added)
    grow_sizes(raw.execute)


def check_held(conn: Connection, image_id: int, entries: Entries) -> None:
    """The check `add_manifest` makes as it counts, without counting: the image holds every
    blob the manifest names (else MANIFEST_BLOB_UNKNOWN, and the transaction rolls back). For
    a PUT on SQLite, whose manifest is counted after it (catalog/usage_deferred.py)."""
    raw = _sqlite3(conn)
    if raw is None:  # pragma: no cover - SQLite is always run on its sqlite3 connection
        raise RuntimeError("a PUT on SQLite runs on the transaction's sqlite3 connection")
    _check_linked(raw, image_id, sorted(entries))


def _check_linked(raw: sqlite3.Connection, image_id: int, digests: list[str]) -> None:
    linked: set[str] = set()
    for start in range(0, len(digests), _SQLITE_BATCH):
        batch = digests[start : start + _SQLITE_BATCH]
        linked.update(d for d, _ in raw.execute(_sqlite_linked(len(batch)), (image_id, *batch)))
    if len(linked) < len(digests):
        raise_unlinked(sorted(set(digests) - linked))


def count_now(
    conn: Connection,
    registry_id: int,
    image_id: int,
    manifest_id: int,
    digest: str,
    size: int,
    entries: Entries,
) -> None:
    """Count a manifest in its PUT (a registry with a quota, and every PUT on PostgreSQL):
    on SQLite what is pending first, then this one, and the mark moves past it."""
    if conn.dialect.name != "sqlite":
        add_manifest(conn, registry_id, image_id, entries)
        return
    count_pending(conn, through=manifest_id - 1)
    note_stored(conn, digest, size, manifest=True)
    add_manifest(conn, registry_id, image_id, entries)
    conn.exec_driver_sql(MOVE_MARK, (manifest_id,))


def raise_unlinked(missing: list[str], what: str = "the image") -> None:
    """MANIFEST_BLOB_UNKNOWN for blobs a manifest names that `what` does not hold."""
    raise ManifestBlobUnknown(
        f"the manifest references {len(missing)} blob(s) that {what} does not hold, first "
        f"{missing[0]}; push them before the manifest",
        detail={"digests": missing[:20]},
    )


def _unlinked(conn: Connection, image_id: int, digests: list[str]) -> None:
    linked = set(
        conn.scalars(
            select(ImageBlob.digest).where(
                ImageBlob.image_id == image_id, ImageBlob.digest.in_(digests)
            )
        )
    )
    raise_unlinked([digest for digest in digests if digest not in linked])


def _remove(conn: Connection, registry_id: int, image_id: int, digests: Iterable[str]) -> None:
    gone_from_image = _count_down(conn, _IMAGE, image_id, digests, keep=False)
    if not gone_from_image:
        return
    conn.execute(_IMAGE_SIZE, {"b_id": image_id, "b_delta": -sum(gone_from_image.values())})
    _leave_registry(conn, registry_id, gone_from_image)


def _leave_registry(conn: Connection, registry_id: int, digests: Iterable[str]) -> None:
    gone = _count_down(conn, _REGISTRY, registry_id, digests, keep=False)
    if gone:
        conn.execute(_REGISTRY_SIZE, {"b_id": registry_id, "b_delta": -sum(gone.values())})
        _count_down(conn, _BLOB, None, gone, keep=True)


_MANIFESTS = (
    select(Manifest.id, Image.registry_id, Manifest.image_id, Manifest.digest)
    .join(Image, Image.id == Manifest.image_id)
    .where(Manifest.id.in_(bindparam("ids", expanding=True)))
)
_BLOB_REFERENCES = select(ManifestReference.manifest_id, ManifestReference.digest).where(
    ManifestReference.manifest_id.in_(bindparam("ids", expanding=True)),
    ManifestReference.kind == "blob",
)


def lock_for_manifests(conn: Connection, manifest_ids: Iterable[int]) -> None:
    """Lock the `blob_usage` rows that removing these manifests may change, in digest order:
    their own blobs and the blobs they reference (a superset of what `remove_manifests`
    changes). Call it before recording garbage candidates and before removing."""
    ids = list(manifest_ids)
    if ids and conn.dialect.name == "postgresql":
        own = conn.scalars(select(Manifest.digest).where(Manifest.id.in_(ids))).all()
        referenced = [digest for _, digest in conn.execute(_BLOB_REFERENCES, {"ids": ids})]
        locks.blob_usage(conn, [*own, *referenced])


def _digests(level: type[ImageUsage] | type[RegistryUsage]) -> Any:
    """The digests of a level's blobs (its rows name them by id)."""
    return select(BlobUsage.digest).join(level, level.blob_id == BlobUsage.id)


def lock_for_images(conn: Connection, image_ids: Iterable[int]) -> None:
    """Lock the `blob_usage` rows that removing these images may change, in digest order."""
    ids = list(image_ids)
    if ids and conn.dialect.name == "postgresql":
        held = _digests(ImageUsage).where(ImageUsage.image_id.in_(ids)).distinct()
        locks.blob_usage(conn, conn.scalars(held).all())


def remove_manifests(conn: Connection, manifest_ids: Iterable[int]) -> None:
    """Manifests are about to be deleted: take their references away. Call it before the
    DELETE, in the same transaction."""
    ids = list(manifest_ids)
    if not ids:
        return
    count_pending(conn)  # never take away what was not counted yet (usage_deferred)
    references: dict[int, set[str]] = {}
    for manifest_id, digest in conn.execute(_BLOB_REFERENCES, {"ids": ids}):
        references.setdefault(manifest_id, set()).add(digest)
    for manifest_id, registry_id, image_id, digest in conn.execute(_MANIFESTS, {"ids": ids}):
        _remove(conn, registry_id, image_id, {digest, *references.get(manifest_id, ())})


def remove_images(conn: Connection, image_ids: Iterable[int]) -> None:
    """Images are about to be deleted (their manifests with them, by cascade): take what they
    reference away from their registry's figures."""
    count_pending(conn)
    for image_id in sorted(image_ids):
        registry_id = conn.scalar(select(Image.registry_id).where(Image.id == image_id))
        if registry_id is None:
            continue
        digests = conn.scalars(_digests(ImageUsage).where(ImageUsage.image_id == image_id)).all()
        _leave_registry(conn, registry_id, digests)
        conn.execute(delete(ImageUsage).where(ImageUsage.image_id == image_id))


def remove_registry(conn: Connection, registry_id: int) -> None:
    """A registry is about to be deleted: whatever it still references leaves the platform's
    figures (its images should have gone through `remove_images` already)."""
    count_pending(conn)
    digests = conn.scalars(
        _digests(RegistryUsage).where(RegistryUsage.registry_id == registry_id)
    ).all()
    _count_down(conn, _BLOB, None, digests, keep=True)
    conn.execute(delete(RegistryUsage).where(RegistryUsage.registry_id == registry_id))


# -- reads -------------------------------------------------------------------------------------

UNIQUE_BYTES = (
    select(func.coalesce(func.sum(RegistryUsage.size), 0).cast(BigInteger))
    .join(BlobUsage, BlobUsage.id == RegistryUsage.blob_id)
    .where(RegistryUsage.registry_id == Registry.id, BlobUsage.refs == 1)
    .correlate(Registry)
    .scalar_subquery()
)
"""A registry's `unique_bytes`, as a column: the bytes no other registry references (what
deleting it would free after garbage collection); a sum over the registry's own rows."""


@dataclass(frozen=True, slots=True)
class PlatformUsage:
    referenced_bytes: int  # distinct bytes referenced by any registry, each blob once
    referenced_blobs: int
    awaiting_gc_bytes: int  # stored, referenced by nothing: garbage collection's to reclaim
    awaiting_gc_blobs: int


_USED = BlobUsage.refs > 0
_PLATFORM = select(
    func.coalesce(func.sum(case((_USED, BlobUsage.size), else_=0)), 0).cast(BigInteger),
    func.count(case((_USED, 1))),
    func.coalesce(func.sum(case((~_USED, BlobUsage.size), else_=0)), 0).cast(BigInteger),
    func.count(case((~_USED, 1))),
)


def platform_usage(conn: Connection) -> PlatformUsage:
    return PlatformUsage(*conn.execute(_PLATFORM).one())


def tree_sizes(conn: Connection, manifest_ids: Iterable[int]) -> dict[int, int]:
    """The `size_bytes` of each manifest's tree: the manifest, its config and layers, and for
    an index each child manifest of the same image with its own tree; every blob once. An
    index child the image does not hold (a sparse index) adds nothing. A few indexed queries
    per level of the tree, for a whole page of tags at once."""
    manifests: dict[int, tuple[int, str, int]] = {}  # id -> image, digest, size
    blobs: dict[int, dict[str, int]] = {}
    children: dict[int, list[int]] = {}
    wanted: dict[tuple[int, str], list[int]] = {}  # (image, child digest) -> parents
    roots = set(manifest_ids)
    pending = set(roots)
    while pending:
        ids = list(pending)
        for manifest_id, image_id, digest, size in conn.execute(
            select(Manifest.id, Manifest.image_id, Manifest.digest, Manifest.size).where(
                Manifest.id.in_(ids)
            )
        ):
            manifests[manifest_id] = (image_id, digest, size)
            blobs[manifest_id] = {digest: size}
            children[manifest_id] = []
        wanted.clear()
        for manifest_id, digest, size, kind in conn.execute(
            select(
                ManifestReference.manifest_id,
                ManifestReference.digest,
                ManifestReference.size,
                ManifestReference.kind,
            ).where(ManifestReference.manifest_id.in_(ids))
        ):
            if kind == "blob":
                blobs[manifest_id].setdefault(digest, size)
            elif kind == "manifest":
                wanted.setdefault((manifests[manifest_id][0], digest), []).append(manifest_id)
        pending = set()
        if wanted:
            for child_id, image_id, digest in conn.execute(
                select(Manifest.id, Manifest.image_id, Manifest.digest).where(
                    Manifest.image_id.in_({image for image, _ in wanted}),
                    Manifest.digest.in_({digest for _, digest in wanted}),
                )
            ):
                for parent in wanted.get((image_id, digest), ()):
                    children[parent].append(child_id)
                if child_id not in manifests and (image_id, digest) in wanted:
                    pending.add(child_id)

    def tree(manifest_id: int, seen: dict[str, int], visited: set[int]) -> None:
        if manifest_id in visited:
            return
        visited.add(manifest_id)
        seen.update(blobs.get(manifest_id, {}))
        for child in children.get(manifest_id, ()):
            tree(child, seen, visited)

    sizes: dict[int, int] = {}
    for manifest_id in roots:
        if manifest_id in manifests:
            seen: dict[str, int] = {}
            tree(manifest_id, seen, set())
            sizes[manifest_id] = sum(seen.values())
    return sizes
