"""Project groups and their members. Membership in a registry's group is what grants access
to it (SPEC §2): guests pull, developers also push and delete, owners also administer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from ociregistry.auth.accounts import ROLES
from ociregistry.auth.models import GroupMember, ProjectGroup, User
from ociregistry.db.database import Database
from ociregistry.db.models import new_resource_id, utcnow
from ociregistry.db.sql import dialect_insert
from ociregistry.errors import AccountError, AccountExists, AccountUnknown

_GROUP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


GROUP_SORTS: dict[str, Any] = {"name": ProjectGroup.name, "created_at": ProjectGroup.created_at}


@dataclass(frozen=True, slots=True)
class GroupView:
    resource_id: str
    name: str
    description: str
    member_count: int
    role: str | None  # the viewer's role
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    username: str
    role: str


class Groups:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, owner: str, description: str = "") -> int:
        if _GROUP_NAME.fullmatch(name) is None:
            raise AccountError(
                f"invalid project group name {name[:80]!r}: use 1-64 characters of a-z 0-9 . _ -",
                detail={"field": "name"},
            )
        async with self.db.write() as conn:
            owner_id = await conn.scalar(select(User.id).where(User.username == owner))
            if owner_id is None:
                raise AccountUnknown(f"user {owner!r} does not exist")
            if await conn.scalar(select(ProjectGroup.id).where(ProjectGroup.name == name)):
                raise AccountExists(f"project group {name!r} exists", detail={"name": name})
            result = await conn.execute(
                ProjectGroup.__table__.insert().values(
                    resource_id=new_resource_id("grp"),
                    name=name,
                    description=description,
                    created_at=utcnow(),
                )
            )
            group_id = result.inserted_primary_key[0]
            await conn.execute(
                GroupMember.__table__.insert().values(
                    group_id=group_id, user_id=owner_id, role="owner", created_at=utcnow()
                )
            )
        return group_id

    async def group_id(self, name: str) -> int | None:
        async with self.db.read() as conn:
            return await conn.scalar(select(ProjectGroup.id).where(ProjectGroup.name == name))

    async def set_member(self, group: str, username: str, role: str) -> None:
        if role not in ROLES:
            raise AccountError(
                f"role must be one of {', '.join(ROLES)}, not {role!r}", detail={"field": "role"}
            )
        async with self.db.write() as conn:
            group_id = await conn.scalar(select(ProjectGroup.id).where(ProjectGroup.name == group))
            user_id = await conn.scalar(select(User.id).where(User.username == username))
            if group_id is None or user_id is None:
                raise AccountUnknown(f"no project group {group!r} or no user {username!r}")
            upsert = dialect_insert(conn, GroupMember.__table__).values(
                group_id=group_id, user_id=user_id, role=role, created_at=utcnow()
            )
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["group_id", "user_id"], set_={"role": role}
                )
            )

    async def remove_member(self, group: str, username: str) -> None:
        async with self.db.write() as conn:
            group_id = await conn.scalar(select(ProjectGroup.id).where(ProjectGroup.name == group))
            user_id = await conn.scalar(select(User.id).where(User.username == username))
            result = await conn.execute(
                delete(GroupMember).where(
                    GroupMember.group_id == group_id, GroupMember.user_id == user_id
                )
            )
        if not result.rowcount:
            raise AccountUnknown(f"{username!r} is not a member of {group!r}")

    async def members(self, group: str) -> list[Member]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(User.username, GroupMember.role)
                    .join(GroupMember, GroupMember.user_id == User.id)
                    .join(ProjectGroup, ProjectGroup.id == GroupMember.group_id)
                    .where(ProjectGroup.name == group)
                    .order_by(User.username)
                )
            ).all()
        return [Member(*row) for row in rows]

    async def views(
        self,
        *,
        user_id: int | None,
        everything: bool,
        q: str | None = None,
        name: str | None = None,
        order: list[Any] | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[GroupView], int]:
        """Groups `user_id` belongs to (all of them with `everything`), with member counts
        and the user's role in each."""
        member_count = (
            select(func.count())
            .where(GroupMember.group_id == ProjectGroup.id)
            .correlate(ProjectGroup)
            .scalar_subquery()
        )
        my_role = (
            select(GroupMember.role)
            .where(GroupMember.group_id == ProjectGroup.id, GroupMember.user_id == user_id)
            .correlate(ProjectGroup)
            .scalar_subquery()
        )
        query = select(
            ProjectGroup.resource_id,
            ProjectGroup.name,
            ProjectGroup.description,
            member_count,
            my_role,
            ProjectGroup.created_at,
        )
        if not everything:
            query = query.where(my_role.is_not(None))
        if q:
            query = query.where(ProjectGroup.name.contains(q, autoescape=True))
        if name is not None:
            query = query.where(ProjectGroup.name == name)
        async with self.db.read(offload=True) as conn:
            total = await conn.scalar(select(func.count()).select_from(query.subquery()))
            rows = (
                await conn.execute(
                    query.order_by(*(order or [ProjectGroup.name]), ProjectGroup.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return [GroupView(*row) for row in rows], total or 0

    async def list(self) -> list[str]:
        async with self.db.read() as conn:
            return list(
                (await conn.scalars(select(ProjectGroup.name).order_by(ProjectGroup.name))).all()
            )
