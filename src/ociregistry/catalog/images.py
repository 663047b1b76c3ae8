"""Images (OCI repositories) and what they hold: blob links, manifests, tags, referrers.

Everything the /v2 API asks of the metadata goes through `Images`. Each read is one query on
the hot paths (a manifest by tag is a single indexed join); a write is one transaction, and a
tag is written in the same transaction as, and after, the manifest it points to, whose bytes
are already durable in the blob store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, literal_column, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ociregistry.blobstore.digest import Digest
from ociregistry.catalog import candidates
from ociregistry.catalog.immutable import (
    refuse_deleting,
    registry_patterns,
    rule_for,
    write_tag,
)
from ociregistry.catalog.usage import (
    check_held,
    count_now,
    lock_for_manifests,
    manifest_entries,
    note_stored,
    raise_unlinked,
    remove_manifests,
)
from ociregistry.catalog.usage_deferred import UsageCounter, counted_later
from ociregistry.db import locks
from ociregistry.db.database import Database, changes_on_driver, execute_on_driver
from ociregistry.db.models import (
    Image,
    ImageBlob,
    Manifest,
    ManifestReference,
    Registry,
    Tag,
    utcnow,
)
from ociregistry.db.sql import insert_ignore_statement
from ociregistry.errors import (
    ManifestInvalid,
    NameUnknown,
)
from ociregistry.manifests.parse import ParsedManifest
from ociregistry.names import RepositoryName

MOUNT_CANDIDATES = 50  # registries an automatic mount looks at; one readable is enough


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


# Statements are built once: building a joined select costs more than running it.
_REGISTRY_ID = select(Registry.id).where(
    Registry.name == bindparam("registry"), Registry.status == "available"
)
_IMAGE_ROW = and_(
    Registry.name == bindparam("registry"),
    Registry.status == "available",
    Image.registry_id == Registry.id,
    Image.name == bindparam("image"),
)
_IMAGE_ID = (
    select(Image.id)
    .select_from(Image)
    .join(Registry, Registry.id == Image.registry_id)
    .where(_IMAGE_ROW)
)
_BLOB_SIZE = (
    select(ImageBlob.size)
    .join(Image, Image.id == ImageBlob.image_id)
    .join(Registry, Registry.id == Image.registry_id)
    .where(_IMAGE_ROW, ImageBlob.digest == bindparam("digest"))
)
_MANIFEST = (
    select(Manifest.digest, Manifest.media_type, Manifest.size)
    .join(Image, Image.id == Manifest.image_id)
    .join(Registry, Registry.id == Image.registry_id)
)
_MANIFEST_BY_DIGEST = _MANIFEST.where(_IMAGE_ROW, Manifest.digest == bindparam("digest"))
_MANIFEST_BY_TAG = _MANIFEST.join(Tag, Tag.manifest_id == Manifest.id).where(
    _IMAGE_ROW, Tag.image_id == Image.id, Tag.name == bindparam("tag")
)
# The image is found first (a scalar subquery), so that its tags are one range of the index
# (image_id, name) read in order: joined instead, PostgreSQL cannot tell that one image
# matches and sorts all of its tags after `last` for every page (28x at 100,000 tags).
_TAGS = (
    select(Tag.name)
    .where(Tag.image_id == _IMAGE_ID.scalar_subquery(), Tag.name > bindparam("last"))
    .order_by(Tag.name)
    .limit(bindparam("limit"))
)
_REFERRERS = (
    select(
        Manifest.digest,
        Manifest.media_type,
        Manifest.size,
        Manifest.artifact_type,
        Manifest.annotations,
    )
    .join(Image, Image.id == Manifest.image_id)
    .join(Registry, Registry.id == Image.registry_id)
    .where(_IMAGE_ROW, Manifest.subject == bindparam("subject"))
    .order_by(Manifest.created_at, Manifest.id)
)
# The catalog, in the lexical order of full names `{registry}/{image}`, one registry at a time:
# since no registry name holds '/', that order is registries by `name || '/'` (the expression
# of the unique index ix_registries_catalog, migration 0009), then images by name, within each
# registry an index range (registry_id, name). So a page costs the same at 100,000 repositories
# as at 1,000, where sorting every full name did not.
_CATALOG_KEY = Registry.name.concat(literal_column("'/'"))
_CATALOG_REGISTRIES = (
    select(Registry.id, Registry.name)
    .where(Registry.status == "available")
    .order_by(_CATALOG_KEY)
    .limit(bindparam("limit"))
)
_FROM_KEY = bindparam("key") <= _CATALOG_KEY  # the registry of `last`, and those after it
_AFTER_KEY = bindparam("key") < _CATALOG_KEY  # the registries after the last one read
_CATALOG_IMAGES = (
    select(Image.name)
    .where(
        Image.registry_id == bindparam("registry_id"),
        Image.name > bindparam("after"),
        select(Manifest.id).where(Manifest.image_id == Image.id).exists(),
    )
    .order_by(Image.name)
    .limit(bindparam("limit"))
)
_CATALOG_BATCH = 100  # registries read at a time while filling a page


def _params(repo: RepositoryName, **more: Any) -> dict[str, Any]:
    return {"registry": repo.registry, "image": repo.image, **more}


class Images:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.usage = UsageCounter(db)

    async def close(self) -> None:
        await self.usage.close()

    # -- existence ---------------------------------------------------------------------------

    async def image_id(self, repo: RepositoryName) -> int | None:
        row = await self.db.first(_IMAGE_ID, _params(repo))
        return None if row is None else row[0]

    async def require_image(self, repo: RepositoryName) -> int:
        image_id = await self.image_id(repo)
        if image_id is None:
            raise NameUnknown(f"repository {repo.full} is not known", detail={"name": repo.full})
        return image_id

    # -- blobs -------------------------------------------------------------------------------

    async def blob_size(self, repo: RepositoryName, digest: Digest) -> int | None:
        """The size of a blob `repo` may serve, or None."""
        async with self.db.read() as conn:
            return await conn.scalar(_BLOB_SIZE, _params(repo, digest=str(digest)))

    async def repositories_holding(
        self, digest: Digest, *, near: RepositoryName, limit: int = MOUNT_CANDIDATES
    ) -> list[RepositoryName]:
        """Repositories that hold the blob `digest`, one per registry, those in `near`'s
        registry first: the candidates of an automatic cross-repository mount. Who may read
        them is for the access policy to say."""
        same_registry = case((Registry.name == near.registry, 0), else_=1)
        query = (
            select(Registry.name, func.min(Image.name))
            .select_from(ImageBlob)
            .join(Image, Image.id == ImageBlob.image_id)
            .join(Registry, Registry.id == Image.registry_id)
            .where(ImageBlob.digest == str(digest), Registry.status == "available")
            .group_by(Registry.name)
            .order_by(func.min(same_registry), Registry.name)
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [RepositoryName(registry, image) for registry, image in rows]

    async def note_blob_written(self, digest: Digest) -> None:
        """Before a blob's bytes are written: record it as a garbage candidate, so that a
        blob written but never linked (the process died in between) is found without a walk
        of the store; once linked, the collector drops the candidate."""
        await self.db.transaction(lambda conn: note_blob_written_in(conn, digest))

    async def link_blob(self, repo: RepositoryName, digest: Digest, size: int) -> None:
        await self.db.transaction(lambda conn: link_blob_in(conn, repo, digest, size))

    async def unlink_blob(self, repo: RepositoryName, digest: Digest) -> bool:
        return await self.db.transaction(lambda conn: _unlink_blob(conn, repo, str(digest)))

    # -- manifests ---------------------------------------------------------------------------

    async def find_manifest(
        self, repo: RepositoryName, *, tag: str | None = None, digest: Digest | None = None
    ) -> ManifestRecord | None:
        """The manifest a tag points at, or the one with this digest, in one query."""
        if tag is not None:
            query, params = _MANIFEST_BY_TAG, _params(repo, tag=tag)
        else:
            query, params = _MANIFEST_BY_DIGEST, _params(repo, digest=str(digest))
        row = await self.db.first(query, params)
        return None if row is None else ManifestRecord(*row)

    async def missing_references(
        self, repo: RepositoryName, parsed: ParsedManifest, *, also: Sequence[Digest] = ()
    ) -> set[Digest]:
        """Raise MANIFEST_BLOB_UNKNOWN for anything `parsed` needs but `repo` lacks, and
        return those of the manifests `also` that `repo` holds: one read, compiled once and
        run on the driver, before the manifest's bytes are written."""
        blobs = [d for d in parsed.blobs if not d.foreign]
        wanted = sorted(
            {str(d.digest) for d in (*blobs, *parsed.children)} | {str(d) for d in also}
        )
        if not wanted:
            return set()
        postgresql = not self.db.url.startswith("sqlite")
        rows = await self.db.rows(
            _HELD_POSTGRESQL if postgresql else _HELD_SQLITE,
            _params(repo, digests=wanted if postgresql else json.dumps(wanted)),
        )
        held: dict[str, dict[str, int]] = {"blob": {}, "manifest": {}}
        for kind, digest, size in rows:
            held[kind][digest] = size
        _check_references(repo, parsed, held["blob"], held["manifest"])
        return {d for d in also if str(d) in held["manifest"]}

    async def record_manifest(
        self,
        repo: RepositoryName,
        digest: Digest,
        size: int,
        parsed: ParsedManifest,
        tag: str | None,
        *,
        more_tags: Sequence[str] = (),
    ) -> None:
        """Record a manifest whose bytes are stored, then point `tag` and `more_tags` at it,
        atomically: every tag or none."""
        tags = [*([tag] if tag is not None else []), *more_tags]
        pending = await self.db.transaction(
            lambda conn: _record_manifest(conn, repo, str(digest), size, parsed, tags)
        )
        if pending:
            self.usage.pushed()

    async def delete_manifest(
        self, repo: RepositoryName, digest: Digest, *, immutable_too: bool = False
    ) -> bool:
        """Delete a manifest and every tag pointing at it; refused when one of those tags is
        immutable, unless `immutable_too` (the caller may delete immutable tags)."""
        return await self.db.transaction(
            lambda conn: _delete_manifest(conn, repo, str(digest), immutable_too)
        )

    async def delete_tag(
        self, repo: RepositoryName, tag: str, *, immutable_too: bool = False
    ) -> bool:
        return await self.db.transaction(lambda conn: _delete_tag(conn, repo, tag, immutable_too))

    # -- listings ----------------------------------------------------------------------------

    async def tags(self, repo: RepositoryName, *, limit: int, last: str | None) -> list[str]:
        rows = await self.db.rows(_TAGS, _params(repo, last=last or "", limit=limit))
        return [name for (name,) in rows]

    async def repositories(
        self, *, limit: int, last: str | None, registries: ColumnElement[bool]
    ) -> list[str]:
        """Full names of images holding at least one manifest, in lexical order, in the
        registries matching `registries` (the access policy's condition for the caller)."""
        last_registry, _, last_image = (last or "").partition("/")
        key, position = (last_registry + "/" if last else ""), _FROM_KEY
        names: list[str] = []
        async with self.db.read() as conn:
            while len(names) < limit:
                batch = (
                    await conn.execute(
                        _CATALOG_REGISTRIES.where(registries, position),
                        {"key": key, "limit": _CATALOG_BATCH},
                    )
                ).all()
                for registry_id, registry in batch:
                    after = last_image if last and registry == last_registry else ""
                    images = await conn.scalars(
                        _CATALOG_IMAGES,
                        {"registry_id": registry_id, "after": after, "limit": limit - len(names)},
                    )
                    names += [f"{registry}/{image}" for image in images.all()]
                    if len(names) >= limit:
                        return names
                if len(batch) < _CATALOG_BATCH:
                    break
                key, position = batch[-1][1] + "/", _AFTER_KEY
        return names

    async def referrers(
        self, repo: RepositoryName, subject: Digest, artifact_type: str | None
    ) -> list[Referrer]:
        async with self.db.read() as conn:
            rows = (await conn.execute(_REFERRERS, _params(repo, subject=str(subject)))).all()
        referrers = [Referrer(*row) for row in rows]
        if artifact_type is not None:
            referrers = [r for r in referrers if r.artifact_type == artifact_type]
        return referrers


