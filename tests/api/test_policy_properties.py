"""One access policy: for any users, groups, roles, owners and registries, and for every caller
(anonymous included), a registry appears in a list exactly when GET answers 200 for it, exactly
when the access policy grants its view, and the rights the console receives are the policy's.

The expected rights come from SPEC §2 itself, written out below as a tiny model, so the test
checks the policy against the SPEC and every list, page and /v2 route against the policy:
the /api/v1 lists (my registries, shared registries, platform registries, platform images, a
registry's images and an image's tags), `/v2/<name>/tags/list` and, for signed-in callers,
`/v2/_catalog` (anonymous callers must sign in for the catalog).

In-process (tests/support/inprocess.py): hundreds of requests an example, far too many for a server
process per example. Each example gets names of its own; the users are made once (argon2 is
slow by design) and what varies is everything around them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociregistry.auth.policy import ALL_RIGHTS, Principal, ordered
from support.inprocess import ADMIN_PASSWORD, InProcessRegistry, push_image
from support.oci import make_image
from support.pgcluster import chosen_database, fresh_database

USERS = ("ann", "bob", "cid", "dee")  # plain users; `admin` is the platform admin
PASSWORD = "property-password-1"
ROLES = (None, "guest", "developer", "owner")
ROLE_RIGHTS = {
    "guest": {"view", "pull"},
    "developer": {"view", "pull", "push", "delete"},
    "owner": set(ALL_RIGHTS),
}
IMAGE, TAG = "app", "v1"
PAGE = {"page_size": 100}
ON_POSTGRES = chosen_database() == "postgres"
PROPERTY_SETTINGS = settings(
    max_examples=6 if ON_POSTGRES else 20,  # each request costs more there: keep under a minute
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class RegistryPlan:
    kind: str  # user | platform
    public: bool
    group: int  # index into the world's groups (user registries)
    owner: str | None  # who created it (no access of its own: membership grants access)


@dataclass(frozen=True)
class World:
    roles: dict[tuple[str, int], str | None]  # (user, group) -> role
    registries: tuple[RegistryPlan, ...]
    groups: int


@st.composite
def worlds(draw: st.DrawFn) -> World:
    groups = draw(st.integers(1, 3))
    roles = {(user, g): draw(st.sampled_from(ROLES)) for user in USERS for g in range(groups)}
    plans = draw(
        st.lists(
            st.builds(
                RegistryPlan,
                kind=st.sampled_from(("user", "user", "platform")),
                public=st.booleans(),
                group=st.integers(0, groups - 1),
                owner=st.sampled_from((None, *USERS)),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return World(roles, tuple(plans), groups)


def expected_rights(caller: str | None, world: World, plan: RegistryPlan) -> set[str]:
    """SPEC §2, as a table lookup."""
    if caller == "admin":
        return set(ALL_RIGHTS)
    rights: set[str] = set()
    if plan.kind == "platform" or plan.public:
        rights |= {"view", "pull"}
    if plan.kind == "user" and caller is not None:
        role = world.roles[(caller, plan.group)]
        rights |= ROLE_RIGHTS.get(role or "", set())
    return rights


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    """On SQLite, or with OCIREGISTRY_TEST_DATABASE=postgres on a PostgreSQL of its own: the
    policy's SQL must mean the same on both."""
    with (
        fresh_database(chosen_database(), "policy") as url,
        InProcessRegistry(tmp_path_factory.mktemp("policy") / "data", database_url=url) as running,
    ):
        for user in USERS:
            running.run(running.services.accounts.create_user(user, PASSWORD))
        yield running


def auth_of(caller: str | None) -> tuple[str, str] | None:
    if caller is None:
        return None
    return (caller, ADMIN_PASSWORD if caller == "admin" else PASSWORD)


async def _build(registry: InProcessRegistry, world: World, prefix: str) -> dict[str, RegistryPlan]:
    """The world, under names starting with `prefix`: groups owned by admin with the drawn
    members, and registries each holding one tagged image."""
    services = registry.services
    groups = [f"{prefix}g{g}" for g in range(world.groups)]
    for name in groups:
        await services.groups.create(name, "admin")
    for (user, g), role in world.roles.items():
        if role is not None:
            await services.groups.set_member(groups[g], user, role)
    names: dict[str, RegistryPlan] = {}
    for number, plan in enumerate(world.registries):
        name = f"{prefix}r{number}"
        await services.registries.create(
            name,
            public=plan.public,
            kind=plan.kind,
            owner=plan.owner if plan.kind == "user" else None,
            group=groups[plan.group] if plan.kind == "user" else None,
        )
        await push_image(registry.client, f"{name}/{IMAGE}", make_image(name), TAG)
        names[name] = plan
    return names


async def _list(client: httpx.AsyncClient, path: str, prefix: str, auth: Any) -> set[str] | None:
    """Names in a registry list (None when the list itself is refused), with their rights."""
    response = await client.get(path, params={**PAGE, "q": prefix}, auth=auth)
    if response.status_code == 401:
        return None
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"]), "one page holds every item of an example"
    return {item["name"] for item in body["items"]}


