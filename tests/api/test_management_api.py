"""The management API (SPEC §5) refuses what it must, and changes nothing when it does.

Every refusal is checked three ways: the status, the error envelope (`{"error": {"code",
"message", "detail"}}`, naming the field for bad input) and the state, read before and after
through the API. The cases: names that break SPEC §1 and names already taken, labels beyond the
limits, unknown fields and wrong types, list parameters out of range, `q` with LIKE wildcards,
malformed batches, callers without the right (SPEC §2: 403 when they can see the registry, 404
when they cannot, and each batch item on its own), fields nobody may set, `updated_at` and
resource IDs, a deletion racing a push, and the project group, user and personal access token
routes.

All of it runs against the session's real server process over HTTP; the few cases that need a
server of their own (failed sign-ins, a registry held in `deleting`) start one.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from apitools import ok, unique, without_scheduled_fields
from support.images import OCI_MANIFEST, Image, build_image
from support.server import RunningServer
from support.waiting import wait_for

API = "/api/v1"
RESOURCE_ID = re.compile(r"reg-[0-9a-z]{8,}")
DELETION_DEADLINE_SECONDS = 60.0


# -- helpers --------------------------------------------------------------------------------


def refused(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The SPEC §5 error envelope with this status and code (and `detail.field`)."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status} {code}, got "
        f"{response.status_code} {response.text}"
    )
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and len(error["message"]) > 10, error
    if field is not None:
        assert (error.get("detail") or {}).get("field") == field, error
    return error


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def push(http: httpx.Client, repository: str, image: Image, tag: str) -> list[int]:
    """Push an image over /v2 (monolithic blob uploads, then the manifest); the statuses."""
    statuses = []
    for blob in image.blobs():
        response = http.post(
            f"/v2/{repository}/blobs/uploads/",
            params={"digest": blob.digest},
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        statuses.append(response.status_code)
        if response.status_code != 201:
            return statuses
    response = http.put(
        f"/v2/{repository}/manifests/{tag}",
        content=image.manifest.data,
        headers={"Content-Type": image.manifest.media_type},
    )
    statuses.append(response.status_code)
    return statuses


def pushed(http: httpx.Client, repository: str, image: Image, tag: str) -> None:
    statuses = push(http, repository, image, tag)
    assert statuses[-1] == 201 and len(statuses) == len(image.blobs()) + 1, statuses


def delete_registry(http: httpx.Client, name: str) -> None:
    """Delete a registry with its images, and wait until it is gone."""
    response = http.delete(f"{API}/registries/{name}", params={"delete_images": "true"})
    assert response.status_code in (202, 204), response.text
    wait_for(
        lambda: http.get(f"{API}/registries/{name}").status_code == 404,
        f"registry {name} to be deleted",
        DELETION_DEADLINE_SECONDS,
        every=0.05,
    )


@dataclass
class Person:
    username: str
    password: str
    http: httpx.Client


def make_person(server: RunningServer, admin: httpx.Client, prefix: str) -> Person:
    username = unique(prefix)
    password = f"{username}-password"
    ok(admin.post(f"{API}/users", json={"username": username, "password": password}), 201)
    http = httpx.Client(base_url=server.url, auth=(username, password), timeout=60.0)
    return Person(username, password, http)


ROLES = ("owner", "developer", "guest", "stranger")


@dataclass
class World:
    """Users in every role of one project group, and registries they all know."""

    server: RunningServer
    admin: httpx.Client
    anonymous: httpx.Client
    owner: Person
    developer: Person
    guest: Person
    stranger: Person
    group: str
    private: str  # the owner's private registry in `group`, holding app:1.0 and app:2.0
    public: str  # the owner's public registry in `group`, holding app:1.0
    people: dict[str, Person] = field(default_factory=dict)

    def state(self, *registries: str) -> dict[str, Any]:
        """Everything the API shows of `registries` (as the admin sees it), and the list
        totals: compared before and after a refused request."""
        snapshot: dict[str, Any] = {
            "user registries": ok(self.admin.get(f"{API}/registries"))["total"],
            "platform registries": ok(self.admin.get(f"{API}/platform/registries"))["total"],
            "groups": ok(self.admin.get(f"{API}/project-groups", params={"page_size": 100})),
        }
        for name in registries:
            response = self.admin.get(f"{API}/registries/{name}")
            if response.status_code == 404:
                snapshot[name] = None
                continue
            images = ok(self.admin.get(f"{API}/registries/{name}/images"))
            tags = {
                image["name"]: ok(
                    self.admin.get(f"{API}/registries/{name}/images/{image['name']}/-/tags")
                )
                for image in images["items"]
            }
            snapshot[name] = (without_scheduled_fields(ok(response)), images, tags)
        snapshot["members"] = ok(self.admin.get(f"{API}/project-groups/{self.group}/members"))
        return snapshot


@pytest.fixture(scope="module")
def world(server: RunningServer) -> Iterator[World]:
    admin = httpx.Client(base_url=server.url, auth=server.admin, timeout=60.0)
    anonymous = httpx.Client(base_url=server.url, timeout=60.0)
    people = {role: make_person(server, admin, role[:5]) for role in ROLES}
    owner = people["owner"]
    group = unique("team")
    ok(owner.http.post(f"{API}/project-groups", json={"name": group}), 201)
    for role in ("developer", "guest"):
        member = people[role].username
        ok(owner.http.put(f"{API}/project-groups/{group}/members/{member}", json={"role": role}))
    private, public = unique("priv"), unique("pub")
    for name, is_public in ((private, False), (public, True)):
        ok(
            owner.http.post(
                f"{API}/registries",
                json={"name": name, "public": is_public, "project_group": group},
            ),
            201,
        )
    pushed(owner.http, f"{private}/app", build_image(f"{private}-1"), "1.0")
    pushed(owner.http, f"{private}/app", build_image(f"{private}-2"), "2.0")
    pushed(owner.http, f"{public}/app", build_image(public), "1.0")
    yield World(
        server,
        admin,
        anonymous,
        owner,
        people["developer"],
        people["guest"],
        people["stranger"],
        group,
        private,
        public,
        people,
    )
    for person in people.values():
        person.http.close()
    admin.close()
    anonymous.close()


def own_registry(world: World, person: Person | None = None, **fields: Any) -> str:
    """A fresh registry of `person` (by default the owner) in their own group."""
    name = unique("own")
    http = (person or world.owner).http
    ok(http.post(f"{API}/registries", json={"name": name, **fields}), 201)
    return name


# -- names ----------------------------------------------------------------------------------

BAD_NAMES = {
    "one character": "a",
    "64 characters": "a" * 64,
    "empty": "",
    "starts with a dash": "-team",
    "ends with a dash": "team-",
    "starts with a dot": ".team",
    "ends with an underscore": "team_",
    "upper case": "Team-a",
    "a space": "team a",
    "a slash": "team/a",
    "a colon": "team:a",
    "non-ASCII": "tëam",
    "a newline": "team\n",
    "a percent sign": "team%41",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_registry_name_breaking_spec_is_refused(world: World, name: str) -> None:
    before = world.state()
    response = world.owner.http.post(f"{API}/registries", json={"name": name})
    error = refused(response, 400, "INVALID_ARGUMENT", field="name")
    assert "name" in error["message"]
    assert world.state() == before
    if name.isprintable() and name.strip() and "/" not in name:
        assert world.admin.get(f"{API}/registries/{name}").status_code == 404


@pytest.mark.parametrize("body", [{}, {"name": 42}, {"name": None}, {"name": ["team-a"]}])
def test_registry_name_missing_or_not_a_string(world: World, body: dict[str, Any]) -> None:
    before = world.state()
    refused(world.owner.http.post(f"{API}/registries", json=body), 400, "INVALID_ARGUMENT", "name")
    assert world.state() == before


@pytest.mark.parametrize("name", ["ab", "a" * 63, "a.b_c-d", "0-9"])
def test_registry_names_at_the_limits_are_accepted(world: World, name: str) -> None:
    name = f"{name[:-10]}{uuid.uuid4().hex[:10]}" if len(name) > 20 else name
    created = ok(world.owner.http.post(f"{API}/registries", json={"name": name}), 201)
    assert created["name"] == name
    ok(world.owner.http.delete(f"{API}/registries/{name}"), 204)


def test_name_taken_by_a_user_registry(world: World) -> None:
    before = world.state(world.private)
    for person in (world.owner, world.stranger):  # whether or not they can see it
        refused(
            person.http.post(f"{API}/registries", json={"name": world.private, "public": True}),
            409,
            "REGISTRY_EXISTS",
        )
    assert world.state(world.private) == before


def test_name_taken_by_a_platform_registry(world: World) -> None:
    platform = unique("plat")
    ok(world.admin.post(f"{API}/registries", json={"name": platform, "kind": "platform"}), 201)
    before = world.state(platform)
    refused(
        world.owner.http.post(f"{API}/registries", json={"name": platform}),
        409,
        "REGISTRY_EXISTS",
    )
    assert world.state(platform) == before
    assert before[platform][0]["kind"] == "platform"
    ok(world.admin.delete(f"{API}/registries/{platform}"), 204)


def test_name_taken_by_a_registry_being_deleted(fresh_server: RunningServer) -> None:
    """A registry stays `deleting` only while its images go, which takes milliseconds here;
    a crash mid-deletion leaves one like that until a worker's next sweep (at start, then
    every 30-60 s). The test puts one in that state in the database, as such a crash would,
    right after the server started, and looks at it through the API."""
    with httpx.Client(base_url=fresh_server.url, auth=fresh_server.admin, timeout=60) as admin:
        name = unique("going")
        original = ok(admin.post(f"{API}/registries", json={"name": name}), 201)
        pushed(admin, f"{name}/app", build_image(name), "1.0")
        with closing(sqlite3.connect(fresh_server.data_dir / "registry.db", timeout=60)) as db:
            db.execute("UPDATE registries SET status = 'deleting' WHERE name = ?", (name,))
            db.commit()
        deleting = ok(admin.get(f"{API}/registries/{name}"))
        assert deleting["status"] == "deleting"

        refused(admin.post(f"{API}/registries", json={"name": name}), 409, "REGISTRY_EXISTS")
        # Only viewing is left: no changes, no pushes.
        refused(
            admin.patch(f"{API}/registries/{name}", json={"remark": "x"}),
            403,
            "PERMISSION_DENIED",
        )
        assert push(admin, f"{name}/app", build_image(f"{name}-2"), "2.0")[0] == 404
        assert ok(admin.get(f"{API}/registries/{name}")) == deleting
        assert deleting["id"] == original["id"]


# -- labels, remark -------------------------------------------------------------------------

TWENTY = {f"k{i}": f"v{i}" for i in range(20)}
BAD_LABELS = {
    "21 labels": {**TWENTY, "k20": "v20"},
    "key of 129 characters": {"k" * 129: "v"},
    "empty key": {"": "v"},
    "value of 257 characters": {"k": "v" * 257},
    "value a number": {"k": 1},
    "value null": {"k": None},
    "value an object": {"k": {"nested": "v"}},
    "labels an array": ["k:v"],
    "labels a string": "k=v",
}


@pytest.mark.parametrize("labels", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_bad_labels_are_refused(world: World, labels: Any) -> None:
    name = own_registry(world, labels={"keep": "me"})
    before = world.state(name)
    http = world.owner.http
    refused(
        http.put(f"{API}/registries/{name}/labels", json={"labels": labels}),
        400,
        "INVALID_ARGUMENT",
        "labels",
    )
    fresh = unique("lbl")
    refused(
        http.post(f"{API}/registries", json={"name": fresh, "labels": labels}),
        400,
        "INVALID_ARGUMENT",
        "labels",
    )
    assert world.state(name, fresh) == {**before, fresh: None}
    assert ok(http.get(f"{API}/registries/{name}"))["labels"] == {"keep": "me"}


def test_labels_at_the_limits_are_accepted(world: World) -> None:
    name = own_registry(world)
    labels = {**{f"k{i}": "" for i in range(18)}, "k" * 128: "v", "long": "v" * 256}
    assert len(labels) == 20
    answer = ok(world.owner.http.put(f"{API}/registries/{name}/labels", json={"labels": labels}))
    assert answer["labels"] == labels
    assert ok(world.owner.http.get(f"{API}/registries/{name}"))["labels"] == labels


def test_bad_remark_is_refused(world: World) -> None:
    name = own_registry(world, remark="first")
    before = world.state(name)
    for remark in (42, None, ["x"], "x" * 100_000):
        refused(
            world.owner.http.patch(f"{API}/registries/{name}", json={"remark": remark}),
            400,
            "INVALID_ARGUMENT",
        )
    assert world.state(name) == before


# -- unknown fields and wrong types ---------------------------------------------------------

CREATE_BODIES = {
    "unknown field": ({"name": "{name}", "nmae": "typo"}, "nmae"),
    "owner": ({"name": "{name}", "owner": "someone"}, "owner"),
    "status": ({"name": "{name}", "status": "deleting"}, "status"),
    "id": ({"name": "{name}", "id": "reg-00000000000000000000"}, "id"),
    "created_at": ({"name": "{name}", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    "image_count": ({"name": "{name}", "image_count": 5}, "image_count"),
    "public a string": ({"name": "{name}", "public": "true"}, "public"),
    "public a number": ({"name": "{name}", "public": 1}, "public"),
    "public null": ({"name": "{name}", "public": None}, "public"),
    "remark a number": ({"name": "{name}", "remark": 7}, "remark"),
    "project_group a number": ({"name": "{name}", "project_group": 3}, "project_group"),
    "labels null": ({"name": "{name}", "labels": None}, "labels"),
    "kind a boolean": ({"name": "{name}", "kind": True}, "kind"),
    "kind unknown": ({"name": "{name}", "kind": "system"}, "kind"),
}


@pytest.mark.parametrize("case", CREATE_BODIES.keys())
def test_create_with_bad_fields_is_refused(world: World, case: str) -> None:
    template, field_name = CREATE_BODIES[case]
    name = unique("bad")
    body = {key: name if value == "{name}" else value for key, value in template.items()}
    before = world.state(name)
    refused(
        world.owner.http.post(f"{API}/registries", json=body), 400, "INVALID_ARGUMENT", field_name
    )
    assert world.state(name) == before


PATCH_BODIES = {
    "name": {"name": "renamed"},
    "kind": {"kind": "platform"},
    "owner": {"owner": "someone"},
    "status": {"status": "deleting"},
    "id": {"id": "reg-00000000000000000000"},
    "labels (PUT /labels changes them)": {"labels": {"a": "b"}},
    "project_group": {"project_group": "other"},
    "updated_at": {"updated_at": "2020-01-01T00:00:00Z"},
    "public a string": {"public": "false"},
    "public null": {"public": None},
    "remark null": {"remark": None},
}


@pytest.mark.parametrize("body", PATCH_BODIES.values(), ids=PATCH_BODIES.keys())
def test_patch_with_bad_fields_is_refused(world: World, body: dict[str, Any]) -> None:
    name = own_registry(world, remark="as it was")
    before = world.state(name)
    # A good field along with the bad one must not be applied either.
    response = world.owner.http.patch(f"{API}/registries/{name}", json={"remark": "x", **body})
    refused(response, 400, "INVALID_ARGUMENT", next(iter(body)))
    assert world.state(name) == before


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'"text"', b"null", b'{"name": "x",}', b"\xff\xfe"],
    ids=["empty", "not JSON", "array", "string", "null", "trailing comma", "not UTF-8"],
)
def test_body_that_is_not_a_json_object_is_refused(world: World, content: bytes) -> None:
    name = own_registry(world)
    before = world.state(name)
    headers = {"Content-Type": "application/json"}
    http = world.owner.http
    responses = [
        http.post(f"{API}/registries", content=content, headers=headers),
        http.put(f"{API}/registries/{name}/labels", content=content, headers=headers),
        http.post(f"{API}/registries:batchDelete", content=content, headers=headers),
    ]
    if content:  # an empty PATCH body is an empty change
        responses.append(http.patch(f"{API}/registries/{name}", content=content, headers=headers))
    for response in responses:
        refused(response, 400, "INVALID_ARGUMENT")
    assert world.state(name) == before


def test_put_labels_needs_the_labels_field(world: World) -> None:
    name = own_registry(world, labels={"a": "b"})
    before = world.state(name)
    http = world.owner.http
    refused(http.put(f"{API}/registries/{name}/labels", json={}), 400, "INVALID_ARGUMENT", "labels")
    refused(
        http.put(f"{API}/registries/{name}/labels", json={"labels": {}, "x": 1}),
        400,
        "INVALID_ARGUMENT",
        "x",
    )
    refused(
        http.put(f"{API}/registries/{name}/labels", json={"a": "b"}), 400, "INVALID_ARGUMENT", "a"
    )
    assert world.state(name) == before


# -- list parameters ------------------------------------------------------------------------


def list_paths(world: World) -> list[str]:
    return [
        f"{API}/registries",
        f"{API}/shared/registries",
        f"{API}/platform/registries",
        f"{API}/platform/images",
        f"{API}/registries/{world.private}/images",
        f"{API}/registries/{world.private}/images/app/-/tags",
        f"{API}/project-groups",
    ]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("page_size", "101"),
        ("page_size", "0"),
        ("page_size", "-1"),
        ("page_size", "ten"),
        ("page_size", "1.5"),
        ("page_size", ""),
        ("page", "0"),
        ("page", "-1"),
        ("page", "x"),
        ("page", "99999999999999999999999"),
    ],
)
def test_page_parameters_out_of_range(world: World, param: str, value: str) -> None:
    for path in list_paths(world):
        refused(world.owner.http.get(path, params={param: value}), 400, "INVALID_ARGUMENT", param)


def test_page_size_limits_are_accepted(world: World) -> None:
    for path in list_paths(world):
        for size in ("1", "100"):
            listing = ok(world.owner.http.get(path, params={"page_size": size}))
            assert listing["page_size"] == int(size) and len(listing["items"]) <= int(size)
        for sort in ("name", "-created_at"):
            ok(world.owner.http.get(path, params={"sort": sort}))


@pytest.mark.parametrize(
    "sort", ["bogus", "-bogus", "password_hash", "name;drop", "--name", "+name"]
)
def test_sort_by_unknown_field(world: World, sort: str) -> None:
    for path in list_paths(world):
        refused(world.owner.http.get(path, params={"sort": sort}), 400, "INVALID_ARGUMENT", "sort")


def test_q_matches_wildcards_literally(world: World) -> None:
    """`q` is "name contains": `%`, `_` and `\\` are characters, not LIKE patterns."""
    stem = uuid.uuid4().hex[:8]
    underscore, other = f"q{stem}_x", f"q{stem}ax"
    for name in (underscore, other):
        ok(world.owner.http.post(f"{API}/registries", json={"name": name}), 201)
    http = world.owner.http

    def names(q: str) -> list[str]:
        listing = ok(http.get(f"{API}/registries", params={"q": q, "page_size": 100}))
        assert listing["total"] == len(listing["items"])
        return sorted(item["name"] for item in listing["items"])

    assert names(f"q{stem}") == sorted([other, underscore])
    assert names(f"{stem}_") == [underscore]  # not also `…ax`
    assert names("%") == []
    assert names(f"q{stem}%") == []
    assert names("\\") == []
    assert names(f"{stem}\\_") == []
    assert names(f"{stem}\\") == []

    # The same in image and tag lists, and in the shared view.
    pushed(http, f"{underscore}/a_b", build_image(f"{underscore}-1"), "v_1")
    pushed(http, f"{underscore}/axb", build_image(f"{underscore}-2"), "vx1")
    images = f"{API}/registries/{underscore}/images"
    assert [i["name"] for i in ok(http.get(images, params={"q": "a_"}))["items"]] == ["a_b"]
    assert ok(http.get(images, params={"q": "%"}))["total"] == 0
    assert ok(http.get(images, params={"q": "\\"}))["total"] == 0
    tags = f"{API}/registries/{underscore}/images/a_b/-/tags"
    assert [t["name"] for t in ok(http.get(tags, params={"q": "v_"}))["items"]] == ["v_1"]
    assert ok(http.get(tags, params={"q": "%"}))["total"] == 0
    assert ok(world.anonymous.get(f"{API}/shared/registries", params={"q": "%"}))["total"] == 0
    for name in (underscore, other):
        delete_registry(http, name)


def test_user_list_pages_searches_and_sorts(world: World) -> None:
    """The admins' user list is a list like the others: pages, a literal `q`, an allow-listed
    sort, and the same limits."""
    admin, stem = world.admin, uuid.uuid4().hex[:8]
    names = [f"pager{stem}-{n}" for n in range(3)] + [f"pager{stem}_x"]
    for name in names:
        ok(admin.post(f"{API}/users", json={"username": name, "password": "long-enough"}), 201)

    def usernames(**params: Any) -> list[str]:
        return [user["username"] for user in ok(admin.get(f"{API}/users", params=params))["items"]]

    first = ok(admin.get(f"{API}/users", params={"q": f"pager{stem}-", "page_size": 2}))
    assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
    assert [user["username"] for user in first["items"]] == names[:2]
    assert usernames(q=f"pager{stem}-", page_size=2, page=2) == names[2:3]
    assert usernames(q=f"pager{stem}-", sort="-created_at") == names[2::-1]
    assert usernames(q=f"{stem}_") == [f"pager{stem}_x"]  # `_` is a character, not a wildcard
    assert usernames(q="%") == []
    for param, value in [("page_size", "101"), ("page", "0"), ("sort", "password_hash")]:
        refused(admin.get(f"{API}/users", params={param: value}), 400, "INVALID_ARGUMENT", param)


def test_platform_images_are_searched_by_full_name(world: World) -> None:
    """Across many registries an image is known by `{registry}/{image}`: `q` matches that."""
    platform = unique("plat")
    ok(world.admin.post(f"{API}/registries", json={"name": platform, "kind": "platform"}), 201)
    pushed(world.admin, f"{platform}/tools/lint", build_image(platform), "1.0")

    def full_names(q: str) -> list[str]:
        listing = ok(world.anonymous.get(f"{API}/platform/images", params={"q": q}))
        return [image["full_name"] for image in listing["items"]]

    assert full_names(platform) == [f"{platform}/tools/lint"]
    assert full_names(f"{platform}/tools") == [f"{platform}/tools/lint"]
    assert f"{platform}/tools/lint" in full_names("tools/lint")
    assert full_names(f"{platform}/app") == []


def test_q_too_long(world: World) -> None:
    refused(
        world.owner.http.get(f"{API}/registries", params={"q": "a" * 10_000}),
        400,
        "INVALID_ARGUMENT",
        "q",
    )


def test_label_filter_must_be_key_value(world: World) -> None:
    for value in ("nocolon", ":value"):
        refused(
            world.owner.http.get(f"{API}/registries", params={"label": value}),
            400,
            "INVALID_ARGUMENT",
            "label",
        )


# -- batches --------------------------------------------------------------------------------


@dataclass
class Batch:
    path: str
    field: str
    valid: list[str]  # items that exist (a request of them alone would delete them)


def batches(world: World) -> list[Batch]:
    registry = own_registry(world)
    pushed(world.owner.http, f"{registry}/one", build_image(f"{registry}-1"), "1.0")
    pushed(world.owner.http, f"{registry}/one", build_image(f"{registry}-2"), "2.0")
    pushed(world.owner.http, f"{registry}/two", build_image(f"{registry}-3"), "1.0")
    empty = own_registry(world)
    return [
        Batch(f"{API}/registries:batchDelete", "names", [empty, registry]),
        Batch(f"{API}/registries/{registry}/images:batchDelete", "images", ["one", "two"]),
        Batch(f"{API}/registries/{registry}/images/one/-/tags:batchDelete", "tags", ["1.0", "2.0"]),
    ]


def test_malformed_batches_change_nothing(world: World) -> None:
    for batch in batches(world):
        registries = [name for name in batch.valid if batch.field == "names"]
        registry = batch.path.split("/")[4] if batch.field != "names" else None
        watched = [*registries, *([registry] if registry else [])]
        before = world.state(*watched)
        a, b = batch.valid
        bodies = {
            "duplicates": {batch.field: [a, b, a]},
            "1,000 items": {batch.field: [a, b, *(f"x{i}" for i in range(998))]},
            "no items": {batch.field: []},
            "not an array": {batch.field: a},
            "items not strings": {batch.field: [a, 1]},
            "null item": {batch.field: [a, None]},
            "field missing": {},
            "unknown field": {batch.field: [a], "force": True},
        }
        for case, body in bodies.items():
            response = world.owner.http.post(batch.path, json=body)
            error = refused(response, 400, "INVALID_ARGUMENT")
            if case == "duplicates":
                assert error["detail"]["duplicates"] == [a], error
            assert world.state(*watched) == before, f"{case} changed something"


def test_batch_of_100_items_is_accepted(world: World) -> None:
    registry = own_registry(world)
    pushed(world.owner.http, f"{registry}/one", build_image(registry), "keep")
    tags = [f"t{i}" for i in range(99)] + ["keep"]
    answer = ok(
        world.owner.http.post(
            f"{API}/registries/{registry}/images/one/-/tags:batchDelete", json={"tags": tags}
        )
    )
    results = answer["results"]
    assert [r["name"] for r in results] == tags
    assert all(r["ok"] is False and r["error"]["code"] == "NOT_FOUND" for r in results[:99])
    assert results[99] == {"name": "keep", "ok": True, "image_deleted": True}


def test_batch_with_unknown_names_answers_per_item(world: World) -> None:
    registry = own_registry(world)
    pushed(world.owner.http, f"{registry}/one", build_image(registry), "1.0")
    http = world.owner.http
    missing = unique("nope")
    answer = ok(http.post(f"{API}/registries:batchDelete", json={"names": [missing, "Bad Name"]}))
    assert [(r["name"], r["ok"]) for r in answer["results"]] == [
        (missing, False),
        ("Bad Name", False),
    ]
    assert answer["results"][0]["error"]["code"] == "NOT_FOUND"
    assert answer["results"][1]["error"]["code"] in ("NOT_FOUND", "INVALID_ARGUMENT")
    answer = ok(
        http.post(
            f"{API}/registries/{registry}/images:batchDelete",
            json={"images": ["nope", "Bad/Name", "one/../one"]},
        )
    )
    assert all(
        not r["ok"] and r["error"]["code"] in ("NOT_FOUND", "INVALID_ARGUMENT")
        for r in answer["results"]
    )
    answer = ok(
        http.post(
            f"{API}/registries/{registry}/images/one/-/tags:batchDelete",
            json={"tags": ["nope", "-bad", "x" * 200]},
        )
    )
    assert all(
        not r["ok"] and r["error"]["code"] in ("NOT_FOUND", "INVALID_ARGUMENT")
        for r in answer["results"]
    )
    # Batches in a registry or image that does not exist: every item fails alike.
    answer = ok(
        http.post(f"{API}/registries/{missing}/images:batchDelete", json={"images": ["one"]})
    )
    assert answer["results"][0]["error"]["code"] == "NOT_FOUND"
    assert ok(http.get(f"{API}/registries/{registry}/images/one"))["tag_count"] == 1


# -- who may do what ------------------------------------------------------------------------


def registry_changes(registry: str) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    return {
        "make public": ("PATCH", f"{API}/registries/{registry}", {"public": True}),
        "make private": ("PATCH", f"{API}/registries/{registry}", {"public": False}),
        "change remark": ("PATCH", f"{API}/registries/{registry}", {"remark": "mine now"}),
        "replace labels": ("PUT", f"{API}/registries/{registry}/labels", {"labels": {"a": "b"}}),
        "delete registry": ("DELETE", f"{API}/registries/{registry}?delete_images=true", None),
    }


@pytest.mark.parametrize("role", ["developer", "guest", "stranger"])
@pytest.mark.parametrize("kind", ["private", "public"])
def test_non_owner_may_not_change_a_registry(world: World, role: str, kind: str) -> None:
    registry = world.private if kind == "private" else world.public
    person = world.people[role]
    sees = kind == "public" or role != "stranger"
    status, code = (403, "PERMISSION_DENIED") if sees else (404, "NOT_FOUND")
    before = world.state(registry)
    for change, (method, path, body) in registry_changes(registry).items():
        response = person.http.request(method, path, json=body)
        error = refused(response, status, code)
        assert error, change
    outsider = unique("outsider")
    make = {"role": "owner"}
    members = f"{API}/project-groups/{world.group}/members"
    group_status, group_code = (
        (404, "NOT_FOUND") if role == "stranger" else (403, "PERMISSION_DENIED")
    )
    refused(person.http.put(f"{members}/{person.username}", json=make), group_status, group_code)
    refused(
        person.http.put(f"{members}/{world.owner.username}", json={"role": "guest"}),
        group_status,
        group_code,
    )
    refused(
        person.http.put(f"{members}/{outsider}", json={"role": "guest"}), group_status, group_code
    )
    refused(person.http.delete(f"{members}/{world.owner.username}"), group_status, group_code)
    # The registry's own members route is the group's: it has no other.
    assert world.state(registry) == before


@pytest.mark.parametrize("role", ["guest", "stranger"])
@pytest.mark.parametrize("kind", ["private", "public"])
def test_who_may_not_delete_images_and_tags(world: World, role: str, kind: str) -> None:
    registry = world.private if kind == "private" else world.public
    person = world.people[role]
    sees = kind == "public" or role != "stranger"
    status, code = (403, "PERMISSION_DENIED") if sees else (404, "NOT_FOUND")
    before = world.state(registry)
    http = person.http
    refused(http.delete(f"{API}/registries/{registry}/images/app"), status, code)
    refused(http.delete(f"{API}/registries/{registry}/images/app/-/tags/1.0"), status, code)
    for path, body in (
        (f"{API}/registries/{registry}/images:batchDelete", {"images": ["app"]}),
        (f"{API}/registries/{registry}/images/app/-/tags:batchDelete", {"tags": ["1.0"]}),
    ):
        results = ok(http.post(path, json=body))["results"]
        assert len(results) == 1 and results[0]["ok"] is False, results
        assert results[0]["error"]["code"] == code, results
    assert world.state(registry) == before


def test_anonymous_may_change_nothing(world: World) -> None:
    before = world.state(world.public, world.private)
    for registry in (world.public, world.private):
        for method, path, body in registry_changes(registry).values():
            refused(world.anonymous.request(method, path, json=body), 401, "UNAUTHENTICATED")
    refused(
        world.anonymous.post(f"{API}/registries", json={"name": unique("anon")}),
        401,
        "UNAUTHENTICATED",
    )
    refused(world.anonymous.get(f"{API}/registries/{world.private}"), 404, "NOT_FOUND")
    assert ok(world.anonymous.get(f"{API}/registries/{world.public}"))["public"] is True
    assert world.state(world.public, world.private) == before


def test_developer_may_delete_images_and_tags_but_not_administer(world: World) -> None:
    registry = own_registry(world, project_group=world.group)
    pushed(world.owner.http, f"{registry}/app", build_image(f"{registry}-1"), "1.0")
    pushed(world.owner.http, f"{registry}/app", build_image(f"{registry}-2"), "2.0")
    pushed(world.owner.http, f"{registry}/other", build_image(f"{registry}-3"), "1.0")
    http = world.developer.http
    assert ok(http.delete(f"{API}/registries/{registry}/images/app/-/tags/1.0")) == {
        "name": "1.0",
        "image_deleted": False,
    }
    ok(http.delete(f"{API}/registries/{registry}/images/other"), 204)
    refused(
        http.patch(f"{API}/registries/{registry}", json={"public": True}), 403, "PERMISSION_DENIED"
    )
    assert ok(world.owner.http.get(f"{API}/registries/{registry}"))["image_count"] == 1


def test_each_batch_item_is_authorised_on_its_own(world: World) -> None:
    """A developer's batch over a registry of their own (deleted), one of the owner's they
    can see (403) and one they cannot (404): each item answers for itself."""
    mine = own_registry(world, world.developer)
    theirs = own_registry(world, project_group=world.group)  # the developer sees it
    hidden = own_registry(world)  # in the owner's own group: the developer cannot see it
    before = world.state(theirs, hidden)
    answer = ok(
        world.developer.http.post(
            f"{API}/registries:batchDelete", json={"names": [theirs, mine, hidden]}
        )
    )
    results = {r["name"]: r for r in answer["results"]}
    assert results[theirs]["ok"] is False
    assert results[theirs]["error"]["code"] == "PERMISSION_DENIED"
    assert results[mine] == {"name": mine, "ok": True, "status": "deleted"}
    assert results[hidden]["ok"] is False and results[hidden]["error"]["code"] == "NOT_FOUND"
    after = world.state(theirs, hidden)
    assert (after[theirs], after[hidden]) == (before[theirs], before[hidden])
    refused(world.developer.http.get(f"{API}/registries/{mine}"), 404, "NOT_FOUND")


# -- fields nobody may set ------------------------------------------------------------------


def test_platform_kind_is_for_admins_only(world: World) -> None:
    name = unique("plat")
    before = world.state(name)
    for person in (world.owner, world.developer, world.stranger):
        refused(
            person.http.post(f"{API}/registries", json={"name": name, "kind": "platform"}),
            403,
            "PERMISSION_DENIED",
        )
    assert world.state(name) == before

    created = ok(
        world.admin.post(f"{API}/registries", json={"name": name, "kind": "platform"}), 201
    )
    assert created["kind"] == "platform" and created["project_group"] is None
    platform = ok(world.anonymous.get(f"{API}/platform/registries", params={"q": name}))
    assert [r["name"] for r in platform["items"]] == [name]
    assert ok(world.admin.get(f"{API}/registries", params={"q": name}))["total"] == 0
    assert ok(world.anonymous.get(f"{API}/shared/registries", params={"q": name}))["total"] == 0
    refused(
        world.admin.post(
            f"{API}/registries",
            json={"name": unique("plat"), "kind": "platform", "project_group": world.group},
        ),
        400,
        "INVALID_ARGUMENT",
        "project_group",
    )
    ok(world.admin.delete(f"{API}/registries/{name}"), 204)


def test_project_group_must_exist_and_allow_creating(world: World) -> None:
    name = unique("grp")
    before = world.state(name)
    refused(
        world.owner.http.post(
            f"{API}/registries", json={"name": name, "project_group": unique("none")}
        ),
        404,
        "NOT_FOUND",
        "project_group",
    )
    # A guest of the group may not create registries in it; a stranger cannot see it.
    refused(
        world.guest.http.post(
            f"{API}/registries", json={"name": name, "project_group": world.group}
        ),
        403,
        "PERMISSION_DENIED",
    )
    response = world.stranger.http.post(
        f"{API}/registries", json={"name": name, "project_group": world.group}
    )
    assert response.status_code in (403, 404), response.text
    assert world.state(name) == before
    created = ok(
        world.developer.http.post(
            f"{API}/registries", json={"name": name, "project_group": world.group}
        ),
        201,
    )
    assert created["project_group"] == world.group and created["owner"] == world.developer.username
    ok(world.owner.http.delete(f"{API}/registries/{name}"), 204)  # the group's owner may


# -- updated_at and resource IDs ------------------------------------------------------------


def test_updated_at_moves_on_every_change(world: World) -> None:
    name = own_registry(world)
    http = world.owner.http
    first = ok(http.get(f"{API}/registries/{name}"))
    assert first["created_at"] == first["updated_at"]
    seen = [first]
    for method, path, body in [
        ("PATCH", f"{API}/registries/{name}", {"remark": "one"}),
        ("PATCH", f"{API}/registries/{name}", {"public": True}),
        ("PATCH", f"{API}/registries/{name}", {"public": False}),
        ("PUT", f"{API}/registries/{name}/labels", {"labels": {"a": "1"}}),
        ("PUT", f"{API}/registries/{name}/labels", {"labels": {}}),
        ("PATCH", f"{API}/registries/{name}", {"remark": "two", "public": True}),
    ]:
        answer = ok(http.request(method, path, json=body))
        assert ok(http.get(f"{API}/registries/{name}")) == answer
        assert moment(answer["updated_at"]) > moment(seen[-1]["updated_at"]), (body, answer)
        assert answer["created_at"] == first["created_at"]
        assert answer["id"] == first["id"]
        seen.append(answer)
    # Reading and refused changes leave it alone.
    ok(http.get(f"{API}/registries"))
    http.patch(f"{API}/registries/{name}", json={"remark": 1})
    world.guest.http.patch(f"{API}/registries/{name}", json={"remark": "x"})
    assert ok(http.get(f"{API}/registries/{name}"))["updated_at"] == seen[-1]["updated_at"]


def test_resource_ids_are_never_reused(world: World) -> None:
    name = unique("reuse")
    ids = []
    for _ in range(4):
        created = ok(world.owner.http.post(f"{API}/registries", json={"name": name}), 201)
        assert RESOURCE_ID.fullmatch(created["id"]), created["id"]
        assert ok(world.owner.http.get(f"{API}/registries/{name}"))["id"] == created["id"]
        ids.append(created["id"])
        ok(world.owner.http.delete(f"{API}/registries/{name}"), 204)
    assert len(set(ids)) == len(ids), ids
    listing = ok(world.admin.get(f"{API}/registries", params={"page_size": 100}))
    all_ids = [r["id"] for r in listing["items"]]
    assert len(set(all_ids)) == len(all_ids)


def test_registry_whose_images_lost_every_tag_is_empty(world: World) -> None:
    """To the console an image exists while it has a tag: once the last one goes, the
    registry is empty and goes without `delete_images`."""
    http = world.owner.http
    name = own_registry(world)
    pushed(http, f"{name}/app", build_image(name), "1.0")
    refused(http.delete(f"{API}/registries/{name}"), 409, "REGISTRY_NOT_EMPTY")
    assert ok(http.delete(f"{API}/registries/{name}/images/app/-/tags/1.0"))["image_deleted"]
    assert ok(http.get(f"{API}/registries/{name}"))["image_count"] == 0
    response = http.delete(f"{API}/registries/{name}")
    assert response.status_code in (202, 204), response.text
    wait_for(
        lambda: http.get(f"{API}/registries/{name}").status_code == 404,
        f"registry {name} to be deleted",
        DELETION_DEADLINE_SECONDS,
        every=0.05,
    )


# -- a deletion racing a push ---------------------------------------------------------------


def run_together(*work: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]


def assert_complete(http: httpx.Client, repository: str, image: Image, tag: str) -> None:
    """The image is there with its manifest under `tag` and every blob it references."""
    manifest = http.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 200, manifest.text
    assert manifest.content == image.manifest.data
    for blob in image.blobs():
        # On S3 storage the registry answers 307 to a presigned URL: follow it, as clients do.
        served = http.get(f"/v2/{repository}/blobs/{blob.digest}", follow_redirects=True)
        assert served.status_code == 200 and served.content == blob.data, served.status_code


def race_image_round(world: World, registry: str, number: int) -> str:
    """Push `app{number}` while deleting it over and over until the push ends; the outcome,
    `kept` or `gone`, after checking that it is one or the other, completely."""
    image = build_image(f"{registry}-{number}", layer_count=3)
    repository = f"{registry}/app{number}"
    done = threading.Event()
    push_statuses: list[int] = []
    delete_statuses: list[int] = []

    def pushing() -> None:
        with httpx.Client(base_url=world.server.url, auth=world.owner.http.auth) as client:
            push_statuses.extend(push(client, repository, image, "1.0"))
        done.set()

    def deleting() -> None:
        with httpx.Client(base_url=world.server.url, auth=world.owner.http.auth) as client:
            while not done.is_set():
                response = client.delete(f"{API}/registries/{registry}/images/app{number}")
                delete_statuses.append(response.status_code)

    run_together(pushing, deleting)
    assert all(status in (201, 400, 404) for status in push_statuses), push_statuses
    assert set(delete_statuses) <= {204, 404}, delete_statuses
    http = world.owner.http
    answer = http.get(f"{API}/registries/{registry}/images/app{number}")
    if answer.status_code == 200:
        assert ok(answer)["tag_count"] == 1
        assert push_statuses[-1] == 201
        assert_complete(http, repository, image, "1.0")
        return "kept"
    refused(answer, 404, "NOT_FOUND")
    tags = http.get(f"/v2/{repository}/tags/list")
    assert tags.status_code == 404 or not tags.json().get("tags"), tags.text
    return "gone"


def test_image_deletion_racing_a_push(world: World) -> None:
    registry = own_registry(world)
    outcomes = [race_image_round(world, registry, number) for number in range(12)]
    http = world.owner.http
    images = ok(http.get(f"{API}/registries/{registry}/images", params={"page_size": 100}))
    assert images["total"] == outcomes.count("kept")
    assert ok(http.get(f"{API}/registries/{registry}"))["image_count"] == outcomes.count("kept")


def race_registry_round(world: World, pause: float) -> None:
    """Delete a registry (with its images) `pause` s into a push of five more images."""
    http = world.owner.http
    registry = own_registry(world)
    pushed(http, f"{registry}/app", build_image(f"{registry}-first"), "0")
    statuses: list[int] = []
    started = threading.Event()

    def pushing() -> None:
        with httpx.Client(base_url=world.server.url, auth=world.owner.http.auth) as client:
            for number in range(1, 6):
                image = build_image(f"{registry}-{number}")
                statuses.extend(push(client, f"{registry}/app", image, str(number)))
                started.set()

    def deleting() -> None:
        started.wait(timeout=60)
        time.sleep(pause)
        response = http.delete(f"{API}/registries/{registry}", params={"delete_images": "true"})
        assert response.status_code in (202, 204), response.text

    run_together(pushing, deleting)
    assert all(status in (201, 202, 400, 404) for status in statuses), statuses
    wait_for(
        lambda: http.get(f"{API}/registries/{registry}").status_code == 404,
        f"{registry} to be deleted",
        DELETION_DEADLINE_SECONDS,
        every=0.05,
    )
    assert http.get(f"/v2/{registry}/app/tags/list").status_code == 404
    # Nothing of the old registry survives into a new one of the same name.
    ok(http.post(f"{API}/registries", json={"name": registry}), 201)
    assert ok(http.get(f"{API}/registries/{registry}/images"))["total"] == 0
    assert http.get(f"/v2/{registry}/app/manifests/0").status_code == 404
    ok(http.delete(f"{API}/registries/{registry}"), 204)


def test_registry_deletion_racing_a_push(world: World) -> None:
    for pause in (0.0, 0.05, 0.1, 0.15):
        race_registry_round(world, pause)


# -- project groups, members, users, personal access tokens ---------------------------------


def test_project_groups_and_members(world: World) -> None:
    owner, developer, guest, stranger = (world.people[r] for r in ROLES)
    group = unique("grp")
    created = ok(owner.http.post(f"{API}/project-groups", json={"name": group}), 201)
    assert created["name"] == group and created["role"] == "owner"
    refused(
        stranger.http.post(f"{API}/project-groups", json={"name": group}), 409, "ALREADY_EXISTS"
    )
    refused(
        owner.http.post(f"{API}/project-groups", json={"name": "Bad Name"}),
        400,
        "INVALID_ARGUMENT",
        "name",
    )
    refused(
        owner.http.post(f"{API}/project-groups", json={"name": unique("g"), "x": 1}),
        400,
        "INVALID_ARGUMENT",
        "x",
    )

    members = f"{API}/project-groups/{group}/members"
    assert ok(owner.http.put(f"{members}/{developer.username}", json={"role": "developer"})) == {
        "username": developer.username,
        "role": "developer",
    }
    ok(owner.http.put(f"{members}/{guest.username}", json={"role": "guest"}))
    listing = ok(owner.http.get(members))
    assert {(m["username"], m["role"]) for m in listing["items"]} == {
        (owner.username, "owner"),
        (developer.username, "developer"),
        (guest.username, "guest"),
    }
    mine = ok(developer.http.get(f"{API}/project-groups", params={"q": group}))
    assert [(g["name"], g["role"], g["member_count"]) for g in mine["items"]] == [
        (group, "developer", 3)
    ]
    assert ok(stranger.http.get(f"{API}/project-groups", params={"q": group}))["total"] == 0
    refused(stranger.http.get(members), 404, "NOT_FOUND")

    # Roles change by the owner only.
    refused(
        developer.http.put(f"{members}/{guest.username}", json={"role": "owner"}),
        403,
        "PERMISSION_DENIED",
    )
    refused(
        guest.http.put(f"{members}/{guest.username}", json={"role": "owner"}),
        403,
        "PERMISSION_DENIED",
    )
    refused(
        stranger.http.put(f"{members}/{stranger.username}", json={"role": "guest"}),
        404,
        "NOT_FOUND",
    )
    refused(
        owner.http.put(f"{members}/{guest.username}", json={"role": "admin"}),
        400,
        "INVALID_ARGUMENT",
        "role",
    )
    refused(
        owner.http.put(f"{members}/{guest.username}", json={"role": 1}),
        400,
        "INVALID_ARGUMENT",
        "role",
    )
    refused(
        owner.http.put(f"{members}/{unique('ghost')}", json={"role": "guest"}), 404, "NOT_FOUND"
    )
    assert ok(owner.http.get(members)) == listing
    ok(owner.http.put(f"{members}/{guest.username}", json={"role": "developer"}))
    roles = {m["username"]: m["role"] for m in ok(guest.http.get(members))["items"]}
    assert roles[guest.username] == "developer"

    # A role takes effect on the group's registries at once.
    registry = unique("grpreg")
    ok(owner.http.post(f"{API}/registries", json={"name": registry, "project_group": group}), 201)
    pushed(guest.http, f"{registry}/app", build_image(registry), "1.0")  # a developer now
    ok(owner.http.put(f"{members}/{guest.username}", json={"role": "guest"}))
    denied = push(guest.http, f"{registry}/app", build_image(f"{registry}-2"), "2.0")
    assert denied[0] in (401, 403), denied
    refused(developer.http.delete(f"{members}/{guest.username}"), 403, "PERMISSION_DENIED")
    ok(owner.http.delete(f"{members}/{guest.username}"), 204)
    refused(owner.http.delete(f"{members}/{guest.username}"), 404, "NOT_FOUND")
    refused(guest.http.get(f"{API}/registries/{registry}"), 404, "NOT_FOUND")
    delete_registry(owner.http, registry)


def test_users_routes(world: World) -> None:
    person = world.stranger
    refused(person.http.get(f"{API}/users"), 403, "PERMISSION_DENIED")
    refused(
        person.http.post(f"{API}/users", json={"username": unique("u"), "password": "long-enough"}),
        403,
        "PERMISSION_DENIED",
    )
    me = ok(person.http.get(f"{API}/users/me"))
    assert me["username"] == person.username and me["is_admin"] is False
    assert ok(person.http.get(f"{API}/users/{person.username}")) == me
    refused(person.http.get(f"{API}/users/{world.owner.username}"), 404, "NOT_FOUND")
    refused(person.http.patch(f"{API}/users/me", json={"disabled": True}), 403, "PERMISSION_DENIED")
    refused(
        person.http.patch(f"{API}/users/me", json={"is_admin": True}),
        400,
        "INVALID_ARGUMENT",
        "is_admin",
    )

    admin = world.admin
    refused(
        admin.post(f"{API}/users", json={"username": person.username, "password": "long-enough"}),
        409,
        "ALREADY_EXISTS",
    )
    for body, field_name in [
        ({"username": "Bad Name", "password": "long-enough"}, "username"),
        ({"username": unique("u"), "password": "short"}, "password"),
        ({"username": unique("u")}, "password"),
        ({"username": unique("u"), "password": "long-enough", "role": "admin"}, "role"),
        ({"username": unique("u"), "password": "long-enough", "is_admin": "yes"}, "is_admin"),
    ]:
        refused(admin.post(f"{API}/users", json=body), 400, "INVALID_ARGUMENT", field_name)
    users = ok(admin.get(f"{API}/users", params={"q": person.username}))
    assert person.username in {u["username"] for u in users["items"]}
    assert all("password" not in json.dumps(u) for u in users["items"])


def test_personal_access_tokens(fresh_server: RunningServer) -> None:
    """On a server of its own: the revoked-token check is a failed sign-in, which the
    shared server's per-address throttle would remember."""
    with httpx.Client(base_url=fresh_server.url, auth=fresh_server.admin, timeout=60) as admin:
        alice, bob = (make_person(fresh_server, admin, name) for name in ("alice", "bob"))
        tokens = f"{API}/users/me/tokens"
        created = ok(alice.http.post(tokens, json={"name": "ci"}), 201)
        secret = created["token"]
        assert secret and created["name"] == "ci" and created["revoked_at"] is None
        listing = ok(alice.http.get(tokens))
        assert [t["id"] for t in listing["items"]] == [created["id"]]
        assert "token" not in listing["items"][0]
        assert secret not in json.dumps(listing)  # shown once, never again
        assert ok(alice.http.get(f"{API}/users/{alice.username}/tokens")) == listing
        assert ok(admin.get(f"{API}/users/{alice.username}/tokens")) == listing
        refused(bob.http.get(f"{API}/users/{alice.username}/tokens"), 404, "NOT_FOUND")
        refused(alice.http.post(tokens, json={"name": ""}), 400, "INVALID_ARGUMENT", "name")
        refused(
            alice.http.post(tokens, json={"name": "x", "scope": "all"}),
            400,
            "INVALID_ARGUMENT",
            "scope",
        )
        refused(
            alice.http.post(tokens, json={"name": "x", "expires_at": "tomorrow"}),
            400,
            "INVALID_ARGUMENT",
            "expires_at",
        )

        # The token works as a password: for the API and for /v2.
        with httpx.Client(base_url=fresh_server.url, auth=(alice.username, secret)) as ci:
            assert ok(ci.get(f"{API}/users/me"))["username"] == alice.username
            registry = unique("ci")
            ok(ci.post(f"{API}/registries", json={"name": registry}), 201)
            pushed(ci, f"{registry}/app", build_image(registry), "1.0")

        # A read-only token pulls but changes nothing.
        read_only = ok(alice.http.post(tokens, json={"name": "ro", "read_only": True}), 201)
        with httpx.Client(
            base_url=fresh_server.url, auth=(alice.username, read_only["token"])
        ) as reader:
            assert (
                reader.get(
                    f"/v2/{registry}/app/manifests/1.0", headers={"Accept": OCI_MANIFEST}
                ).status_code
                == 200
            )
            refused(
                reader.patch(f"{API}/registries/{registry}", json={"public": True}),
                403,
                "PERMISSION_DENIED",
            )
            refused(reader.post(tokens, json={"name": "more"}), 403, "PERMISSION_DENIED")

        # Only its owner (or an admin) revokes it; then it stops working at once.
        refused(
            bob.http.delete(f"{API}/users/{alice.username}/tokens/{created['id']}"),
            404,
            "NOT_FOUND",
        )
        refused(bob.http.delete(f"{API}/users/me/tokens/{created['id']}"), 404, "NOT_FOUND")
        ok(alice.http.delete(f"{tokens}/{created['id']}"), 204)
        revoked = {t["id"]: t for t in ok(alice.http.get(tokens))["items"]}[created["id"]]
        assert revoked["revoked_at"] is not None
        with httpx.Client(base_url=fresh_server.url, auth=(alice.username, secret)) as ci:
            refused(ci.get(f"{API}/users/me"), 401, "UNAUTHENTICATED")
        for person in (alice, bob):
            person.http.close()