# -- writes, each run whole inside one transaction (Database.transaction) -------------------

_IMAGE_IN_REGISTRY = select(Image.id).where(
    Image.registry_id == bindparam("registry_id"), Image.name == bindparam("image")
)
_MANIFEST_ID = select(Manifest.id).where(
    Manifest.image_id == bindparam("image_id"), Manifest.digest == bindparam("digest")
)
_STORED_BLOBS = select(ImageBlob.digest, ImageBlob.size).where(
    ImageBlob.image_id == bindparam("image_id"),
    ImageBlob.digest.in_(bindparam("digests", expanding=True)),
)
_STORED_MANIFESTS = select(Manifest.digest, Manifest.size).where(
    Manifest.image_id == bindparam("image_id"),
    Manifest.digest.in_(bindparam("digests", expanding=True)),
)
_TOUCH_IMAGE = (
    update(Image).where(Image.id == bindparam("image_id")).values(updated_at=bindparam("now"))
)
# The registry (its immutable-tag patterns, its quota) and the image of a manifest push, in
# one read.
_TARGET = (
    select(Registry.id, Registry.immutable_tags, Image.id, Registry.quota_bytes)
    .select_from(Registry)
    .outerjoin(Image, and_(Image.registry_id == Registry.id, Image.name == bindparam("image")))
    .where(Registry.name == bindparam("registry"), Registry.status == bindparam("status"))
)
_MANIFEST_COLUMNS = Manifest.__table__.c
_INSERT_REFERENCE = ManifestReference.__table__.insert().values(
    manifest_id=bindparam("r_manifest_id"),
    position=bindparam("r_position"),
    digest=bindparam("r_digest"),
    kind=bindparam("r_kind"),
    size=bindparam("r_size"),
    platform=bindparam("r_platform"),
)
# Blobs and child manifests of a manifest about to be pushed that its image holds, in one
# read on the driver: `digests` is a JSON array on SQLite, an array on PostgreSQL.
_HELD = """
    WITH image AS (
        SELECT images.id FROM images JOIN registries ON registries.id = images.registry_id
        WHERE registries.name = :registry AND registries.status = 'available'
          AND images.name = :image
    )
    SELECT 'blob', digest, size FROM image_blobs
    WHERE image_id = (SELECT id FROM image) AND digest {wanted}
    UNION ALL
    SELECT 'manifest', digest, size FROM manifests
    WHERE image_id = (SELECT id FROM image) AND digest {wanted}
"""
_HELD_SQLITE = text(_HELD.format(wanted="IN (SELECT value FROM json_each(:digests))"))
_HELD_POSTGRESQL = text(_HELD.format(wanted="= ANY(CAST(:digests AS text[]))"))


