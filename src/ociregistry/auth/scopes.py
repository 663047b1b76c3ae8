"""Docker token-auth scopes: `repository:team-a/app:pull,push`, `registry:catalog:*`.

A scope asks for actions on one resource. The token service grants the intersection of what
was asked and what the policy allows; unknown resource types and actions are granted nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ociregistry.errors import ScopeInvalid

REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"
REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})

_SCOPE = re.compile(r"([a-z0-9]+)(?:\([a-z0-9]+\))?:([^:\s]+):([a-z*]+(?:,[a-z*]+)*)")


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def as_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scope(text: str) -> Scope:
    match = _SCOPE.fullmatch(text.strip())
    if match is None:
        raise ScopeInvalid(
            f"invalid scope {text[:200]!r}: expected type:name:action[,action], "
            "e.g. repository:team-a/app:pull,push",
            detail={"scope": text[:200]},
        )
    kind, name, actions = match.groups()
    wanted = frozenset(actions.split(","))
    if kind == REPOSITORY and "*" in wanted:
        wanted = (wanted - {"*"}) | REPOSITORY_ACTIONS
    return Scope(kind, name, wanted)


def parse_scopes(values: list[str]) -> list[Scope]:
    """Several `scope` parameters, each possibly holding several space-separated scopes;
    repeated resources are merged."""
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for value in values:
        for text in value.split():
            scope = parse_scope(text)
            key = (scope.type, scope.name)
            merged[key] = merged.get(key, frozenset()) | scope.actions
    return [Scope(kind, name, actions) for (kind, name), actions in merged.items()]
