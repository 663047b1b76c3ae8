"""Registries: the namespaces every image lives in (SPEC §1). Created before any push."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ociregistry.auth.models import GroupMember, ProjectGroup, User
from ociregistry.catalog.database import Database
from ociregistry.catalog.models import Image, Registry, new_resource_id, utcnow
from ociregistry.errors import NameInvalid, NameUnknown, RegistryError
from ociregistry.names import check_labels, check_registry_name, check_remark


class RegistryExists(RegistryError):
    code, status = "REGISTRY_EXISTS", 409


class RegistryNotEmpty(RegistryError):
    code, status = "REGISTRY_NOT_EMPTY", 409


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
    def __init__(self, db: Database) -> None:
        self.db = db

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

    async def delete(self, name: str, *, delete_images: bool = False) -> None:
        """Delete a registry; one holding images only with `delete_images`."""
        async with self.db.write() as conn:
            registry_id = await conn.scalar(select(Registry.id).where(Registry.name == name))
            if registry_id is None:
                raise NameUnknown(f"registry {name!r} does not exist", detail={"name": name})
            images = await conn.scalar(
                select(func.count(Image.id)).where(Image.registry_id == registry_id)
            )
            if images and not delete_images:
                raise RegistryNotEmpty(
                    f"registry {name!r} holds {images} images; delete them first or pass "
                    "delete_images",
                    detail={"name": name, "image_count": images},
                )
            await conn.execute(delete(Image).where(Image.registry_id == registry_id))
            await conn.execute(delete(Registry).where(Registry.id == registry_id))
