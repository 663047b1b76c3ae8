"""Registries: the namespaces every image lives in (SPEC §1). Created before any push, and
deleted (SPEC §4) by one workflow that the management API and the CLI share."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ociregistry.auth.models import GroupMember, ProjectGroup, User
from ociregistry.catalog import candidates
from ociregistry.catalog.usage import lock_for_images, remove_images, remove_registry
from ociregistry.db import locks
from ociregistry.db.database import Database
from ociregistry.db.models import Image, Registry, Tag, new_resource_id, utcnow
from ociregistry.errors import (
    NameInvalid,
    NameUnknown,
    RegistryDeleting,
    RegistryExists,
    RegistryNotEmpty,
    RegistryNotFound,
)
from ociregistry.names import check_labels, check_registry_name, check_remark

DELETE_BATCH = 100  # images removed per transaction while a registry is being deleted
log = logging.getLogger("ociregistry.registries")


@dataclass(frozen=True, slots=True)
class RegistryInfo:
    id: int
    resource_id: str
    name: str
    kind: str
    public: bool
    status: str
    remark: str
    image_count: int
    created_at: datetime


class Registries:
    def __init__(self, db: Database, *, default_quota_bytes: int = 0) -> None:
        self.db = db
        self.default_quota_bytes = max(0, default_quota_bytes)
        self._finishing: set[asyncio.Task[None]] = set()

    async def create(
        self,
        name: str,
        *,
        public: bool = False,
        kind: str = "user",
        remark: str = "",
        owner: str | None = None,
        group: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> RegistryInfo:
        """A new registry of `group` (by default the owner's own group)."""
        check_registry_name(name)
        if kind not in ("user", "platform"):
            raise NameInvalid(f"kind must be 'user' or 'platform', not {kind!r}")
        now = utcnow()
        try:
            async with self.db.write() as conn:
                owner_id, group_id = await self._owner_and_group(conn, owner, group, kind)
                await conn.execute(
                    Registry.__table__.insert().values(
                        resource_id=new_resource_id("reg"),
                        name=name,
                        kind=kind,
                        public=public,
                        status="available",
                        remark=check_remark(remark),
                        labels=check_labels(labels or {}),
                        pull_count=0,
                        quota_bytes=self.default_quota_bytes,
                        owner_id=owner_id,
                        project_group_id=group_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise RegistryExists(
                f"the registry name {name!r} is taken; registry names are unique platform-wide",
                detail={"name": name},
            ) from None
        return await self.get(name)

    @staticmethod
    async def _owner_and_group(
        conn: AsyncConnection, owner: str | None, group: str | None, kind: str
    ) -> tuple[int | None, int | None]:
        """Platform registries belong to no group; a user registry to `group`, else to the
        owner's own group."""
        owner_id = group_id = None
        if owner is not None:
            owner_id = await conn.scalar(select(User.id).where(User.username == owner))
            if owner_id is None:
                raise NameUnknown(f"user {owner!r} does not exist", detail={"owner": owner})
        if group is not None:
            group_id = await conn.scalar(select(ProjectGroup.id).where(ProjectGroup.name == group))
            if group_id is None:
                raise NameUnknown(
                    f"project group {group!r} does not exist", detail={"project_group": group}
                )
        elif owner_id is not None and kind == "user":  # the owner's own group
            group_id = await conn.scalar(
                select(GroupMember.group_id)
                .where(GroupMember.user_id == owner_id, GroupMember.role == "owner")
                .order_by(GroupMember.group_id)
                .limit(1)
            )
        return owner_id, group_id

    async def get(self, name: str) -> RegistryInfo:
        for info in await self.list(name=name):
            return info
        raise NameUnknown(f"registry {name!r} does not exist", detail={"name": name})

    async def list(self, *, name: str | None = None) -> list[RegistryInfo]:
        image_count = (
            select(func.count(Image.id)).where(Image.registry_id == Registry.id).scalar_subquery()
        )
        query = select(
            Registry.id,
            Registry.resource_id,
            Registry.name,
            Registry.kind,
            Registry.public,
            Registry.status,
            Registry.remark,
            image_count,
            Registry.created_at,
        ).order_by(Registry.name)
        if name is not None:
            query = query.where(Registry.name == name)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [RegistryInfo(*row) for row in rows]

    # -- deletion (SPEC §4) --------------------------------------------------------------------

    async def delete(self, name: str, *, delete_images: bool = False, wait: bool = False) -> bool:
        """Delete the registry `name`: at once when it holds no tagged image; with
        `delete_images`, mark it `deleting` (no more pushes, the name stays taken) and remove
        its images in the background, or before returning with `wait`. True when it is gone,
        False while it is `deleting`. Only this registry is touched; registries left
        `deleting` by a crash are the background sweep's (`finish_deletions`). The caller
        has checked the right to do this."""
        async with self.db.write() as conn:
            found = (
                await conn.execute(
                    select(Registry.id, Registry.status).where(Registry.name == name)
                )
            ).first()
            if found is None:
                raise RegistryNotFound(f"registry {name!r} does not exist", detail={"name": name})
            registry_id, status = found
            if status == "deleting":
                raise RegistryDeleting(
                    f"registry {name!r} is already being deleted", detail={"name": name}
                )
            tagged = exists(select(Tag.id).where(Tag.image_id == Image.id))
            count = await conn.scalar(
                select(func.count(Image.id)).where(Image.registry_id == registry_id, tagged)
            )
            if count and not delete_images:
                raise RegistryNotEmpty(
                    f"registry {name!r} holds {count} images; delete them first or pass "
                    "delete_images=true",
                    detail={"name": name, "image_count": count},
                )
            has_images = await conn.scalar(
                select(Image.id).where(Image.registry_id == registry_id).limit(1)
            )
            if has_images is None:
                await conn.execute(delete(Registry).where(Registry.id == registry_id))
                return True
            await conn.execute(
                update(Registry)
                .where(Registry.id == registry_id)
                .values(status="deleting", updated_at=utcnow())
            )
        if wait or not count:  # only untagged leftovers: quick enough to finish now
            await self._finish(registry_id)
            return True
        task = asyncio.create_task(self._finish_logged(registry_id))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return False

    async def _finish(self, registry_id: int) -> None:
        """Remove the images of one registry being deleted, a batch per transaction, then the
        registry itself; safe to run twice at once and after a crash."""
        while not await self.db.transaction(lambda conn: _remove_batch(conn, registry_id)):
            await asyncio.sleep(0)  # let requests in between batches

    async def _finish_logged(self, registry_id: int) -> None:
        try:
            await self._finish(registry_id)
        except Exception:  # the background sweep takes it up again
            log.exception("deleting the images of registry %d failed; will retry", registry_id)

    async def finish_deletions(self) -> int:
        """The background sweep: finish every registry left `deleting` (by a crash, or by a
        worker that stopped); every worker may run it at once."""
        async with self.db.read() as conn:
            ids = list(
                (await conn.scalars(select(Registry.id).where(Registry.status == "deleting"))).all()
            )
        for registry_id in ids:
            await self._finish(registry_id)
        return len(ids)

    async def close(self) -> None:
        """Let deletions under way finish their current batch; the sweep does the rest."""
        for task in list(self._finishing):
            task.cancel()
        await asyncio.gather(*self._finishing, return_exceptions=True)


def _remove_batch(conn: Connection, registry_id: int) -> bool:
    """Remove a batch of the images of a registry being deleted, or the registry itself once
    it has none left (True: done). Locks in the order of db/database.py: the registry, its
    images by id, then the blob-level usage rows they hold."""
    locks.registries(conn, [registry_id], delete=True)
    batch = list(
        conn.scalars(
            select(Image.id)
            .where(Image.registry_id == registry_id)
            .order_by(Image.id)
            .limit(DELETE_BATCH)
        ).all()
    )
    if not batch:
        remove_registry(conn, registry_id)
        conn.execute(
            delete(Registry).where(Registry.id == registry_id, Registry.status == "deleting")
        )
        return True
    locks.images(conn, batch, delete=True)
    lock_for_images(conn, batch)
    remove_images(conn, batch)
    conn.execute(candidates.of_images(conn.dialect.name, batch))
    conn.execute(delete(Image).where(Image.id.in_(batch)))
    return False
