"""The issue's acceptance test: the user guide's console walk-through, end to end.

A signed-in (non-admin) user, created by the platform admin through the API, creates a private
registry with a remark, a project group and labels, pushes two images with several tags with
skopeo, reads the registry, image and tag lists (every SPEC §5 column, with exact counts), makes
the registry public (it appears in the shared view and becomes anonymously pullable), changes
its labels, deletes tags until an image goes, and deletes the registry: refused while it holds
images, accepted with `delete_images=true`, after which its name is free again. The batch
variants answer per item, and a failing item does not stop the others.

Everything goes over HTTP to a real server process and through the real skopeo binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitools import ok, unique, without_scheduled_fields
from support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Index,
    build_image,
    build_index,
    write_oci_layout,
)
from support.server import RunningServer
from support.waiting import wait_for

pytestmark = pytest.mark.clients

API = "/api/v1"
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
REGISTRY_FIELDS = {
    "id", "name", "kind", "remark", "public", "status", "project_group", "labels", "owner",
    "image_count", "pull_count", "pull_count_refreshed_at", "address", "created_at", "updated_at",
}  # fmt: skip
IMAGE_FIELDS = {
    "name", "full_name", "latest_tag", "tag_count", "pull_count", "pull_command", "size_bytes",
    "created_at", "updated_at",
}  # fmt: skip
TAG_FIELDS = {
    "name", "digest", "media_type", "size_bytes", "pull_count", "pull_command", "created_at",
    "platforms",
}  # fmt: skip
DELETION_DEADLINE_SECONDS = 60.0
SKOPEO_TIMEOUT_SECONDS = 300


# -- helpers --------------------------------------------------------------------------------


def rfc3339(value: Any) -> datetime:
    """A SPEC §5 time: an RFC 3339 string in UTC."""
    assert isinstance(value, str) and RFC3339.fullmatch(value), f"not an RFC 3339 time: {value!r}"
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert moment.utcoffset() == UTC.utcoffset(None), f"not UTC: {value!r}"
    return moment


def api_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status} {code}, got "
        f"{response.status_code} {response.text}"
    )
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"], error
    return error


class Skopeo:
    """The skopeo binary with an auth file of its own (so nothing but `--*creds` signs in)."""

    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "REGISTRY_AUTH_FILE": str(home / "auth.json")}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [self.binary, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            timeout=SKOPEO_TIMEOUT_SECONDS,
        )
        if check and completed.returncode != 0:
            pytest.fail(
                f"$ skopeo {' '.join(args)}\n[exit {completed.returncode}]\n{completed.stdout}",
                pytrace=False,
            )
        return completed

    def push(self, layout: Path, reference: str, creds: str, *, index: bool = False) -> None:
        """`skopeo copy oci:LAYOUT docker://REFERENCE` as the user guide's CI example does."""
        self(
            "copy", "--quiet", "--preserve-digests", *(["--all"] if index else []),
            "--dest-creds", creds, "--dest-tls-verify=false",
            f"oci:{layout}:src", f"docker://{reference}",
        )  # fmt: skip

    def inspect_anonymously(self, reference: str) -> subprocess.CompletedProcess[str]:
        return self(
            "inspect", "--raw", "--no-creds", "--tls-verify=false", f"docker://{reference}",
            check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    binary = shutil.which("skopeo")
    if binary is None:
        if os.environ.get("OCIREGISTRY_REQUIRE_CLIENTS") == "1":
            pytest.fail("skopeo is not installed (OCIREGISTRY_REQUIRE_CLIENTS=1)")
        pytest.skip("skopeo is not installed")
    return Skopeo(binary, tmp_path_factory.mktemp("skopeo"))


class User:
    """A signed-in, non-admin user of the console, made by the admin through the API."""

    def __init__(self, server: RunningServer, admin: httpx.Client) -> None:
        self.username = unique("dev")
        self.password = f"{self.username}-password"
        ok(
            admin.post(f"{API}/users", json={"username": self.username, "password": self.password}),
            201,
        )
        self.http = httpx.Client(
            base_url=server.url, auth=(self.username, self.password), timeout=60.0
        )

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"


@pytest.fixture
def user(server: RunningServer, client: httpx.Client) -> Iterator[User]:
    made = User(server, client)
    yield made
    made.http.close()


@pytest.fixture
def anonymous(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        yield http


def layout(tmp_path: Path, top: Image | Index) -> Path:
    directory = tmp_path / f"layout-{top.digest[7:19]}"
    if not directory.exists():
        write_oci_layout(directory, top, tag="src")
    return directory


def push_all(
    skopeo: Skopeo,
    server: RunningServer,
    user: User,
    tmp_path: Path,
    registry: str,
    pushes: list[tuple[str, Image | Index, str]],
) -> None:
    """Push (image name, content, tag) in this order: the last tag pushed is the latest."""
    for image, top, tag in pushes:
        skopeo.push(
            layout(tmp_path, top),
            f"{server.address}/{registry}/{image}:{tag}",
            user.creds,
            index=isinstance(top, Index),
        )


def registry_entry(
    http: httpx.Client, path: str, name: str, **params: str
) -> dict[str, Any] | None:
    """The registry called `name` in the list at `path` (filtered by `q`), or None."""
    listing = ok(http.get(path, params={"q": name, **params}))
    found = [item for item in listing["items"] if item["name"] == name]
    assert len(found) <= 1, listing
    return found[0] if found else None


def image_names(http: httpx.Client, registry: str) -> list[str]:
    listing = ok(http.get(f"{API}/registries/{registry}/images"))
    assert listing["total"] == len(listing["items"]), listing
    return [item["name"] for item in listing["items"]]


def tag_names(http: httpx.Client, registry: str, image: str) -> list[str]:
    listing = ok(http.get(f"{API}/registries/{registry}/images/{image}/-/tags"))
    assert listing["total"] == len(listing["items"]), listing
    return sorted(item["name"] for item in listing["items"])


def v2_tags(http: httpx.Client, registry: str, image: str) -> list[str] | None:
    """What /v2 lists for the image; None when it answers 404 (no such repository)."""
    response = http.get(f"/v2/{registry}/{image}/tags/list")
    if response.status_code == 404:
        return None
    return sorted(ok(response)["tags"] or [])


def wait_gone(http: httpx.Client, registry: str) -> None:
    """Poll a registry being deleted until it answers 404 (its images are gone)."""

    def gone() -> bool:
        response = http.get(f"{API}/registries/{registry}")
        if response.status_code == 404:
            return True
        assert ok(response)["status"] == "deleting", response.text
        return False

    wait_for(gone, f"registry {registry} to be deleted", DELETION_DEADLINE_SECONDS)


# -- the walk-through -----------------------------------------------------------------------


def test_user_guide_walkthrough(
    server: RunningServer,
    client: httpx.Client,
    user: User,
    anonymous: httpx.Client,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    host = server.address  # no public address configured: the request's Host
    http = user.http

    # 1. A project group of the user's own, and a private registry in it.
    group = unique("proj")
    ok(http.post(f"{API}/project-groups", json={"name": group, "description": "team A"}), 201)
    name = unique("guide")
    created = ok(
        http.post(
            f"{API}/registries",
            json={
                "name": name,
                "remark": "images of team A's services",
                "public": False,
                "project_group": group,
                "labels": {"env": "prod", "cost-center": "4711"},
            },
        ),
        201,
    )
    assert created["id"].startswith("reg-"), created
    assert created["image_count"] == 0 and created["status"] == "available", created

    # 2. Two images, several tags each, pushed with skopeo under the user's own credentials.
    app_v1, app_v2 = build_image(f"{name}-app-1"), build_image(f"{name}-app-2", layer_count=2)
    lint = build_index(f"{name}-lint", ("amd64", "arm64"))
    push_all(
        skopeo, server, user, tmp_path, name,
        [
            ("app", app_v1, "1.0"),
            ("tools/lint", lint, "v1"),
            ("app", app_v2, "1.1"),
            ("tools/lint", lint, "v2"),
            ("app", app_v2, "latest"),
        ],
    )  # fmt: skip

    # 3. The registry list: every column of SPEC §5, with the counts.
    entry = registry_entry(http, f"{API}/registries", name)
    assert entry is not None, "the new registry is missing from the owner's list"
    assert set(entry) >= REGISTRY_FIELDS, REGISTRY_FIELDS - set(entry)
    assert entry["id"] == created["id"]
    assert entry["kind"] == "user"
    assert entry["remark"] == "images of team A's services"
    assert entry["public"] is False
    assert entry["status"] == "available"
    assert entry["project_group"] == group
    assert entry["labels"] == {"env": "prod", "cost-center": "4711"}
    assert entry["owner"] == user.username
    assert entry["image_count"] == 2
    assert entry["pull_count"] == 0
    assert entry["address"] == f"{host}/{name}"
    created_at, updated_at = rfc3339(entry["created_at"]), rfc3339(entry["updated_at"])
    assert created_at <= updated_at
    if entry["pull_count_refreshed_at"] is not None:
        rfc3339(entry["pull_count_refreshed_at"])
    assert ok(http.get(f"{API}/registries/{name}")) == entry
    # The list's filters find it by project group and by label, and only by matching ones.
    assert registry_entry(http, f"{API}/registries", name, project_group=group) is not None
    assert registry_entry(http, f"{API}/registries", name, label="env:prod") is not None
    assert registry_entry(http, f"{API}/registries", name, label="env:dev") is None
    assert registry_entry(http, f"{API}/registries", name, label="cost-center:4711") is not None

    # 4. The image list.
    images = ok(http.get(f"{API}/registries/{name}/images"))
    assert images["total"] == 2 and images["page"] == 1, images
    by_name = {item["name"]: item for item in images["items"]}
    assert sorted(by_name) == ["app", "tools/lint"]
    app, tools = by_name["app"], by_name["tools/lint"]
    for item in (app, tools):
        assert set(item) >= IMAGE_FIELDS, IMAGE_FIELDS - set(item)
        assert item["full_name"] == f"{name}/{item['name']}"
        assert item["pull_count"] == 0
        assert item["size_bytes"] > 0
        assert rfc3339(item["created_at"]) <= rfc3339(item["updated_at"])
    assert app["latest_tag"] == "latest" and app["tag_count"] == 3
    assert app["pull_command"] == f"docker pull {host}/{name}/app:latest"
    assert tools["latest_tag"] == "v2" and tools["tag_count"] == 2
    assert tools["pull_command"] == f"docker pull {host}/{name}/tools/lint:v2"
    assert app["size_bytes"] >= sum(blob.size for blob in (*app_v1.blobs(), *app_v2.blobs()))
    assert ok(http.get(f"{API}/registries/{name}/images/tools/lint")) == tools

    # 5. The tag lists: digest, media type, platforms of an index.
    app_tags = ok(http.get(f"{API}/registries/{name}/images/app/-/tags"))
    assert app_tags["total"] == 3
    tags = {item["name"]: item for item in app_tags["items"]}
    assert [item["name"] for item in app_tags["items"]] == ["latest", "1.1", "1.0"]  # newest first
    for tag, content in (("1.0", app_v1), ("1.1", app_v2), ("latest", app_v2)):
        item = tags[tag]
        assert set(item) >= TAG_FIELDS, TAG_FIELDS - set(item)
        assert item["digest"] == content.digest
        assert item["media_type"] == OCI_MANIFEST
        assert item["platforms"] == []
        assert item["size_bytes"] >= content.manifest.size
        assert item["pull_count"] == 0
        assert item["pull_command"] == f"docker pull {host}/{name}/app:{tag}"
        rfc3339(item["created_at"])
    lint_tags = ok(http.get(f"{API}/registries/{name}/images/tools/lint/-/tags"))
    assert sorted(item["name"] for item in lint_tags["items"]) == ["v1", "v2"]
    for item in lint_tags["items"]:
        assert item["digest"] == lint.digest
        assert item["media_type"] == OCI_INDEX
        assert item["platforms"] == ["linux/amd64", "linux/arm64"]
        assert item["pull_command"] == f"docker pull {host}/{name}/tools/lint:{item['name']}"

    # 6. Private: not in the shared view, not even to anonymous eyes; not anonymously pullable.
    assert registry_entry(anonymous, f"{API}/shared/registries", name) is None
    api_error(anonymous.get(f"{API}/registries/{name}"), 404, "NOT_FOUND")
    refused = skopeo.inspect_anonymously(f"{host}/{name}/app:1.0")
    assert refused.returncode != 0, refused.stdout
    assert re.search(r"unauthorized|denied|name unknown", refused.stdout, re.I), refused.stdout

    # 7. Made public: in the shared view (anonymously), and anonymously pullable.
    before = ok(http.get(f"{API}/registries/{name}"))
    public = ok(http.patch(f"{API}/registries/{name}", json={"public": True}))
    assert public["public"] is True
    assert rfc3339(public["updated_at"]) > rfc3339(before["updated_at"])
    shared = registry_entry(anonymous, f"{API}/shared/registries", name)
    assert shared is not None, "a public registry is missing from the shared view"
    assert shared["owner"] == user.username and shared["image_count"] == 2
    assert shared["public"] is True and shared["address"] == f"{host}/{name}"
    pulled = skopeo.inspect_anonymously(f"{host}/{name}/app:1.0")
    assert pulled.returncode == 0, pulled.stdout
    assert json.loads(pulled.stdout) == json.loads(app_v1.manifest.data)
    assert ok(anonymous.get(f"{API}/registries/{name}/images"))["total"] == 2

    # 8. New labels replace the old ones.
    relabelled = ok(
        http.put(f"{API}/registries/{name}/labels", json={"labels": {"env": "staging"}})
    )
    assert relabelled["labels"] == {"env": "staging"}
    assert rfc3339(relabelled["updated_at"]) > rfc3339(public["updated_at"])
    assert registry_entry(http, f"{API}/registries", name, label="env:staging") is not None
    assert registry_entry(http, f"{API}/registries", name, label="env:prod") is None
    assert ok(http.get(f"{API}/registries/{name}"))["labels"] == {"env": "staging"}

    # 9. Delete a tag: it goes, the image stays.
    assert ok(http.delete(f"{API}/registries/{name}/images/app/-/tags/1.0")) == {
        "name": "1.0",
        "image_deleted": False,
    }
    assert tag_names(http, name, "app") == ["1.1", "latest"]
    assert v2_tags(http, name, "app") == ["1.1", "latest"]
    assert ok(http.get(f"{API}/registries/{name}/images/app"))["tag_count"] == 2
    api_error(http.delete(f"{API}/registries/{name}/images/app/-/tags/1.0"), 404, "NOT_FOUND")

    # 10. Delete an image's tags down to the last: with the last one the image goes.
    first = ok(http.delete(f"{API}/registries/{name}/images/tools/lint/-/tags/v1"))
    assert first == {"name": "v1", "image_deleted": False}
    last = ok(http.delete(f"{API}/registries/{name}/images/tools/lint/-/tags/v2"))
    assert last == {"name": "v2", "image_deleted": True}
    assert image_names(http, name) == ["app"]
    api_error(http.get(f"{API}/registries/{name}/images/tools/lint"), 404, "NOT_FOUND")
    api_error(http.get(f"{API}/registries/{name}/images/tools/lint/-/tags"), 404, "NOT_FOUND")
    assert ok(http.get(f"{API}/registries/{name}"))["image_count"] == 1
    assert v2_tags(http, name, "tools/lint") in (None, [])
    # Untagged manifests stay reachable by digest until garbage collection.
    by_digest = http.get(
        f"/v2/{name}/tools/lint/manifests/{lint.digest}", headers={"Accept": OCI_INDEX}
    )
    assert by_digest.status_code == 200, by_digest.text

    # 11. Delete the registry: refused while it holds an image, and nothing changes.
    before = without_scheduled_fields(ok(http.get(f"{API}/registries/{name}")))
    refusal = api_error(http.delete(f"{API}/registries/{name}"), 409, "REGISTRY_NOT_EMPTY")
    assert refusal["detail"]["image_count"] == 1, refusal
    api_error(
        http.delete(f"{API}/registries/{name}", params={"delete_images": "false"}),
        409,
        "REGISTRY_NOT_EMPTY",
    )
    assert without_scheduled_fields(ok(http.get(f"{API}/registries/{name}"))) == before
    assert image_names(http, name) == ["app"]

    # With delete_images=true: 202 while `deleting`, then gone, and the name is free.
    accepted = http.delete(f"{API}/registries/{name}", params={"delete_images": "true"})
    if accepted.status_code == 202:
        assert accepted.json()["status"] == "deleting", accepted.text
        wait_gone(http, name)
    else:  # the images went within the request
        ok(accepted, 204)
    api_error(http.get(f"{API}/registries/{name}"), 404, "NOT_FOUND")
    assert registry_entry(http, f"{API}/registries", name) is None
    assert registry_entry(anonymous, f"{API}/shared/registries", name) is None
    assert http.get(f"/v2/{name}/app/manifests/1.1").status_code == 404

    again = ok(http.post(f"{API}/registries", json={"name": name, "project_group": group}), 201)
    assert again["id"] != created["id"], "a resource ID was reused"
    assert again["image_count"] == 0 and again["labels"] == {} and again["public"] is False
    assert image_names(http, name) == []
    assert http.get(f"/v2/{name}/app/manifests/{app_v2.digest}").status_code == 404
    ok(http.delete(f"{API}/registries/{name}"), 204)


def test_batch_deletes(
    server: RunningServer, client: httpx.Client, user: User, skopeo: Skopeo, tmp_path: Path
) -> None:
    http = user.http
    name = unique("batch")
    ok(http.post(f"{API}/registries", json={"name": name}), 201)
    one, two = build_image(f"{name}-1"), build_image(f"{name}-2")
    push_all(
        skopeo, server, user, tmp_path, name,
        [
            ("app", one, "1.0"), ("app", two, "1.1"), ("app", two, "latest"),
            ("web", one, "1"), ("db", two, "1"), ("cache", one, "1"),
        ],
    )  # fmt: skip
    assert image_names(http, name) == ["app", "cache", "db", "web"]

    # Tags: one per item, in order; the missing one fails alone.
    answer = ok(
        http.post(
            f"{API}/registries/{name}/images/app/-/tags:batchDelete",
            json={"tags": ["1.0", "no-such-tag", "1.1"]},
        )
    )
    results = answer["results"]
    assert [(r["name"], r["ok"]) for r in results] == [
        ("1.0", True), ("no-such-tag", False), ("1.1", True),
    ]  # fmt: skip
    assert results[0]["image_deleted"] is False and results[2]["image_deleted"] is False
    assert results[1]["error"]["code"] == "NOT_FOUND" and results[1]["error"]["message"]
    assert tag_names(http, name, "app") == ["latest"]
    last = ok(
        http.post(
            f"{API}/registries/{name}/images/app/-/tags:batchDelete", json={"tags": ["latest"]}
        )
    )
    assert last["results"] == [{"name": "latest", "ok": True, "image_deleted": True}]
    assert image_names(http, name) == ["cache", "db", "web"]
    assert ok(http.get(f"{API}/registries/{name}"))["image_count"] == 3

    # Images: the missing one fails alone; the others go with all their tags.
    answer = ok(
        http.post(
            f"{API}/registries/{name}/images:batchDelete",
            json={"images": ["web", "app", "db"]},
        )
    )
    results = answer["results"]
    assert [(r["name"], r["ok"]) for r in results] == [
        ("web", True), ("app", False), ("db", True),
    ]  # fmt: skip
    assert results[1]["error"]["code"] == "NOT_FOUND"
    assert image_names(http, name) == ["cache"]
    assert v2_tags(http, name, "web") in (None, [])
    assert ok(http.get(f"{API}/registries/{name}"))["image_count"] == 1

    # Registries: an empty one goes at once, a non-empty one is refused without
    # delete_images, a missing one and one the user may not see fail, all independently.
    empty = unique("empty")
    ok(http.post(f"{API}/registries", json={"name": empty}), 201)
    foreign = unique("foreign")
    ok(client.post(f"{API}/registries", json={"name": foreign}), 201)  # the admin's, private
    missing = unique("missing")
    answer = ok(
        http.post(f"{API}/registries:batchDelete", json={"names": [missing, name, foreign, empty]})
    )
    results = {r["name"]: r for r in answer["results"]}
    assert [r["name"] for r in answer["results"]] == [missing, name, foreign, empty]
    assert results[missing]["ok"] is False and results[missing]["error"]["code"] == "NOT_FOUND"
    assert results[name]["ok"] is False
    assert results[name]["error"]["code"] == "REGISTRY_NOT_EMPTY"
    assert results[foreign]["ok"] is False and results[foreign]["error"]["code"] == "NOT_FOUND"
    assert results[empty] == {"name": empty, "ok": True, "status": "deleted"}
    api_error(http.get(f"{API}/registries/{empty}"), 404, "NOT_FOUND")
    assert ok(http.get(f"{API}/registries/{name}"))["status"] == "available"
    assert ok(client.get(f"{API}/registries/{foreign}"))["status"] == "available"

    # With delete_images: the non-empty one is accepted (deleting, then gone).
    answer = ok(
        http.post(
            f"{API}/registries:batchDelete",
            json={"names": [name, missing], "delete_images": True},
        )
    )
    first, second = answer["results"]
    assert first["name"] == name and first["ok"] is True, first
    assert first["status"] in ("deleting", "deleted"), first
    assert second["name"] == missing and second["ok"] is False, second
    wait_gone(http, name)
    ok(http.post(f"{API}/registries", json={"name": name}), 201)  # the name is free again
    assert image_names(http, name) == []
    ok(client.delete(f"{API}/registries/{foreign}"), 204)
    ok(http.delete(f"{API}/registries/{name}"), 204)
