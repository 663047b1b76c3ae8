"""Lists that cost the same at 100,000 items as at 1,000 (issue 15, flat growth), still right.

The management API's counts and image sizes, which database triggers keep instead of counting
and summing rows per request (migration 0009), follow every change: a push, a re-tag, a tag
deleted over /v2 or the API, an image deleted, a registry deleted. Each count is checked against
the items the lists actually hold. A search counts its matches up to a limit, and says when it
stopped (`total_exact: false`, `total` a lower bound). The /v2 catalog, now read one registry at
a time, keeps the lexical order of full names and its `last` pages, also across registry names
that sort differently alone than with their `/` (`ab-x/…` comes before `ab/…`).

Everything runs against the session's real server, over HTTP, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apitools import ok, unique
from support.images import build_image
from support.server import RunningServer

API = "/api/v1"
SEARCH_COUNT_LIMIT = 1000  # catalog/console.py


@pytest.fixture
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60.0) as client:
        yield client


def push(http: httpx.Client, repository: str, label: str, tags: list[str]) -> int:
    """Push an image over /v2 and tag it with each of `tags`; the bytes of its blobs and
    manifest, which is the image's size when it holds nothing else."""
    image = build_image(label)
    for blob in image.blobs():
        ok(
            http.post(
                f"/v2/{repository}/blobs/uploads/",
                params={"digest": blob.digest},
                content=blob.data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            201,
        )
    for tag in tags:
        ok(
            http.put(
                f"/v2/{repository}/manifests/{tag}",
                content=image.manifest.data,
                headers={"Content-Type": image.manifest.media_type},
            ),
            201,
        )
    return sum(len(blob.data) for blob in image.blobs()) + len(image.manifest.data)


def every(http: httpx.Client, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """All items of a list, page by page, and the `total` its first page announced."""
    items: list[dict[str, Any]] = []
    first = ok(http.get(path, params={**params, "page_size": 100}))
    total, page = first["total"], first
    while page["items"]:
        items += page["items"]
        number = page["page"] + 1
        page = ok(http.get(path, params={**params, "page_size": 100, "page": number}))
    return items, total


def registry_row(http: httpx.Client, name: str) -> dict[str, Any]:
    return ok(http.get(f"{API}/registries/{name}"))


def assert_counts(http: httpx.Client, registry: str) -> dict[str, int]:
    """Every count the API shows for `registry` matches what its lists hold; the tag counts."""
    images, total = every(http, f"{API}/registries/{registry}/images")
    assert total == len(images) == registry_row(http, registry)["image_count"], images
    tag_counts = {}
    for image in images:
        path = f"{API}/registries/{registry}/images/{image['name']}/-/tags"
        tags, total = every(http, path)
        assert total == len(tags) == image["tag_count"] > 0, (image, tags)
        tag_counts[image["name"]] = len(tags)
    return tag_counts


def test_counts_follow_pushes_and_deletions(admin: httpx.Client) -> None:
    registry = unique("counts")
    ok(admin.post(f"{API}/registries", json={"name": registry}), 201)
    assert registry_row(admin, registry)["image_count"] == 0

    push(admin, f"{registry}/app", "counts-app-1", ["1.0", "latest"])
    push(admin, f"{registry}/app", "counts-app-2", ["2.0", "latest"])  # moves `latest`
    cli_size = push(admin, f"{registry}/tools/cli", "counts-cli", ["1.0"])
    push(admin, f"{registry}/gone", "counts-gone", ["a", "b", "c"])
    assert assert_counts(admin, registry) == {"app": 3, "tools/cli": 1, "gone": 3}
    cli = ok(admin.get(f"{API}/registries/{registry}/images/tools/cli"))
    assert cli["size_bytes"] == cli_size

    # A tag deleted over /v2, then one through the API, then an image's last tag.
    app = f"{registry}/app"
    ok(admin.delete(f"/v2/{app}/manifests/1.0"), 202)
    ok(admin.delete(f"{API}/registries/{registry}/images/app/-/tags/2.0"))
    assert ok(admin.delete(f"{API}/registries/{registry}/images/tools/cli/-/tags/1.0"))[
        "image_deleted"
    ]
    assert assert_counts(admin, registry) == {"app": 1, "gone": 3}

    # An image deleted whole, with its tags.
    ok(admin.delete(f"{API}/registries/{registry}/images/gone"), 204)
    assert assert_counts(admin, registry) == {"app": 1}

    # Pushing into an image that lost every tag counts it again.
    push(admin, f"{registry}/tools/cli", "counts-cli", ["1.1"])
    assert assert_counts(admin, registry) == {"app": 1, "tools/cli": 1}

    # The registry list shows the same count as the registry itself.
    listed = ok(admin.get(f"{API}/registries", params={"q": registry}))
    assert [(row["name"], row["image_count"]) for row in listed["items"]] == [(registry, 2)]


def test_counts_of_a_deleted_registry_do_not_reach_a_new_one(admin: httpx.Client) -> None:
    registry = unique("again")
    ok(admin.post(f"{API}/registries", json={"name": registry, "public": True}), 201)
    push(admin, f"{registry}/app", "again-app", ["1.0"])
    response = admin.delete(f"{API}/registries/{registry}", params={"delete_images": "true"})
    assert response.status_code in (202, 204), response.text
    deadline = time.monotonic() + 60
    while admin.get(f"{API}/registries/{registry}").status_code != 404:
        assert time.monotonic() < deadline, f"registry {registry} was not deleted"
        time.sleep(0.1)
    ok(admin.post(f"{API}/registries", json={"name": registry}), 201)
    assert registry_row(admin, registry)["image_count"] == 0
    assert ok(admin.get(f"{API}/registries/{registry}/images"))["total"] == 0


def test_a_search_past_the_count_limit_says_its_total_is_a_lower_bound(
    admin: httpx.Client,
) -> None:
    registry = unique("many")
    ok(admin.post(f"{API}/registries", json={"name": registry}), 201)
    tags = [f"v{number:04d}" for number in range(SEARCH_COUNT_LIMIT + 2)]
    push(admin, f"{registry}/app", "many-app", tags)
    path = f"{API}/registries/{registry}/images/app/-/tags"

    everything = ok(admin.get(path))  # no search: the maintained count, exact
    assert everything["total"] == len(tags) and "total_exact" not in everything

    beyond = ok(admin.get(path, params={"q": "v"}))  # every tag matches
    assert beyond["total"] == SEARCH_COUNT_LIMIT and beyond["total_exact"] is False, beyond
    assert len(beyond["items"]) == 20

    within = ok(admin.get(path, params={"q": "v00"}))  # v0000 … v0099
    assert within["total"] == 100 and "total_exact" not in within, within


def test_catalog_pages_keep_the_lexical_order_of_full_names(
    server: RunningServer, admin: httpx.Client
) -> None:
    stem = unique("cat")
    registries = [stem, f"{stem}-x", f"{stem}.y", f"{stem}z"]  # '-' and '.' sort before '/'
    for name in registries:
        ok(admin.post(f"{API}/registries", json={"name": name}), 201)
        push(admin, f"{name}/b", f"{name}-b", ["1"])
        push(admin, f"{name}/a/c", f"{name}-a-c", ["1"])
    ok(admin.post(f"{API}/registries", json={"name": f"{stem}-empty"}), 201)
    expected = sorted(f"{name}/{image}" for name in registries for image in ("b", "a/c"))

    token = ok(
        httpx.get(
            f"{server.url}/auth/token",
            params={"service": "ociregistry", "scope": "registry:catalog:*"},
            auth=server.admin,
        )
    )["token"]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
    ) as http:
        whole = ok(http.get("/v2/_catalog"))["repositories"]
        assert [name for name in whole if name.startswith(stem)] == expected
        assert whole == sorted(whole)

        seen: list[str] = []
        page = http.get("/v2/_catalog", params={"n": 3, "last": expected[0][:-1]})
        while True:
            names = ok(page)["repositories"]
            assert len(names) <= 3
            seen += names
            link = page.headers.get("link")
            if link is None or not names or not names[-1].startswith(stem):
                break
            page = http.get(link.split(";")[0].strip("<>"))
        assert [name for name in seen if name.startswith(stem)] == expected


def test_tag_search_finds_what_contains_the_text(admin: httpx.Client) -> None:
    """Searches of three characters or more go through the trigram index (SQLite FTS5,
    pg_trgm): the same matches as a scan, kept in step with pushes and deletions."""
    registry = unique("find")
    ok(admin.post(f"{API}/registries", json={"name": registry}), 201)
    push(admin, f"{registry}/app", "find-app", ["release-1.0", "release-2.0", "beta", "rel"])
    push(admin, f"{registry}/other", "find-other", ["release-9.9"])  # another image's tag
    path = f"{API}/registries/{registry}/images/app/-/tags"

    def found(text: str) -> list[str]:
        listed = ok(admin.get(path, params={"q": text, "sort": "name"}))
        names = [tag["name"] for tag in listed["items"]]
        assert listed["total"] == len(names), listed
        return names

    assert found("lea") == ["release-1.0", "release-2.0"]
    assert found("rel") == ["rel", "release-1.0", "release-2.0"]
    assert found("e-2.") == ["release-2.0"]
    assert found("re") == ["rel", "release-1.0", "release-2.0"]  # short: a scan
    assert found('a"b') == [] and found("9.9") == [] and found("%%%") == []
    ok(admin.delete(f"{API}/registries/{registry}/images/app/-/tags/release-1.0"))
    assert found("lea") == ["release-2.0"]
    push(admin, f"{registry}/app", "find-app", ["release-1.0"])
    assert found("lea") == ["release-1.0", "release-2.0"]
