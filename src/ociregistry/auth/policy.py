"""The single access decision point: may this principal do this to that repository?

Every /v2 route and every management route asks here, and nowhere else. The registry core
allows everything; the access-control work fills in SPEC §2 (roles, public and private
registries, platform registries) behind this same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ociregistry.errors import Denied
from ociregistry.names import RepositoryName


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a signed-in user, or anonymous (`username` None)."""

    username: str | None = None
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.username is None


ANONYMOUS = Principal()


class AccessPolicy:
    async def allows(self, principal: Principal, repo: RepositoryName, action: Action) -> bool:
        return True

    async def require(self, principal: Principal, repo: RepositoryName, action: Action) -> None:
        if not await self.allows(principal, repo, action):
            raise Denied(f"{action} access to {repo.full} is denied", detail={"name": repo.full})

    async def may_list_catalog(self, principal: Principal) -> bool:
        return True