async def _observe(
    registry: InProcessRegistry, caller: str | None, names: dict[str, RegistryPlan], prefix: str
) -> dict[str, Any]:
    """What `caller` sees of the example's registries, through every route."""
    client = registry.client
    auth = auth_of(caller)
    lists: dict[str, set[str] | None] = {}
    rights_in_lists: dict[str, list[str]] = {}
    for path in ("/api/v1/registries", "/api/v1/shared/registries", "/api/v1/platform/registries"):
        response = await client.get(path, params={**PAGE, "q": prefix}, auth=auth)
        if response.status_code == 401:
            assert caller is None and path == "/api/v1/registries", response.text
            lists[path] = None
            continue
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        lists[path] = {item["name"] for item in items}
        for item in items:
            rights_in_lists.setdefault(item["name"], item["rights"])
            assert rights_in_lists[item["name"]] == item["rights"], "lists disagree on rights"
    platform_images = await client.get(
        "/api/v1/platform/images", params={**PAGE, "q": prefix}, auth=auth
    )
    assert platform_images.status_code == 200, platform_images.text
    seen: dict[str, dict[str, Any]] = {}
    for name in names:
        got = await client.get(f"/api/v1/registries/{name}", auth=auth)
        images = await client.get(f"/api/v1/registries/{name}/images", params=PAGE, auth=auth)
        tags = await client.get(f"/api/v1/registries/{name}/images/{IMAGE}/-/tags", auth=auth)
        v2_tags = await client.get(f"/v2/{name}/{IMAGE}/tags/list", auth=auth)
        seen[name] = {
            "get": got.status_code,
            "rights": got.json()["rights"] if got.status_code == 200 else None,
            "images": [i["name"] for i in images.json()["items"]]
            if images.status_code == 200
            else images.status_code,
            "tags": [t["name"] for t in tags.json()["items"]]
            if tags.status_code == 200
            else tags.status_code,
            "v2_tags": v2_tags.status_code,
        }
    catalog = None
    if caller is not None:  # anonymous callers are asked to sign in for the catalog
        response = await client.get("/v2/_catalog", params={"n": 10_000}, auth=auth)
        assert response.status_code == 200, response.text
        catalog = {r.split("/")[0] for r in response.json()["repositories"] if r.startswith(prefix)}
    return {
        "lists": lists,
        "rights_in_lists": rights_in_lists,
        "platform_images": {i["registry"] for i in platform_images.json()["items"]},
        "routes": seen,
        "catalog": catalog,
    }


async def _policy_rights(registry: InProcessRegistry, caller: str | None, name: str) -> set[str]:
    if caller is None:
        principal = Principal()
    else:
        user = await registry.services.accounts.get_user(caller)
        assert user is not None
        principal = Principal(username=caller, user_id=user.id, is_admin=user.is_admin)
    return set(await registry.services.policy.registry_rights(principal, name))


@PROPERTY_SETTINGS
@given(world=worlds())
def test_lists_routes_and_rights_agree_with_the_policy(
    registry: InProcessRegistry, world: World
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    names = registry.run(_build(registry, world, prefix))
    for caller in (None, "admin", *USERS):
        seen = registry.run(_observe(registry, caller, names, prefix))
        listed: set[str] = set().union(*(found or set() for found in seen["lists"].values()))
        for name, plan in names.items():
            rights = expected_rights(caller, world, plan)
            assert registry.run(_policy_rights(registry, caller, name)) == rights, (
                caller,
                plan,
            )
            route = seen["routes"][name]
            view = "view" in rights
            where = f"{caller or 'anonymous'} on {name} ({plan})"
            # Appears in a list <=> GET answers 200 <=> the policy grants view.
            assert (name in listed) == view, where
            assert (route["get"] == 200) == view, where
            assert route["get"] in (200, 404), where  # invisible reads as missing
            if view:
                assert route["rights"] == ordered(rights), where
                assert seen["rights_in_lists"][name] == ordered(rights), where
                assert route["images"] == [IMAGE], where
                assert route["tags"] == [TAG], where
            else:
                assert route["images"] == 404 and route["tags"] == 404, where
            # "my registries": the user registries the caller holds a role in.
            mine = seen["lists"]["/api/v1/registries"]
            if mine is not None:
                member = caller == "admin" or (
                    plan.kind == "user" and world.roles[(caller, plan.group)] is not None
                )
                assert (name in mine) == (plan.kind == "user" and member), where
            # /v2: tags and the catalog follow pull.
            pull = "pull" in rights
            assert (route["v2_tags"] == 200) == pull, where
            if seen["catalog"] is not None:
                assert (name in seen["catalog"]) == pull, where
            assert (name in seen["platform_images"]) == (plan.kind == "platform" and pull), where


def test_the_owner_without_membership_sees_nothing(registry: InProcessRegistry) -> None:
    """The case the two copies of the rule disagreed on: a registry created for alice in a
    group she does not belong to is neither listed to her nor readable by her."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    world = World(
        roles={(user, 0): None for user in USERS},
        registries=(RegistryPlan("user", False, 0, "ann"),),
        groups=1,
    )
    names = registry.run(_build(registry, world, prefix))
    seen = registry.run(_observe(registry, "ann", names, prefix))
    (name,) = names
    assert seen["lists"]["/api/v1/registries"] == set()
    assert seen["routes"][name]["get"] == 404
    assert seen["routes"][name]["v2_tags"] == 404
