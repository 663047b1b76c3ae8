"""The single access decision point: what may this principal do with that registry?

Every /v2 route, the token service, the management API, the console and every list ask here,
and nowhere else. The rule is SPEC §2, written once, in `_ROLE_RIGHTS` and `rights_of`:

    who                 private user registry   public user registry   platform registry
    anonymous           nothing                 view pull              view pull
    signed-in stranger  nothing                 view pull              view pull
    group guest         view pull               view pull              view pull
    group developer     + push delete           + push delete          view pull
    group owner         + admin                 + admin                view pull
    platform admin      everything              everything             everything

Membership grants access; the user recorded as a registry's owner (its creator) gets nothing
by that alone. A registry being deleted can only be viewed. A read-only personal access token
leaves view and pull; a registry token narrows /v2 actions to its `access` claim.

The same rule comes out in two forms that must never disagree (tests/api/test_policy_properties.py
checks they do not): `rights_of` for one registry row, and `visible` / `member_of`, the SQL
conditions every list filters with. What a caller may not view, it may not know exists either:
it answers NAME_UNKNOWN / NOT_FOUND, exactly as a registry that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, bindparam, false, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ociregistry.auth.generation import GenerationCache, current_generation
from ociregistry.auth.models import GroupMember
from ociregistry.auth.scopes import CATALOG, REGISTRY, REPOSITORY, Scope
from ociregistry.auth.tokens import TokenClaims
from ociregistry.db.database import Database
from ociregistry.db.models import Registry
from ociregistry.errors import AuthenticationRequired, Denied, NameInvalid, NameUnknown
from ociregistry.names import RepositoryName


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


ALL_ACTIONS = frozenset(Action)
CATALOG_SCOPE = "registry:catalog:*"
# The caller's rights on a registry, as the management API returns them (`"rights"`); admin is
# visibility, labels, remark, deleting the registry and its group's members.
VIEW, PULL, PUSH, DELETE, ADMIN = "view", "pull", "push", "delete", "admin"
ALL_RIGHTS = frozenset({VIEW, PULL, PUSH, DELETE, ADMIN})
RIGHTS_ORDER = (VIEW, PULL, PUSH, DELETE, ADMIN)
READER_RIGHTS = frozenset({VIEW, PULL})
_ROLE_RIGHTS = {
    "guest": READER_RIGHTS,
    "developer": frozenset({VIEW, PULL, PUSH, DELETE}),
    "owner": ALL_RIGHTS,
}
_ACTION_RIGHTS = {Action.PULL: PULL, Action.PUSH: PUSH, Action.DELETE: DELETE}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user (or anonymous), and what their credentials restrict them to."""

    username: str | None = None
    user_id: int | None = None
    is_admin: bool = False
    token: TokenClaims | None = None  # a registry token narrows access to its `access` claim
    read_only: bool = False  # a read-only personal access token
    presented_credentials: bool = False  # anonymous, but with a (token service) token
    csrf_token: str | None = None  # signed in through a console session cookie
    # The access generation read when these credentials were checked, this request: what the
    # policy's cache may trust without reading it again (auth/generation.py).
    generation: int | None = field(default=None, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.username is None


ANONYMOUS = Principal()


def _role_in_group(user: Any) -> Any:
    """The role of `user` (an id, or a bind parameter) in each registry's project group."""
    return (
        select(GroupMember.role)
        .where(GroupMember.group_id == Registry.project_group_id, GroupMember.user_id == user)
        .correlate(Registry)
        .scalar_subquery()
    )


_REGISTRY_ACCESS = select(
    Registry.kind, Registry.public, Registry.status, _role_in_group(bindparam("caller_id"))
).where(Registry.name == bindparam("registry"))


def scope_for(repo: RepositoryName, action: Action) -> str:
    """The scope a client should ask for; pushes ask for pull too, as docker does."""
    actions = "pull,push" if action is Action.PUSH else str(action)
    return f"repository:{repo.full}:{actions}"


def caller_role(principal: Principal) -> Any:
    """A column: the caller's role in each registry's project group (NULL when none)."""
    return _role_in_group(principal.user_id or -1)


def may_change(principal: Principal) -> bool:
    """Whether these credentials may change anything at all: not a read-only token."""
    return not principal.read_only


def is_platform_admin(principal: Principal) -> bool:
    """Platform admins manage users and see every group and registry (a read-only token of an
    admin still reads as one)."""
    return principal.is_admin


def ordered(rights: Iterable[str]) -> list[str]:
    """Rights in their natural order, as the API returns them."""
    return [right for right in RIGHTS_ORDER if right in rights]


class AccessPolicy:
    def __init__(self, db: Database, *, anonymous_access: bool = True) -> None:
        self.db = db
        self.anonymous_access = anonymous_access
        self._access_rows: GenerationCache[tuple[Any, ...] | None] = GenerationCache()

    # -- the rule, for one registry --------------------------------------------------------

    def _reads_public(self, principal: Principal) -> bool:
        return self.anonymous_access or not principal.anonymous

    def may_browse(self, principal: Principal) -> bool:
        """Whether the caller may read the public views (shared registries, platform images):
        anonymous callers only while anonymous access is on."""
        return self._reads_public(principal)

    def granted(
        self, principal: Principal, kind: str, public: bool, status: str, role: str | None
    ) -> frozenset[str]:
        """What SPEC §2 grants `principal` on a registry of this kind, visibility and status,
        given their role in its group: before any credential narrows it."""
        if principal.is_admin:
            rights = ALL_RIGHTS
        else:
            rights = frozenset()
            if (kind == "platform" or public) and self._reads_public(principal):
                rights = READER_RIGHTS
            if kind == "user" and role is not None:
                rights |= _ROLE_RIGHTS.get(role, frozenset())
        if rights and status != "available":
            rights = frozenset({VIEW})
        return rights

    def rights_of(
        self, principal: Principal, kind: str, public: bool, status: str, role: str | None
    ) -> frozenset[str]:
        """The caller's rights on a registry, as the management API and console see them:
        `granted`, narrowed by a read-only token. Empty: they may not know it exists."""
        rights = self.granted(principal, kind, public, status, role)
        if principal.read_only:
            rights &= READER_RIGHTS
        return rights

    async def _registry_access(self, principal: Principal, registry: str) -> Any:
        """The registry's kind, visibility and status, and the principal's role in its group;
        None when there is no such registry. Cached under the access generation
        (auth/generation.py), which every change to a registry or a membership raises."""
        generation = principal.generation
        if generation is None:
            generation = await current_generation(self.db)
        caller_id = principal.user_id or -1
        hit, row = self._access_rows.get((registry, caller_id), generation)
        if hit:
            return row
        row = await self.db.first(_REGISTRY_ACCESS, {"registry": registry, "caller_id": caller_id})
        self._access_rows.put((registry, caller_id), generation, row)
        return row

    async def registry_rights(self, principal: Principal, registry: str) -> frozenset[str]:
        """The caller's rights on `registry` (see `rights_of`); empty when there is none."""
        row = await self._registry_access(principal, registry)
        return frozenset() if row is None else self.rights_of(principal, *row)

    async def may_delete_immutable(self, principal: Principal, registry: str) -> bool:
        """Immutable tags protect against overwrites, not against their owners: the
        registry's owners and platform admins may delete them, developers may not."""
        return ADMIN in await self.registry_rights(principal, registry)

    # -- the rule, as SQL: what every list filters with --------------------------------------

    def administered(self, principal: Principal) -> ColumnElement[bool]:
        """Registries the caller administers (holds ADMIN on): every registry for a platform
        admin, else the user registries whose group the caller owns. The audit log shows a
        registry's events to these callers."""
        if principal.is_admin:
            return true()
        if principal.user_id is None:
            return false()
        return and_(Registry.kind == "user", caller_role(principal) == "owner")

    def member_of(self, principal: Principal) -> ColumnElement[bool]:
        """Registries the caller holds a role in through its project group: the caller's own
        user registries ("my registries"); every user registry for a platform admin."""
        if principal.is_admin:
            return Registry.kind == "user"
        if principal.user_id is None:
            return false()
        groups = select(GroupMember.group_id).where(GroupMember.user_id == principal.user_id)
        return and_(Registry.kind == "user", Registry.project_group_id.in_(groups))

    def visible(self, principal: Principal, right: str = VIEW) -> ColumnElement[bool]:
        """Registries on which the caller has `right` (VIEW or PULL), as a condition on
        `Registry`: exactly those for which `rights_of` holds `right`."""
        if right not in (VIEW, PULL):
            raise ValueError(f"lists filter by view or pull, not {right!r}")
        if principal.is_admin:
            condition: ColumnElement[bool] = true()
        else:
            readable = [self.member_of(principal)]
            if self._reads_public(principal):
                readable.append(or_(Registry.public.is_(True), Registry.kind == "platform"))
            condition = or_(*readable)
        if right != VIEW:  # a registry being deleted can only be viewed
            condition = and_(condition, Registry.status == "available")
        return condition

    # -- /v2 actions -------------------------------------------------------------------------

    async def registry_permissions(self, principal: Principal, registry: str) -> frozenset[str]:
        """The /v2 actions SPEC §2 lets `principal` take in `registry`, before credentials
        narrow them."""
        row = await self._registry_access(principal, registry)
        if row is None:
            return frozenset()
        rights = self.granted(principal, *row)
        return frozenset(action for action, right in _ACTION_RIGHTS.items() if right in rights)

    def narrow(
        self, principal: Principal, repo: RepositoryName, allowed: frozenset[str]
    ) -> frozenset[str]:
        """What the presented credentials leave of `allowed`."""
        if principal.token is not None:
            allowed = allowed & principal.token.actions("repository", repo.full)
        if principal.read_only:
            allowed = allowed & {Action.PULL}
        return allowed

    async def permissions(self, principal: Principal, repo: RepositoryName) -> frozenset[str]:
        allowed = await self.registry_permissions(principal, repo.registry)
        return self.narrow(principal, repo, allowed)

    async def allows(self, principal: Principal, repo: RepositoryName, action: Action) -> bool:
        return action in await self.permissions(principal, repo)

    async def require(self, principal: Principal, repo: RepositoryName, action: Action) -> None:
        """Return when allowed; otherwise raise what the caller may be told:
        401 (authenticate, or get a token with this scope), 404 (you cannot see this) or
        403 (you can see it but not do this)."""
        allowed = await self.registry_permissions(principal, repo.registry)
        if action in self.narrow(principal, repo, allowed):
            return
        scope = scope_for(repo, action)
        if principal.anonymous and not principal.presented_credentials:
            raise AuthenticationRequired("authentication required", scope)
        if principal.anonymous and Action.PULL not in allowed:
            raise AuthenticationRequired(
                "authentication required", scope, error="insufficient_scope"
            )
        if action in allowed and principal.read_only:  # no new token would help
            raise Denied(
                f"a read-only access token cannot {action} in {repo.full}",
                detail={"name": repo.full},
            )
        if action in allowed:  # the token, not the user, lacks the right: ask for a new one
            raise AuthenticationRequired(
                f"the token does not grant {action} on {repo.full}",
                scope,
                error="insufficient_scope",
            )
        if Action.PULL not in allowed:
            raise NameUnknown(f"repository {repo.full} is not known", detail={"name": repo.full})
        if principal.anonymous:  # an anonymous token: docker retries a bare 401 for a minute
            raise AuthenticationRequired(
                "authentication required", scope, error="insufficient_scope"
            )
        raise Denied(
            f"{principal.username} may not {action} in {repo.full}", detail={"name": repo.full}
        )

    async def grant(self, principal: Principal, scopes: list[Scope]) -> list[dict[str, Any]]:
        """The `access` claim of a registry token: of each scope asked for, what the policy
        allows (the token service's one question)."""
        access: list[dict[str, Any]] = []
        for scope in scopes:
            if scope.type == REPOSITORY:
                try:
                    repo = RepositoryName.parse(scope.name)
                except NameInvalid:
                    continue
                granted = scope.actions & await self.permissions(principal, repo)
                if granted:
                    access.append(Scope(REPOSITORY, repo.full, frozenset(granted)).as_claim())
            elif scope.type == REGISTRY and scope.name == CATALOG and "*" in scope.actions:
                access.append({"type": REGISTRY, "name": CATALOG, "actions": ["*"]})
        return access

    async def may_list_catalog(self, principal: Principal) -> bool:
        if principal.token is not None:
            return bool(principal.token.actions("registry", "catalog"))
        return True

    # -- the platform, groups and users --------------------------------------------------------

    def may_create_platform_registry(self, principal: Principal) -> bool:
        return is_platform_admin(principal) and may_change(principal)

    async def group_role(self, principal: Principal, group_id: int) -> str | None:
        if principal.user_id is None:
            return None
        async with self.db.read() as conn:
            return await conn.scalar(
                select(GroupMember.role).where(
                    GroupMember.group_id == group_id, GroupMember.user_id == principal.user_id
                )
            )

    async def may_view_group(self, principal: Principal, group_id: int) -> bool:
        """Members (and platform admins) see a group; to anyone else it does not exist."""
        return (
            is_platform_admin(principal) or await self.group_role(principal, group_id) is not None
        )

    async def may_create_in_group(self, principal: Principal, group_id: int) -> bool:
        """Developers and owners of a group create registries in it."""
        if principal.read_only or principal.anonymous:
            return False
        if principal.is_admin:
            return True
        return await self.group_role(principal, group_id) in ("owner", "developer")

    async def may_manage_group(self, principal: Principal, group_id: int) -> bool:
        """Owners (and platform admins) manage a group's members."""
        if principal.read_only or principal.anonymous:
            return False
        return principal.is_admin or await self.group_role(principal, group_id) == "owner"

    async def may_learn_registry_is_missing(self, principal: Principal, registry: str) -> bool:
        """Whether a push into the registry `registry` may be told that it does not exist and
        how to create it: only when it truly does not exist and the caller could create it
        (signed in with a credential that may change things). Anyone else learns nothing more
        than NAME_UNKNOWN, exactly as for a private registry."""
        if principal.anonymous or principal.read_only:
            return False
        return await self._registry_access(principal, registry) is None

    async def pullable_source(
        self, principal: Principal, candidates: list[RepositoryName]
    ) -> RepositoryName | None:
        """The first of `candidates` whose content `principal` may pull, for an automatic
        cross-repository mount (`?mount=` without `from`): None when there is none, and the
        caller is then told nothing about the others. A registry token cannot name a
        repository the client never heard of, so the caller's own rights decide here (the
        token only proves who they are); a read-only credential pushes nothing anyway."""
        for repo in candidates:
            if Action.PULL in await self.registry_permissions(principal, repo.registry):
                return repo
        return None

    def require_catalog(self, principal: Principal) -> None:
        """`GET /v2/_catalog` is for callers with credentials: without any, 401 and a challenge
        for `registry:catalog:*`, so a client that signs in only when challenged lists what
        its user may see, not just the public part. (Anonymous browsing of public content is
        the shared view of /api/v1.)"""
        if principal.anonymous and not principal.presented_credentials:
            raise AuthenticationRequired("authentication required", CATALOG_SCOPE)
