"""Retention you can trust (issue 14, point 3), against a real server: the Harbor failure modes
the issue names (a dry run that deletes, a tag deletion that takes every tag sharing its
digest, a plan applied over tags pushed since, immutable tags), indexes, who may do it, bad
input that changes nothing, and the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authtools import add_user, cli
from support.oci import OCI_INDEX, digest_of, make_image, make_index, push_image, put_manifest
from support.server import RunningServer

PASSWORD = "retention-password-1"


def _base(registry: str) -> str:
    return f"/api/v1/registries/{registry}/retention"


def _set_policy(client: httpx.Client, registry: str, **policy: Any) -> dict[str, Any]:
    response = client.put(_base(registry), json=policy)
    assert response.status_code == 200, response.text
    return response.json()


def _plan(client: httpx.Client, registry: str) -> dict[str, Any]:
    response = client.post(f"{_base(registry)}/plans")
    assert response.status_code == 201, response.text
    return response.json()


def _apply(client: httpx.Client, registry: str, plan_id: int) -> dict[str, Any]:
    response = client.post(f"{_base(registry)}/plans/{plan_id}:apply")
    assert response.status_code == 200, response.text
    return response.json()


def _tags(client: httpx.Client, repo: str) -> dict[str, str]:
    registry, image = repo.split("/", 1)
    response = client.get(
        f"/api/v1/registries/{registry}/images/{image}/-/tags", params={"page_size": 100}
    )
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return {tag["name"]: tag["digest"] for tag in response.json()["items"]}


def _verdicts(plan: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        tag["name"]: (tag["verdict"], tag["reason"])
        for item in plan["items"]
        for tag in item["tags"]
    }


def test_a_dry_run_deletes_nothing_and_says_what_apply_will_do(
    client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/app"
    images = {f"1.{i}": make_image(f"{registry}-{i}") for i in range(4)}
    for tag, image in images.items():
        push_image(client, repo, image, tag)
    policy = _set_policy(
        client, registry, rules=[{"keep": "latest_pushed", "count": 2, "tags": ["1.*"]}]
    )
    assert policy["rules"][0]["images"] == ["*"] and policy["updated_by"] == "admin"

    plan = _plan(client, registry)
    assert plan["status"] == "planned" and plan["trigger"] == "manual"
    assert _verdicts(plan) == {
        "1.0": ("delete", "no_rule"),
        "1.1": ("delete", "no_rule"),
        "1.2": ("keep", "rule"),
        "1.3": ("keep", "rule"),
    }
    assert plan["summary"] == {
        "manifests_kept": 2,
        "manifests_deleted": 2,
        "tags_kept": 2,
        "tags_deleted": 2,
    }
    # Nothing changed: every tag and manifest is still there, and the plan is stored.
    assert _tags(client, repo) == {tag: image.digest for tag, image in images.items()}
    for image in images.values():
        assert client.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 200
    stored = client.get(f"{_base(registry)}/plans/{plan['id']}")
    assert stored.status_code == 200 and stored.json()["items"] == plan["items"]
    listed = client.get(f"{_base(registry)}/plans").json()
    assert [p["id"] for p in listed["items"]] == [plan["id"]]

    applied = _apply(client, registry, plan["id"])
    assert applied["status"] == "applied" and applied["applied_by"] == "admin"
    assert applied["result"] == {"tags_deleted": 2, "manifests_deleted": 2, "kept": []}
    assert _tags(client, repo) == {"1.2": images["1.2"].digest, "1.3": images["1.3"].digest}
    assert client.get(f"/v2/{repo}/manifests/{images['1.0'].digest}").status_code == 404


def test_deleting_one_tag_keeps_the_others_sharing_its_digest(
    client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/app"
    shared = make_image(f"{registry}-shared")
    for tag in ("stable", "old-1", "old-2"):
        push_image(client, repo, shared, tag)
    _set_policy(client, registry, rules=[{"keep": "always", "tags": ["stable"]}])
    plan = _plan(client, registry)
    (item,) = plan["items"]  # one manifest, its three tags together
    assert item["digest"] == shared.digest
    assert (item["verdict"], item["reason"]) == ("keep", "tag_kept")
    assert [t["name"] for t in item["tags"]] == ["old-1", "old-2", "stable"]
    assert _verdicts(plan)["stable"] == ("keep", "rule")

    applied = _apply(client, registry, plan["id"])
    assert applied["result"]["tags_deleted"] == 2
    assert applied["result"]["manifests_deleted"] == 0
    assert _tags(client, repo) == {"stable": shared.digest}
    assert client.get(f"/v2/{repo}/manifests/stable").status_code == 200


def test_a_tag_moved_or_pushed_after_the_plan_is_kept_and_reported(
    client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/app"
    first, second, third, newer = (make_image(f"{registry}-{i}") for i in range(4))
    push_image(client, repo, first, "moves")
    push_image(client, repo, second, "repushed")
    push_image(client, repo, third, "goes")
    _set_policy(client, registry, rules=[{"keep": "always", "tags": ["release-*"]}])
    plan = _plan(client, registry)
    assert {name for name, (verdict, _) in _verdicts(plan).items() if verdict == "delete"} == {
        "moves",
        "repushed",
        "goes",
    }
    push_image(client, repo, newer, "moves")  # moved to another manifest
    assert put_manifest(client, repo, "repushed", second.manifest).status_code == 201  # pushed
    push_image(client, repo, first, "newcomer")  # a tag the plan never saw, on a planned digest

    applied = _apply(client, registry, plan["id"])
    kept = {k.get("tag") or k.get("digest"): k["reason"] for k in applied["result"]["kept"]}
    assert kept == {
        "moves": "moved",
        "repushed": "pushed_since",
        first.digest: "tagged",  # a tag points at it now: the manifest stays
        second.digest: "tagged",
    }
    assert applied["result"]["tags_deleted"] == 1
    assert _tags(client, repo) == {
        "moves": newer.digest,
        "repushed": second.digest,
        "newcomer": first.digest,
    }
    assert client.get(f"/v2/{repo}/manifests/{third.digest}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{first.digest}").status_code == 200


def test_immutable_tags_are_skipped_unless_the_policy_opts_in(
    client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/app"
    patched = client.patch(f"/api/v1/registries/{registry}", json={"immutable_tags": ["v*"]})
    assert patched.status_code == 200, patched.text
    push_image(client, repo, make_image(f"{registry}-v"), "v1.0")
    push_image(client, repo, make_image(f"{registry}-d"), "dev-1")
    _set_policy(client, registry, rules=[{"keep": "always", "tags": ["keep-*"]}])
    plan = _plan(client, registry)
    assert _verdicts(plan) == {"v1.0": ("keep", "immutable"), "dev-1": ("delete", "no_rule")}
    _apply(client, registry, plan["id"])
    assert set(_tags(client, repo)) == {"v1.0"}

    _set_policy(
        client, registry, rules=[{"keep": "always", "tags": ["keep-*"]}], include_immutable=True
    )
    plan = _plan(client, registry)
    assert _verdicts(plan) == {"v1.0": ("delete", "no_rule")}
    _apply(client, registry, plan["id"])
    assert _tags(client, repo) == {}


def test_an_index_keeps_its_children_and_untagged_manifests_go_only_when_asked(
    client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/app"
    children = [make_image(f"{registry}-c{i}") for i in range(2)]
    for child in children:
        push_image(client, repo, child)
    index = make_index(children)
    assert put_manifest(client, repo, "multi", index, OCI_INDEX).status_code == 201
    loose = make_image(f"{registry}-loose")
    push_image(client, repo, loose)  # untagged, no index names it
    _set_policy(client, registry, rules=[{"keep": "always"}])
    plan = _plan(client, registry)
    reasons = {item["digest"]: (item["verdict"], item["reason"]) for item in plan["items"]}
    assert reasons == {
        digest_of(index): ("keep", "tag_kept"),
        children[0].digest: ("keep", "needed"),
        children[1].digest: ("keep", "needed"),
        loose.digest: ("keep", "untagged"),
    }
    _set_policy(client, registry, rules=[{"keep": "always", "tags": ["x"]}], delete_untagged=True)
    plan = _plan(client, registry)
    assert {item["verdict"] for item in plan["items"]} == {"delete"}
    applied = _apply(client, registry, plan["id"])
    assert applied["result"] == {"tags_deleted": 1, "manifests_deleted": 4, "kept": []}
    for digest in (digest_of(index), loose.digest, *(c.digest for c in children)):
        assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rules": [{"keep": "latest_pushed", "count": -1}]}, "rules[0].count"),
        ({"rules": [{"keep": "latest_pushed"}]}, "rules[0].count"),
        ({"rules": [{"keep": "pushed_within", "days": 0}]}, "rules[0].days"),
        ({"rules": [{"keep": "always", "tags": ["v[1"]}]}, "rules[0].tags"),
        ({"rules": [{"keep": "always", "tags": ["a b"]}]}, "rules[0].tags"),
        ({"rules": [{"keep": "always", "images": ["UPPER"]}]}, "rules[0].images"),
        ({"rules": [{"keep": "forever"}]}, "rules[0].keep"),
        ({"rules": [{"keep": "always", "colour": 1}]}, "rules[0].colour"),
        ({"rules": "all"}, "rules"),
        ({"schedule": {"daily_at": "25:00"}}, "schedule.daily_at"),
        ({"schedule": {"every_hours": 0}}, "schedule.every_hours"),
        ({"delete_untagged": "yes"}, "delete_untagged"),
        ({"bogus": True}, "bogus"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field_and_changes_nothing(
    client: httpx.Client, registry: str, body: dict[str, Any], field: str
) -> None:
    before = _set_policy(client, registry, rules=[{"keep": "always"}])
    response = client.put(_base(registry), json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["detail"]["field"] == field
    assert client.get(_base(registry)).json() == before


def test_unknown_and_applied_plans_get_404_and_409(client: httpx.Client, registry: str) -> None:
    push_image(client, f"{registry}/app", make_image(f"{registry}-a"), "a")
    for plan_id in ("999999", "abc", "0"):
        response = client.get(f"{_base(registry)}/plans/{plan_id}")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "NOT_FOUND"
        assert client.post(f"{_base(registry)}/plans/{plan_id}:apply").status_code == 404
    _set_policy(client, registry, rules=[{"keep": "always", "tags": ["none"]}])
    plan = _plan(client, registry)
    _apply(client, registry, plan["id"])
    push_image(client, f"{registry}/app", make_image(f"{registry}-a"), "a")  # back again
    again = client.post(f"{_base(registry)}/plans/{plan['id']}:apply")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "PLAN_ALREADY_APPLIED"
    assert _tags(client, f"{registry}/app") == {"a": make_image(f"{registry}-a").digest}
    # A plan of another registry is not this registry's.
    assert client.get(f"/api/v1/registries/{registry}x/retention").status_code == 404


@pytest.fixture
def grouped(server: RunningServer, client: httpx.Client, registry_name: str) -> Iterator[str]:
    """A registry in a group with a developer and a guest, and an outsider."""
    group = f"g-{registry_name}"
    assert client.post("/api/v1/project-groups", json={"name": group}).status_code == 201
    created = client.post(
        "/api/v1/registries", json={"name": registry_name, "project_group": group}
    )
    assert created.status_code == 201, created.text
    for role in ("developer", "guest", "outsider"):
        add_user(server, f"{role}-{registry_name}", PASSWORD)
        if role != "outsider":
            member = client.put(
                f"/api/v1/project-groups/{group}/members/{role}-{registry_name}",
                json={"role": role},
            )
            assert member.status_code == 200, member.text
    yield registry_name


def test_only_owners_and_admins_set_policies_plan_and_apply(
    server: RunningServer, client: httpx.Client, grouped: str
) -> None:
    push_image(client, f"{grouped}/app", make_image(f"{grouped}-a"), "a")
    _set_policy(client, grouped, rules=[{"keep": "always", "tags": ["none"]}])
    plan = _plan(client, grouped)
    for role, seen in (("developer", 403), ("guest", 403), ("outsider", 404)):
        with httpx.Client(
            base_url=server.url, auth=(f"{role}-{grouped}", PASSWORD), timeout=60
        ) as other:
            assert other.get(_base(grouped)).status_code == (200 if seen == 403 else 404)
            attempts = [
                other.put(_base(grouped), json={"rules": []}),
                other.post(f"{_base(grouped)}/plans"),
                other.post(f"{_base(grouped)}/plans/{plan['id']}:apply"),
            ]
            assert [r.status_code for r in attempts] == [seen] * 3, role
    assert client.get(f"{_base(grouped)}/plans/{plan['id']}").json()["status"] == "planned"
    assert set(_tags(client, f"{grouped}/app")) == {"a"}
    # The group's owner may: make the developer an owner.
    client.put(
        f"/api/v1/project-groups/g-{grouped}/members/developer-{grouped}", json={"role": "owner"}
    )
    with httpx.Client(
        base_url=server.url, auth=(f"developer-{grouped}", PASSWORD), timeout=60
    ) as owner:
        assert owner.post(f"{_base(grouped)}/plans/{plan['id']}:apply").status_code == 200
    assert _tags(client, f"{grouped}/app") == {}


def test_policy_changes_and_applied_plans_are_in_the_audit_log(
    client: httpx.Client, registry: str
) -> None:
    push_image(client, f"{registry}/app", make_image(f"{registry}-a"), "a")
    _set_policy(client, registry, rules=[{"keep": "always", "tags": ["none"]}])
    plan = _plan(client, registry)
    _apply(client, registry, plan["id"])
    # An event is recorded once its response has gone: wait for the last one.
    deadline = time.monotonic() + 30  # a bound on waiting, not an assertion on speed
    while True:
        events = client.get("/api/v1/audit-log", params={"registry": registry}).json()["items"]
        by_action = {event["action"]: event for event in events}
        if "retention.apply" in by_action or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert by_action["retention.policy"]["outcome"] == "success"
    assert by_action["retention.policy"]["detail"]["policy"]["rules"][0]["tags"] == ["none"]
    assert by_action["retention.plan"]["detail"]["plan"] == plan["id"]
    applied = by_action["retention.apply"]
    assert applied["actor"] == "admin"
    assert applied["detail"] == {
        "plan": plan["id"],
        "tags_deleted": 1,
        "manifests_deleted": 1,
        "kept_since_plan": 0,
    }


def test_the_cli_sets_plans_shows_and_applies_as_the_api_does(
    server: RunningServer, client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/app"
    for i in range(3):
        push_image(client, repo, make_image(f"{registry}-{i}"), f"1.{i}")
    policy = json.dumps({"rules": [{"keep": "latest_pushed", "count": 1}]})
    cli(server, "retention", "set", registry, "-", stdin=policy)
    assert client.get(_base(registry)).json()["updated_by"] == "cli"
    table = cli(server, "retention", "plan", registry)
    header, *rows = table.splitlines()
    assert header.split() == ["IMAGE", "DIGEST", "TAG", "VERDICT", "REASON", "RULE", "OUTCOME"]
    tag_rows = {row.split()[2]: row.split()[3:5] for row in rows if row.startswith("app ")}
    assert tag_rows["1.2"] == ["keep", "rule"] and tag_rows["1.0"] == ["delete", "no_rule"]
    plan = json.loads(cli(server, "retention", "plans", registry, "--json"))[0]
    assert _tags(client, repo).keys() == {"1.0", "1.1", "1.2"}  # a dry run
    applied = json.loads(cli(server, "retention", "apply", registry, str(plan["id"]), "--json"))
    assert applied["result"]["tags_deleted"] == 2
    assert _tags(client, repo).keys() == {"1.2"}
    events = client.get("/api/v1/audit-log", params={"registry": registry, "actor": "cli"})
    assert {e["action"] for e in events.json()["items"]} == {"retention.policy", "retention.apply"}


def test_the_most_recently_pulled_are_kept(client: httpx.Client, registry: str) -> None:
    repo = f"{registry}/app"
    for i in range(3):
        push_image(client, repo, make_image(f"{registry}-{i}"), f"1.{i}")
    assert client.get(f"/v2/{repo}/manifests/1.0").status_code == 200  # a pull of the oldest
    registry_name, image = repo.split("/", 1)

    def pulled() -> bool:
        tags = client.get(f"/api/v1/registries/{registry_name}/images/{image}/-/tags").json()
        return any(t["name"] == "1.0" and t["pull_count"] == 1 for t in tags["items"])

    deadline = time.monotonic() + 30  # a bound on waiting, not an assertion on speed
    while not pulled():
        assert time.monotonic() < deadline, "the pull was never counted"
        time.sleep(0.2)
    _set_policy(client, registry, rules=[{"keep": "latest_pulled", "count": 2}])
    plan = _plan(client, registry)
    verdicts = _verdicts(plan)
    assert verdicts == {
        "1.0": ("keep", "rule"),
        "1.1": ("delete", "no_rule"),
        "1.2": ("delete", "no_rule"),
    }
    pulled_at = {t["name"]: t["pulled_at"] for i in plan["items"] for t in i["tags"]}
    assert pulled_at["1.0"] is not None and pulled_at["1.1"] is None


def test_a_registry_keeps_its_last_twenty_plans(client: httpx.Client, registry: str) -> None:
    """Issue 14, point 3: the last plans are kept for inspection, the older ones go."""
    push_image(client, f"{registry}/app", make_image(f"{registry}-kept"), "1.0")
    _set_policy(client, registry, rules=[{"keep": "always"}])
    made = [_plan(client, registry)["id"] for _ in range(22)]
    listed = client.get(f"{_base(registry)}/plans")
    assert listed.status_code == 200, listed.text
    assert [plan["id"] for plan in listed.json()["items"]] == made[::-1][:20]
    assert client.get(f"{_base(registry)}/plans/{made[0]}").status_code == 404
    assert client.get(f"{_base(registry)}/plans/{made[2]}").status_code == 200
