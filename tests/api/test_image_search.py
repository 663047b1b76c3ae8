"""Image searches find exactly what `name LIKE '%q%'` found, through indexes (issue 15).

An image search reads the trigram index of image names (migration 0015) instead of every
image. The platform image list searches full names `{registry}/{image}`, which no index
holds: the search is split into the images whose name contains `q` (the trigram index), the
registries whose `{name}/` contains it (all their images), and those where `q` begins in the
registry's name and runs on into the image's (a name prefix, an index range). These tests
check that the split means the same as the plain search, for any names and any `q`: as a
function, and through the API on SQLite and PostgreSQL against the names themselves.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociregistry.catalog.listings import full_name_matches
from support.inprocess import InProcessRegistry, push_image
from support.oci import make_image
from support.pgcluster import fresh_database

ALPHABET = "ab-/."
# Registry and image names that meet at the `/` in every way a search can straddle it.
REGISTRIES = ("ab", "ab-b", "b.ab", "bab")
IMAGES = ("ab", "b", "a-b", "ab/ab", "b.b/a", "bb-a")
FULL_NAMES = [f"{registry}/{image}" for registry in REGISTRIES for image in IMAGES]


@given(
    registries=st.lists(st.text("ab-.", min_size=1, max_size=6), min_size=1, max_size=4),
    image=st.text(ALPHABET, min_size=1, max_size=8),
    q=st.text(ALPHABET, min_size=1, max_size=6),
)
def test_the_split_of_a_full_name_search_means_the_plain_search(
    registries: list[str], image: str, q: str
) -> None:
    held = list(enumerate(registries))
    whole, prefixes = full_name_matches(held, q)
    for registry_id, name in held:
        split = (
            q in image
            or registry_id in whole
            or any(image.startswith(rest) for rid, rest in prefixes if rid == registry_id)
        )
        assert split == (q in f"{name}/{image}"), (name, image, q, whole, prefixes)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessRegistry]:
    """Platform registries holding one image of each name, on SQLite and on PostgreSQL."""
    with (
        fresh_database(request.param, "search") as url,
        InProcessRegistry(tmp_path_factory.mktemp("search") / "data", database_url=url) as running,
    ):
        for name in REGISTRIES:
            running.run(running.services.registries.create(name, kind="platform"))
        image = make_image("search")
        for full_name in FULL_NAMES:
            running.run(push_image(running.client, full_name, image, "v1"))
        yield running


substrings = st.sampled_from(
    sorted(
        {
            name[i:j]
            for name in FULL_NAMES
            for i, j in itertools.combinations(range(len(name) + 1), 2)
        }
    )
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=st.one_of(substrings, st.text(ALPHABET, min_size=1, max_size=5)))
def test_searches_find_what_the_names_contain(registry: InProcessRegistry, q: str) -> None:
    response = registry.run(
        registry.client.get("/api/v1/platform/images", params={"q": q, "page_size": 100})
    )
    assert response.status_code == 200, response.text
    body = response.json()
    found = sorted(item["full_name"] for item in body["items"])
    assert found == sorted(name for name in FULL_NAMES if q in name), q
    assert body["total"] == len(found)
    for name in REGISTRIES:
        response = registry.run(
            registry.client.get(
                f"/api/v1/registries/{name}/images", params={"q": q, "page_size": 100}
            )
        )
        assert response.status_code == 200, response.text
        found = sorted(item["name"] for item in response.json()["items"])
        assert found == sorted(image for image in IMAGES if q in image), (name, q)