# PostgreSQL: the manifest's own bytes linked and given their usage row (whose id keys the
# usage rows of add_manifest) in one round trip; on SQLite the count gives the row, after the
# PUT (catalog/usage_deferred.py; the link's trigger leaves an image's own manifest to it).
_LINK_MANIFEST_POSTGRESQL = text(
    """
    WITH linked AS (
        INSERT INTO image_blobs (image_id, digest, size, created_at)
        VALUES (:l_image_id, :l_digest, :l_size, :l_created_at)
        ON CONFLICT (image_id, digest) DO NOTHING
    )
    INSERT INTO blob_usage (digest, size, refs) VALUES (:l_digest, :l_size, 0)
    ON CONFLICT (digest) DO NOTHING
    """
).bindparams(bindparam("l_created_at", type_=ImageBlob.created_at.type))


@cache
def _link_manifest_statement(dialect: str) -> Any:
    """Link a manifest's own bytes into its image (add_manifest counts them), noting them
    stored (`usage.note_stored`)."""
    if dialect == "postgresql":
        return _LINK_MANIFEST_POSTGRESQL
    return (
        sqlite.insert(ImageBlob.__table__)
        .values(
            image_id=bindparam("l_image_id"),
            digest=bindparam("l_digest"),
            size=bindparam("l_size"),
            created_at=bindparam("l_created_at"),
        )
        .on_conflict_do_nothing(index_elements=["image_id", "digest"])
    )


