"""Project groups and their members. Membership in a registry's group is what grants access
to it (SPEC §2): guests pull, developers also push and delete, owners also administer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.sql.elements import ColumnElement

from ociregistry.auth.accounts import ROLES
from ociregistry.auth.models import GroupMember, ProjectGroup, User
from ociregistry.catalog.listings import (
    FIRST_PAGE,
    Key,
    Page,
    Total,
    among,
    bounded_total,
    keyset_fetch,
    keyset_order,
    name_contains,
    search_total,
    searched_first,
    searched_ids,
)
from ociregistry.db.database import Database
from ociregistry.db.models import new_resource_id, utcnow
from ociregistry.db.sql import dialect_insert
from ociregistry.errors import AccountError, AccountExists, AccountUnknown

_GROUP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


GROUP_SORTS: dict[str, Any] = {"name": ProjectGroup.name, "created_at": ProjectGroup.created_at}
# A member's username is kept beside the membership (usernames never change), so that a
# group's members by name are one range of the index (group, username) (migration 0017).
MEMBER_SORTS: dict[str, Any] = {"name": GroupMember.username, "username": GroupMember.username}


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
                    group_id=group_id,
                    user_id=owner_id,
                    username=owner,
                    role="owner",
                    created_at=utcnow(),
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
                group_id=group_id,
                user_id=user_id,
                username=username,
                role=role,
                created_at=utcnow(),
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

    @staticmethod
    def _view_query(user_id: int | None) -> Select[Any]:
        """Groups with their maintained member counts (migration 0017) and the role of
        `user_id` in each."""
        my_role = (
            select(GroupMember.role)
            .where(GroupMember.group_id == ProjectGroup.id, GroupMember.user_id == user_id)
            .correlate(ProjectGroup)
            .scalar_subquery()
        )
        return select(
            ProjectGroup.resource_id,
            ProjectGroup.name,
            ProjectGroup.description,
            ProjectGroup.member_count,
            my_role,
            ProjectGroup.created_at,
        )

    async def view(self, name: str, *, user_id: int | None) -> GroupView | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(self._view_query(user_id).where(ProjectGroup.name == name))
            ).first()
        return None if row is None else GroupView(*row)

    async def page(
        self,
        *,
        user_id: int | None,
        everything: bool,
        q: str | None = None,
        sort: str | None = None,
        page: Page = FIRST_PAGE,
    ) -> tuple[list[GroupView], Total, Key | None]:
        """Groups `user_id` belongs to (all of them with `everything`) whose name contains
        `q`, in the order of `sort`: an index range after the page's key (a member's groups
        come from the index of members by user); their number counted up to
        SEARCH_COUNT_LIMIT; the key of the last row when more follow."""
        url = self.db.url
        conditions: list[ColumnElement[bool]] = []
        if not everything:
            mine = select(GroupMember.group_id).where(GroupMember.user_id == user_id)
            conditions.append(ProjectGroup.id.in_(mine))
        chosen = select(ProjectGroup.id).where(*conditions)
        if q:
            named = name_contains(url, ProjectGroup.id, ProjectGroup.name, "groups_search", q)
            chosen = searched_first(url, chosen.where(named), ProjectGroup.id)
            conditions = [ProjectGroup.id.in_(chosen)]
        order = keyset_order(sort, GROUP_SORTS, "name", ProjectGroup.id)
        async with self.db.read(offload=True) as conn:
            total, matches = await search_total(conn, url, chosen, ProjectGroup.id, q)
            if matches is not None:  # the search's matches, all of them: sort only those
                conditions = [matches]
            query = self._view_query(user_id).where(*conditions)
            rows, following = await keyset_fetch(conn, query, order, page)
        return [GroupView(*row) for row in rows], total, following

    async def member_page(
        self,
        group: str,
        *,
        q: str | None = None,
        sort: str | None = None,
        page: Page = FIRST_PAGE,
    ) -> tuple[list[Member], Total, Key | None]:
        """One page of a group's members by name (whose name contains `q`), after the page's
        key; the total is the group's maintained member count, or a search's matches
        counted up to SEARCH_COUNT_LIMIT. A search finds the users of that name first
        (their trigram index), then their memberships."""
        order = keyset_order(sort, MEMBER_SORTS, "username", GroupMember.user_id)
        group_id = select(ProjectGroup.id).where(ProjectGroup.name == group).scalar_subquery()
        query = select(GroupMember.username, GroupMember.role).where(
            GroupMember.group_id == group_id
        )
        url = self.db.url
        users = select(User.id)
        if q:
            named = name_contains(url, User.id, User.username, "users_search", q)
            users = searched_first(url, users.where(named), User.id)
        async with self.db.read(offload=True) as conn:
            # The users of that name, read once from their trigram index (searched_ids):
            # the few memberships among them are both the total and the page, found by
            # user (`group_id + 0`: not a walk of the group's members in name order, which
            # a generic plan of PostgreSQL chose, reading all 100,000 of `crowd`'s).
            found = await searched_ids(conn, users) if q else None
            if found is not None:
                query = select(GroupMember.username, GroupMember.role).where(
                    GroupMember.group_id + 0 == group_id,
                    among(url, GroupMember.user_id, found),
                )
            elif q:
                query = query.where(GroupMember.user_id.in_(users))
            if q:
                total = await bounded_total(conn, query)
            else:
                count = await conn.scalar(
                    select(ProjectGroup.member_count).where(ProjectGroup.name == group)
                )
                total = Total(count or 0)
            rows, following = await keyset_fetch(conn, query, order, page)
        return [Member(*row) for row in rows], total, following

    async def list(self) -> list[str]:
        async with self.db.read() as conn:
            return list(
                (await conn.scalars(select(ProjectGroup.name).order_by(ProjectGroup.name))).all()
            )
