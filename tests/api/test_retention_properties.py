"""Random retention policies over random tag sets (issue 14, point 3): the plan, once applied,
keeps exactly the tags the rules keep, computed here by brute force from the pushes, and every
manifest a kept tag points at; a manifest whose every tag went is gone, and an untagged one
goes only with `delete_untagged`. The registry runs in-process (httpx's ASGI transport), on
SQLite or, with OCIREGISTRY_TEST_DATABASE=postgres, on a PostgreSQL of its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.inprocess import InProcessRegistry, push_image
from support.oci import make_image
from support.pgcluster import chosen_database, fresh_database

ON_POSTGRES = chosen_database() == "postgres"
IMAGES = ["app", "lib/core"]
TAGS = ["v1", "v2", "rc-1", "rc-2", "dev", "latest"]
_names = itertools.count()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    with (
        fresh_database(chosen_database(), "retention") as url,
        InProcessRegistry(
            tmp_path_factory.mktemp("retention") / "data", database_url=url
        ) as running,
    ):
        yield running


rule = st.fixed_dictionaries(
    {
        "images": st.sampled_from([["*"], ["app"], ["lib/*"], ["a*", "lib/core"]]),
        "exclude_images": st.sampled_from([[], ["app"]]),
        "tags": st.sampled_from([["*"], ["v*"], ["rc-?"], ["dev", "latest"]]),
        "exclude_tags": st.sampled_from([[], ["latest"], ["v[2]"]]),
        "keep": st.sampled_from(["latest_pushed", "pushed_within", "always", "latest_pulled"]),
        "count": st.integers(1, 3),
    }
).map(
    lambda r: (
        {k: v for k, v in r.items() if k != "count"}
        | ({"count": r["count"]} if r["keep"] in ("latest_pushed", "latest_pulled") else {})
        | ({"days": 1} if r["keep"] == "pushed_within" else {})
    )
)
push = st.tuples(st.sampled_from(IMAGES), st.sampled_from([*TAGS, None]), st.integers(0, 3))


@dataclass
class World:
    """What was pushed, in order: each tag's digest and the position of its last push."""

    tags: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    manifests: set[tuple[str, str]] = field(default_factory=set)


def _matches(name: str, include: list[str], exclude: list[str]) -> bool:
    return any(fnmatchcase(name, p) for p in include) and not any(
        fnmatchcase(name, p) for p in exclude
    )


def _expected_tags(world: World, rules: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Brute force: per rule and image, the tags it selects and keeps."""
    if not rules:
        return set(world.tags)
    kept: set[tuple[str, str]] = set()
    for r in rules:
        for image in IMAGES:
            chosen = [
                (tag, position)
                for (i, tag), (_, position) in world.tags.items()
                if i == image
                and _matches(image, r["images"], r["exclude_images"])
                and _matches(tag, r["tags"], r["exclude_tags"])
            ]
            if r["keep"] in ("always", "pushed_within"):  # everything was pushed just now
                kept |= {(image, tag) for tag, _ in chosen}
            elif r["keep"] == "latest_pushed":
                newest = sorted(chosen, key=lambda c: -c[1])[: r["count"]]
                kept |= {(image, tag) for tag, _ in newest}
            # latest_pulled: nothing was pulled, so it keeps nothing
    return kept


@settings(
    max_examples=8 if ON_POSTGRES else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pushes=st.lists(push, min_size=1, max_size=10),
    rules=st.lists(rule, max_size=3),
    delete_untagged=st.booleans(),
)
def test_applying_a_plan_keeps_exactly_what_the_rules_keep(
    registry: InProcessRegistry,
    pushes: list[tuple[str, str | None, int]],
    rules: list[dict[str, Any]],
    delete_untagged: bool,
) -> None:
    name = f"prop{next(_names)}"
    registry.run(_scenario(registry, name, pushes, rules, delete_untagged))


async def _scenario(
    registry: InProcessRegistry,
    name: str,
    pushes: list[tuple[str, str | None, int]],
    rules: list[dict[str, Any]],
    delete_untagged: bool,
) -> None:
    client = registry.client
    assert (await client.post("/api/v1/registries", json={"name": name})).status_code == 201
    world = World()
    for position, (image, tag, variant) in enumerate(pushes):
        content = make_image(f"{name}-{image}-{variant}")
        await push_image(client, f"{name}/{image}", content, tag or content.digest)
        world.manifests.add((image, content.digest))
        if tag is not None:
            world.tags[(image, tag)] = (content.digest, position)
    policy = {"rules": rules, "delete_untagged": delete_untagged}
    assert (await client.put(f"/api/v1/registries/{name}/retention", json=policy)).is_success
    planned = await client.post(f"/api/v1/registries/{name}/retention/plans")
    assert planned.status_code == 201, planned.text
    plan = planned.json()
    expected = _expected_tags(world, rules)
    said = {
        (item["image"], tag["name"])
        for item in plan["items"]
        for tag in item["tags"]
        if tag["verdict"] == "keep"
    }
    assert said == expected
    applied = await client.post(f"/api/v1/registries/{name}/retention/plans/{plan['id']}:apply")
    assert applied.status_code == 200, applied.text
    assert applied.json()["result"]["kept"] == []

    remaining: set[tuple[str, str]] = set()
    for image in IMAGES:
        response = await client.get(
            f"/api/v1/registries/{name}/images/{image}/-/tags", params={"page_size": 100}
        )
        if response.status_code == 200:
            remaining |= {(image, t["name"]) for t in response.json()["items"]}
    assert remaining == expected
    kept_digests = {(image, world.tags[(image, tag)][0]) for image, tag in expected}
    tagged_digests = {(image, digest) for (image, _), (digest, _) in world.tags.items()}
    for image, digest in world.manifests:
        found = await client.get(f"/v2/{name}/{image}/manifests/{digest}")
        if (image, digest) in kept_digests:
            should = True
        elif (image, digest) in tagged_digests:
            should = not rules  # its tags all went (unless retention is off)
        else:
            should = not (rules and delete_untagged)  # untagged from the start
        assert found.status_code == (200 if should else 404), (image, digest, plan)


def test_when_a_schedule_is_due() -> None:
    """Daily at HH:MM (UTC): at the first such time after the policy was set or last ran;
    every N hours: at once, then N hours after the last run."""
    from datetime import UTC, datetime, timedelta

    from ociregistry.catalog.retention import schedule_due

    set_at = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
    daily = {"daily_at": "03:00"}
    assert not schedule_due(daily, None, set_at, set_at + timedelta(minutes=59))
    assert schedule_due(daily, None, set_at, set_at + timedelta(hours=1))
    ran = set_at + timedelta(hours=1, seconds=5)
    assert not schedule_due(daily, ran, set_at, ran + timedelta(hours=23))
    assert schedule_due(daily, ran, set_at, ran + timedelta(hours=24))
    late = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)  # set after today's 03:00: tomorrow's
    assert not schedule_due(daily, None, late, late + timedelta(hours=22))
    assert schedule_due(daily, None, late, late + timedelta(hours=23))
    hourly = {"every_hours": 6}
    assert schedule_due(hourly, None, set_at, set_at)
    assert not schedule_due(hourly, set_at, set_at, set_at + timedelta(hours=5, minutes=59))
    assert schedule_due(hourly, set_at, set_at, set_at + timedelta(hours=6))
    assert not schedule_due(None, None, set_at, set_at + timedelta(days=9))
