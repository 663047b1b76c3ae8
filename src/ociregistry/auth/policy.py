"""The single access decision point: may this principal do this to that repository?

Every /v2 route, the token service and the management API ask here, and nowhere else. The
rule is SPEC §2:

    who                 private user registry   public user registry   platform registry
    anonymous           nothing                 pull                   pull
    signed-in stranger  nothing                 pull                   pull
    group guest         pull                    pull                   pull
    group developer     pull push delete        pull push delete       pull
    group owner         pull push delete        pull push delete       pull
    platform admin      everything              everything             everything

A registry token or a read-only personal access token can only narrow this further. What a
caller may not pull, it may not know exists either: it answers NAME_UNKNOWN, exactly as a
registry that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, bindparam, select

from ociregistry.auth.models import GroupMember
from ociregistry.auth.tokens import TokenClaims
from ociregistry.catalog.database import Database
from ociregistry.catalog.models import Registry
from ociregistry.errors import Denied, NameUnknown, Unauthorized
from ociregistry.names import RepositoryName


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


ALL_ACTIONS = frozenset(Action)
CATALOG_SCOPE = "registry:catalog:*"
VIEW, PUSH, DELETE, ADMINISTER = "view", "push", "delete", "administer"
MANAGEMENT_RIGHTS = frozenset({VIEW, PUSH, DELETE, ADMINISTER})
_ROLE_RIGHTS = {
    "guest": frozenset({VIEW}),
    "developer": frozenset({VIEW, PUSH, DELETE}),
    "owner": MANAGEMENT_RIGHTS,
}
_ROLE_ACTIONS = {
    "guest": frozenset({Action.PULL}),
    "developer": ALL_ACTIONS,
    "owner": ALL_ACTIONS,
}


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

    @property
    def anonymous(self) -> bool:
        return self.username is None


ANONYMOUS = Principal()


class AuthenticationRequired(Unauthorized):
    """401: the caller must (re-)authenticate for `scope`; the HTTP layer adds the challenge."""

    def __init__(self, message: str, scope: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
        self.error = error


_REGISTRY_ACCESS = (
    select(Registry.kind, Registry.public, Registry.status, GroupMember.role)
    .select_from(Registry)
    .outerjoin(
        GroupMember,
        and_(
            GroupMember.group_id == Registry.project_group_id,
            GroupMember.user_id == bindparam("user_id"),
        ),
    )
    .where(Registry.name == bindparam("registry"))
)


def scope_for(repo: RepositoryName, action: Action) -> str:
    """The scope a client should ask for; pushes ask for pull too, as docker does."""
    actions = "pull,push" if action is Action.PUSH else str(action)
    return f"repository:{repo.full}:{actions}"


class AccessPolicy:
    def __init__(self, db: Database, *, anonymous_access: bool = True) -> None:
        self.db = db
        self.anonymous_access = anonymous_access

    async def _registry_access(self, principal: Principal, registry: str) -> Any:
        """The registry's kind, visibility and status, and the principal's role in its group;
        None when there is no such registry."""
        async with self.db.read() as conn:
            result = await conn.execute(
                _REGISTRY_ACCESS, {"registry": registry, "user_id": principal.user_id or -1}
            )
            return result.first()

    async def registry_permissions(self, principal: Principal, registry: str) -> frozenset[str]:
        """What SPEC §2 lets `principal` do in `registry`, before any token narrows it."""
        row = await self._registry_access(principal, registry)
        if row is None:
            return frozenset()
        kind, public, status, role = row
        if status != "available":
            return frozenset()
        if principal.is_admin:
            return ALL_ACTIONS
        allowed: frozenset[str] = frozenset()
        if (kind == "platform" or public) and (self.anonymous_access or not principal.anonymous):
            allowed = frozenset({Action.PULL})
        if kind == "user" and role is not None:
            allowed |= _ROLE_ACTIONS.get(role, frozenset())
        return allowed

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

    # -- the management API ------------------------------------------------------------------

    async def registry_rights(self, principal: Principal, registry: str) -> frozenset[str] | None:
        """What the console lets `principal` do with `registry`: a subset of `VIEW`, `PUSH`,
        `DELETE` and `ADMINISTER` (visibility, labels, remark, deletion, members); None when
        they may not even know it exists. A registry being deleted can only be viewed."""
        row = await self._registry_access(principal, registry)
        if row is None:
            return None
        kind, public, status, role = row
        if principal.is_admin:
            rights = MANAGEMENT_RIGHTS
        else:
            rights = frozenset()
            if (kind == "platform" or public) and (
                self.anonymous_access or not principal.anonymous
            ):
                rights = frozenset({VIEW})
            if kind == "user" and role is not None:
                rights |= _ROLE_RIGHTS.get(role, frozenset())
        if not rights:
            return None
        if status != "available" or principal.read_only:
            rights &= {VIEW}
        return rights

    def may_create_platform_registry(self, principal: Principal) -> bool:
        return principal.is_admin and not principal.read_only

    async def group_role(self, principal: Principal, group_id: int) -> str | None:
        if principal.user_id is None:
            return None
        async with self.db.read() as conn:
            return await conn.scalar(
                select(GroupMember.role).where(
                    GroupMember.group_id == group_id, GroupMember.user_id == principal.user_id
                )
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

    async def may_list_catalog(self, principal: Principal) -> bool:
        if principal.token is not None:
            return bool(principal.token.actions("registry", "catalog"))
        return True
