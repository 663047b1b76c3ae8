"""Catalog lists page by cursor at any depth, and by number only near their start (issue 15).

A page by number reads every row before it, so `/api/v1` serves page numbers within the first
MAX_PAGED_ITEMS items of a list and answers a deeper one with 400 INVALID_ARGUMENT naming the
cursor; each answer of a catalog list (registries, shared, platform registries and images, a
registry's images, an image's tags) carries `next`, an opaque cursor of the page after it
(null on the last), which continues from the last row's sort key. Following the cursors must
give exactly the list a single page gives, in every sort (ties of equal sort values across
registries included) and for searches, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest

from ociregistry.api.common import MAX_PAGED_ITEMS
from support.inprocess import InProcessRegistry, push_image
from support.oci import make_image
from support.pgcluster import fresh_database

PLATFORM = ("cur-p1", "cur-p2", "cur-p3")
USER = ("cur-u1", "cur-u2", "cur-u3", "cur-u4", "cur-u5")
IMAGES = 4
TAGS = 7
TAG_LIST = f"/api/v1/registries/{PLATFORM[0]}/images/many/-/tags"
REGISTRY_SORTS = ("name", "-name", "-created_at", "-pull_count", "image_count", "-size_bytes")
IMAGE_SORTS = (
    "name",
    "-name",
    "created_at",
    "-created_at",
    "-updated_at",
    "pull_count",
    "-pull_count",
    "-tag_count",
    "size_bytes",
)
TAG_SORTS = ("-created_at", "created_at", "name", "-name", "pull_count", "-pull_count")
# (list, its sorts, the key naming an item)
LISTS = [
    ("/api/v1/registries", REGISTRY_SORTS, "name"),
    ("/api/v1/shared/registries", REGISTRY_SORTS, "name"),
    ("/api/v1/platform/registries", REGISTRY_SORTS, "name"),
    ("/api/v1/platform/images", IMAGE_SORTS, "full_name"),
    ("/api/v1/platform/images?q=cur-p", IMAGE_SORTS, "full_name"),  # registries' names
    ("/api/v1/platform/images?q=app", IMAGE_SORTS, "full_name"),  # image names
    ("/api/v1/platform/images?q=p2/ap", IMAGE_SORTS, "full_name"),  # across the `/`
    (f"/api/v1/registries/{PLATFORM[1]}/images", IMAGE_SORTS, "full_name"),
    (f"/api/v1/registries/{PLATFORM[1]}/images?q=app", IMAGE_SORTS, "full_name"),
    (TAG_LIST, TAG_SORTS, "name"),
    (f"{TAG_LIST}?q=tag", TAG_SORTS, "name"),
]
CASES = [(path, sort, key) for path, sorts, key in LISTS for sort in sorts]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessRegistry]:
    """Platform registries of a few images with equal pull counts (ties across registries),
    an image with several tags, and user registries, three of them public."""
    with (
        fresh_database(request.param, "cursor") as url,
        InProcessRegistry(tmp_path_factory.mktemp("cursor") / "data", database_url=url) as running,
    ):
        running.run(_seed(running))
        yield running


async def _seed(registry: InProcessRegistry) -> None:
    services = registry.services
    for name in PLATFORM:
        await services.registries.create(name, kind="platform")
        for number in range(IMAGES):
            image = make_image(f"{name}{number % 2}")  # equal sizes too
            await push_image(registry.client, f"{name}/app{number}", image, "v1")
    for number in range(TAGS):
        await push_image(
            registry.client, f"{PLATFORM[0]}/many", make_image(f"tag{number}"), f"tag{number}"
        )
    for number, name in enumerate(USER):
        await services.registries.create(name, public=number < 3, kind="user", owner="admin")
        await push_image(registry.client, f"{name}/app", make_image(name), "v1")


def _get(registry: InProcessRegistry, path: str, **params: Any) -> Any:
    """GET `path` (which may hold a query) with `params` added to its query."""
    path, _, query = path.partition("?")
    return registry.run(registry.client.get(path, params=[*parse_qsl(query), *params.items()]))


def _with(path: str, sort: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}sort={sort}"


@pytest.mark.parametrize(("path", "sort", "key"), CASES)
def test_following_the_cursor_reads_the_list_once_in_order(
    registry: InProcessRegistry, path: str, sort: str, key: str
) -> None:
    whole = _get(registry, _with(path, sort), page_size=100)
    assert whole.status_code == 200, whole.text
    expected = [item[key] for item in whole.json()["items"]]
    assert len(expected) >= 3, f"{path}: too few items to page through: {expected}"
    assert whole.json()["next"] is None

    answer = _get(registry, _with(path, sort), page_size=2).json()
    assert answer["page"] == 1
    walked = [item[key] for item in answer["items"]]
    while answer["next"] is not None:
        response = _get(registry, path, page_size=2, cursor=answer["next"], sort=sort)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert "page" not in answer  # a page found by cursor has no number
        assert answer["total"] == whole.json()["total"]
        walked += [item[key] for item in answer["items"]]
        assert len(walked) <= len(expected), f"{path} {sort}: read {walked}"
    assert walked == expected, f"{path} {sort}"


def test_a_page_number_past_the_bound_points_to_the_cursor(registry: InProcessRegistry) -> None:
    for path in ("/api/v1/platform/images", TAG_LIST, "/api/v1/registries"):
        for size in (20, 30, 100):
            deepest = (MAX_PAGED_ITEMS - 1) // size + 1
            assert _get(registry, path, page=deepest, page_size=size).status_code == 200
            response = _get(registry, path, page=deepest + 1, page_size=size)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "INVALID_ARGUMENT"
            assert error["detail"]["field"] == "page"
            assert error["detail"]["max_page"] == deepest
            assert "cursor" in error["message"]


def _cursor(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_a_cursor_that_does_not_fit_is_refused(registry: InProcessRegistry) -> None:
    images = "/api/v1/platform/images"
    first = _get(registry, images, page_size=2, sort="-created_at").json()
    tags = _get(registry, TAG_LIST, page_size=2).json()
    assert first["next"] and tags["next"]
    refused = [
        (images, {"cursor": "not a cursor"}, "cursor"),
        (images, {"cursor": "e30"}, "cursor"),  # {}
        (images, {"cursor": "x" * 5000}, "cursor"),
        (images, {"cursor": tags["next"]}, "cursor"),  # another list's
        (images, {"cursor": first["next"], "sort": "name"}, "sort"),
        (images, {"cursor": first["next"], "sort": "-created_at", "q": "app"}, "q"),
        (images, {"cursor": first["next"], "page": "2"}, "cursor"),
        (images, {"cursor": _cursor({"l": "images", "s": None, "q": None, "k": [1, 2]})}, "cursor"),
        (images, {"cursor": _cursor({"l": "images", "s": 5, "q": None, "k": []})}, "cursor"),
        (
            images,
            {"cursor": _cursor({"l": "images", "s": "-created_at", "q": None, "k": ["x", 1, 1]})},
            "cursor",
        ),
        (
            images,
            {"cursor": _cursor({"l": "images", "s": "-created_at", "q": None, "k": [5, 1, 1]})},
            "cursor",
        ),
        (
            images,
            {"cursor": _cursor({"l": "images", "s": "-bogus", "q": None, "k": ["x", 1, 1]})},
            "sort",
        ),
        (
            TAG_LIST,
            {"cursor": _cursor({"l": "tags", "s": "name", "q": None, "k": [1, 1]})},
            "cursor",
        ),
        (
            "/api/v1/registries",
            {"cursor": _cursor({"l": "registries", "s": None, "q": None, "k": ["a", True]})},
            "cursor",
        ),
    ]
    for path, params, field in refused:
        response = _get(registry, path, page_size=2, **params)
        assert response.status_code == 400, (path, params, response.text)
        error = response.json()["error"]
        assert error["code"] == "INVALID_ARGUMENT", (params, error)
        assert error["detail"]["field"] == field, (params, error)
    # A cursor repeating its own sort and search is taken as it is.
    again = _get(registry, images, page_size=2, cursor=first["next"], sort="-created_at")
    assert again.status_code == 200, again.text