@cache
def _insert_manifest_statement(dialect: str) -> Any:
    """Insert a manifest unless its image holds it, RETURNING its new id."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(Manifest.__table__)
    return (
        insert.values(
            image_id=bindparam("m_image_id"),
            digest=bindparam("m_digest"),
            media_type=bindparam("m_media_type"),
            size=bindparam("m_size"),
            artifact_type=bindparam("m_artifact_type"),
            subject=bindparam("m_subject"),
            annotations=bindparam("m_annotations"),
            created_at=bindparam("m_created_at"),
        )
        .on_conflict_do_nothing(index_elements=["image_id", "digest"])
        .returning(_MANIFEST_COLUMNS.id)
    )


def _ensure_image(conn: Connection, repo: RepositoryName, *, lock: bool = False) -> tuple[int, int]:
    """The ids of the image's registry and of the image, creating the image's row on the
    first push into it. `lock`: lock the registry, then the image (the lock order of
    db/database.py), for a transaction that changes their usage, manifests or tags."""
    registry_id = conn.scalar(_REGISTRY_ID, {"registry": repo.registry})
    if registry_id is None:
        raise NameUnknown(
            f"registry {repo.registry!r} does not exist; create it before pushing",
            detail={"name": repo.full},
        )
    if lock:
        locks.registries(conn, [registry_id])
    where = {"registry_id": registry_id, "image": repo.image}
    image_id = conn.scalar(_IMAGE_IN_REGISTRY, where)
    if image_id is not None and not lock and not locks.image_kept(conn, image_id):
        image_id = None  # deleted meanwhile (a deletion holding it committed): made again
    if image_id is None:
        now = utcnow()
        conn.execute(
            insert_ignore_statement(conn.dialect.name, Image.__table__, ("registry_id", "name")),
            {
                "registry_id": registry_id,
                "name": repo.image,
                "pull_count": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
        image_id = conn.scalar(_IMAGE_IN_REGISTRY, where)
    if lock:
        locks.images(conn, [image_id])
    return registry_id, image_id


def _link(conn: Connection, image_id: int, digest: str, size: int, *, stored: bool = True) -> None:
    """Link a blob into an image; `stored=False` when the caller's references account for it
    already (a manifest's own bytes: add_manifest counts them, or they were counted before)."""
    conn.execute(
        insert_ignore_statement(conn.dialect.name, ImageBlob.__table__, ("image_id", "digest")),
        {"image_id": image_id, "digest": digest, "size": size, "created_at": utcnow()},
    )
    if stored:
        note_stored(conn, digest, size)


# A blob linked into an image that exists already (every blob push but an image's first), the
# image found by its registry's and its own name within the same statement: one statement on
# the driver where looking up the registry, then the image, then inserting took three
# executions through SQLAlchemy. SQLite only, whose writers take turns: on PostgreSQL the image
# must be kept from a deletion under way first (`locks.image_kept`). The count of rows it
# changed tells a link made from none made (no such image: a NULL image id, which OR IGNORE
# skips; or linked already): `_ensure_image` then decides. One row of VALUES, and no
# RETURNING: SQLite runs an INSERT ... SELECT into a table with triggers (usage_blob_stored),
# and any RETURNING, through a temporary table, which cost more than the rest of the
# statement (migration 0020).
_LINK_INTO_IMAGE = text(
    """
    INSERT OR IGNORE INTO image_blobs (image_id, digest, size, created_at) VALUES (
        (SELECT images.id FROM images JOIN registries ON registries.id = images.registry_id
         WHERE registries.name = :registry AND registries.status = :available
           AND images.name = :image),
        :digest, :size, :now)
    """
).bindparams(bindparam("now", type_=ImageBlob.created_at.type))


# PostgreSQL: the image found by name and kept from a deletion under way (`locks.image_kept`)
# in one round trip, where the registry's id, the image's and its lock took three.
_IMAGE_KEPT = _IMAGE_ID.with_for_update(read=True, key_share=True, of=Image)


def _link_blob(conn: Connection, repo: RepositoryName, digest: str, size: int) -> None:
    if conn.dialect.name == "sqlite":
        values = _params(repo, digest=digest, size=size, now=utcnow(), available="available")
        if changes_on_driver(conn, _LINK_INTO_IMAGE, values):
            note_stored(conn, digest, size)
            return
    elif conn.dialect.name == "postgresql":
        image_id = conn.scalar(_IMAGE_KEPT, _params(repo))
        if image_id is not None:
            _link(conn, image_id, digest, size)
            return
    _link(conn, _ensure_image(conn, repo)[1], digest, size)


def note_blob_written_in(conn: Connection, digest: Digest) -> None:
    """`Images.note_blob_written` inside a transaction the caller holds (an upload's claim),
    so a small push pays for one commit, not two."""
    candidates.record_written_sync(conn, str(digest))


def link_blob_in(conn: Connection, repo: RepositoryName, digest: Digest, size: int) -> None:
    """`Images.link_blob` inside a transaction the caller holds (the end of an upload)."""
    _link_blob(conn, repo, str(digest), size)


def _check_references(
    repo: RepositoryName,
    parsed: ParsedManifest,
    blobs: dict[str, int],
    manifests: dict[str, int],
) -> None:
    """Every blob (config and layers) must be in `repo` (`blobs`: those it holds of them,
    with their sizes), with the size the manifest gives it: a missing one is
    MANIFEST_BLOB_UNKNOWN. An index's child manifests may be absent (a sparse index: the spec
    lets a registry accept one, and the conformance suite pushes them), but one that is
    present (in `manifests`) must have the size the index gives it; a `subject` need not
    exist at all. Foreign layers are held by no registry and are not checked."""
    checks = (
        ("blob", [d for d in parsed.blobs if not d.foreign], blobs, True),
        ("manifest", parsed.children, manifests, False),
    )
    for kind, descriptors, stored, required in checks:
        wanted = {str(d.digest): d.size for d in descriptors}
        if not wanted:
            continue
        missing = sorted(set(wanted) - set(stored))
        if missing and required:
            raise_unlinked(missing, repo.full)
        wrong = sorted(
            digest for digest, size in wanted.items() if stored.get(digest, size) != size
        )
        if wrong:
            raise ManifestInvalid(
                f"the manifest gives {kind} {wrong[0]} a size of {wanted[wrong[0]]} bytes, "
                f"but it has {stored[wrong[0]]}",
                detail={
                    "digest": wrong[0],
                    "size": wanted[wrong[0]],
                    "actual_size": stored[wrong[0]],
                },
            )


def _record_manifest(
    conn: Connection,
    repo: RepositoryName,
    digest: str,
    size: int,
    parsed: ParsedManifest,
    tags: Sequence[str],
) -> bool:
    """The manifest's transaction. Its references were checked before its bytes were
    written (`missing_references`); under the transaction's lock they are checked again (a
    blob unlinked meanwhile refuses the push), as the usage count does (`count_now`) or, on
    SQLite without a quota, by one statement, the count following after the PUT
    (catalog/usage_deferred.py; a manifest naming a blob twice is counted in its PUT). True
    when a new manifest awaits that count. Every statement is compiled once and, on SQLite,
    run on the driver (`execute_on_driver`)."""
    registry_id, image_id, patterns, quota = _target(conn, repo, bool(tags))
    now = utcnow()
    dialect = conn.dialect.name
    # The manifest's row before its link: on SQLite the link of an image's own manifest
    # leaves its `blob_usage` row to the count (migration 0022).
    manifest_id = _insert_manifest(conn, image_id, digest, size, parsed)
    execute_on_driver(
        conn,
        _link_manifest_statement(dialect),
        {"l_image_id": image_id, "l_digest": digest, "l_size": size, "l_created_at": now},
    )
    pending = False
    if manifest_id is None:
        (manifest_id,) = execute_on_driver(
            conn, _MANIFEST_ID, {"image_id": image_id, "digest": digest}
        )[0]
    else:
        entries = manifest_entries(digest, size, parsed)
        if dialect == "sqlite" and not quota and counted_later(parsed, entries):
            check_held(conn, image_id, entries)
            pending = True
        else:
            count_now(conn, registry_id, image_id, manifest_id, digest, size, entries)
    for tag in dict.fromkeys(tags):
        params = {
            "image_id": image_id,
            "name": tag,
            "manifest_id": manifest_id,
            "pull_count": 0,
            "created_at": now,
        }
        write_tag(conn, params, rule_for(patterns, tag), repo.full)
    execute_on_driver(conn, _TOUCH_IMAGE, {"image_id": image_id, "now": now})
    return pending


def _target(
    conn: Connection, repo: RepositoryName, tagged: bool
) -> tuple[int, int, list[str], int]:
    """The ids of the registry and the image a manifest is pushed into (the image made on
    the first push), locked on PostgreSQL in the lock order of db/database.py; the
    registry's immutable-tag patterns when tags are to be written; and on SQLite its quota.
    On SQLite, where nothing is locked, one statement on the driver while the image exists."""
    if conn.dialect.name == "sqlite":
        rows = execute_on_driver(
            conn, _TARGET, {"registry": repo.registry, "image": repo.image, "status": "available"}
        )
        if rows and rows[0][2] is not None:
            registry_id, patterns, image_id, quota = rows[0]
            return registry_id, image_id, json.loads(patterns) if patterns else [], quota
    registry_id, image_id = _ensure_image(conn, repo, lock=True)
    patterns = registry_patterns(conn, registry_id) if tagged else []
    if conn.dialect.name != "sqlite":  # counted in the PUT whatever the quota
        return registry_id, image_id, patterns, 0
    quota = conn.scalar(select(Registry.quota_bytes).where(Registry.id == registry_id))
    return registry_id, image_id, patterns, quota or 0


def _unlink_blob(conn: Connection, repo: RepositoryName, digest: str) -> bool:
    image_id = conn.scalar(_IMAGE_ID, _params(repo))
    if image_id is None:
        return False
    locks.images(conn, [image_id])
    linked = (ImageBlob.image_id == image_id, ImageBlob.digest == digest)
    conn.execute(candidates.of_image_blobs(conn.dialect.name, *linked))
    return bool(conn.execute(delete(ImageBlob).where(*linked)).rowcount)


def _delete_tag(conn: Connection, repo: RepositoryName, tag: str, immutable_too: bool) -> bool:
    image_id = conn.scalar(_IMAGE_ID, _params(repo))
    if image_id is None:
        return False
    # The registry too: deleting an image's last tag changes its registry's image count
    # (a trigger, migration 0009).
    locks.images_with_registries(conn, [image_id])
    if not immutable_too:
        refuse_deleting(conn, [image_id], [tag])
    return bool(conn.execute(delete(Tag).where(Tag.image_id == image_id, Tag.name == tag)).rowcount)


def _delete_manifest(
    conn: Connection, repo: RepositoryName, digest: str, immutable_too: bool
) -> bool:
    """Delete a manifest in the caller's transaction; the caller holds the locks of its
    registry and image (`locks.images_with_registries`) or this takes them."""
    image_id = conn.scalar(_IMAGE_ID, _params(repo))
    if image_id is None:
        return False
    locks.images_with_registries(conn, [image_id])
    manifest_id = conn.scalar(_MANIFEST_ID, {"image_id": image_id, "digest": digest})
    if manifest_id is None:
        return False
    if not immutable_too:
        refuse_deleting(conn, [image_id], None, manifest_id)
    lock_for_manifests(conn, [manifest_id])
    dialect = conn.dialect.name
    linked = (ImageBlob.image_id == image_id, ImageBlob.digest == digest)
    conn.execute(candidates.of_manifests(dialect, [manifest_id]))
    conn.execute(candidates.of_image_blobs(dialect, *linked))
    remove_manifests(conn, [manifest_id])
    conn.execute(delete(Manifest).where(Manifest.id == manifest_id))
    conn.execute(delete(ImageBlob).where(*linked))
    return True


def delete_unneeded_manifest(conn: Connection, repo: RepositoryName, digest: str) -> str:
    """Delete a manifest only while nothing needs it, in the caller's transaction: no tag
    points at it and no other manifest of the image names it (as an index's child or as a
    referrer's subject). Retention applies its plans through this, so that a tag pushed at
    the manifest since the plan keeps it. Returns `deleted`, `tagged`, `referenced` or `gone`."""
    image_id = conn.scalar(_IMAGE_ID, _params(repo))
    manifest_id = None
    if image_id is not None:
        manifest_id = conn.scalar(_MANIFEST_ID, {"image_id": image_id, "digest": digest})
    if manifest_id is None:
        return "gone"
    if conn.scalar(select(Tag.id).where(Tag.manifest_id == manifest_id).limit(1)) is not None:
        return "tagged"
    others = select(Manifest.id).where(Manifest.image_id == image_id, Manifest.id != manifest_id)
    child = select(ManifestReference.manifest_id).where(
        ManifestReference.manifest_id.in_(others),
        ManifestReference.kind == "manifest",
        ManifestReference.digest == digest,
    )
    referrer = others.where(Manifest.subject == digest)
    if conn.scalar(child.limit(1)) is not None or conn.scalar(referrer.limit(1)) is not None:
        return "referenced"
    _delete_manifest(conn, repo, digest, True)
    return "deleted"


def _insert_manifest(
    conn: Connection, image_id: int, digest: str, size: int, parsed: ParsedManifest
) -> int | None:
    """Insert the manifest's row and its references; None when the image holds it already."""
    dialect = conn.dialect.name
    inserted = execute_on_driver(
        conn,
        _insert_manifest_statement(dialect),
        {
            "m_image_id": image_id,
            "m_digest": digest,
            "m_media_type": parsed.media_type,
            "m_size": size,
            "m_artifact_type": parsed.artifact_type,
            "m_subject": str(parsed.subject.digest) if parsed.subject else None,
            "m_annotations": parsed.annotations,
            "m_created_at": utcnow(),
        },
    )
    if not inserted:
        return None
    manifest_id: int = inserted[0][0]
    references = [
        {
            "r_manifest_id": manifest_id,
            "r_position": i,
            "r_digest": str(d.digest),
            "r_kind": "foreign" if d.foreign else "blob",  # foreign: not held, not counted
            "r_size": d.size,
            "r_platform": None,
        }
        for i, d in enumerate(parsed.blobs)
    ] + [
        {
            "r_manifest_id": manifest_id,
            "r_position": len(parsed.blobs) + i,
            "r_digest": str(d.digest),
            "r_kind": "manifest",
            "r_size": d.size,
            "r_platform": d.platform,
        }
        for i, d in enumerate(parsed.children)
    ]
    if dialect == "sqlite":
        for reference in references:  # a few microseconds each on the driver
            execute_on_driver(conn, _INSERT_REFERENCE, reference)
    elif references:
        conn.execute(_INSERT_REFERENCE, references)  # one round trip
    return manifest_id
