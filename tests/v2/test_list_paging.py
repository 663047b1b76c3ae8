"""/v2 pages lose and repeat nothing while the registry grows between them (issue 15).

`/v2/_catalog` and `/v2/<name>/tags/list` page by key (`n` and `last`, the distribution
spec's pagination): each page starts after the last name of the one before, read from an
index in lexical order, so a page costs the same at 100,000 names as at 1,000. Paging by key
also means that names added between two requests, wherever they sort, neither shift a name
already due onto a page read before (offset paging would repeat it) nor push one past the
client unseen: every name present when the walk began comes back exactly once, in order.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.inprocess import InProcessRegistry, push_image
from support.oci import make_image

REGISTRY = "paging"
IMAGE = f"{REGISTRY}/ci"
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_examples = itertools.count()

tag_names = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    running = InProcessRegistry(tmp_path_factory.mktemp("paging") / "data")
    running.run(running.services.registries.create(REGISTRY, public=True))
    running.run(push_image(running.client, IMAGE, make_image("paging"), "seed"))
    yield running
    running.close()


def _next_last(link: str | None) -> str | None:
    """The `last` of the next page from a `Link: <…?n=…&last=…>; rel="next"` header."""
    if not link:
        return None
    query = parse_qs(urlsplit(link.split(";")[0].strip("<> ")).query)
    return query["last"][0]


async def _tag(registry: InProcessRegistry, tag: str) -> None:
    manifest = make_image("paging")
    response = await registry.client.put(
        f"/v2/{IMAGE}/manifests/{tag}",
        content=manifest.manifest,
        headers={"Content-Type": manifest.media_type},
    )
    assert response.status_code == 201, response.text


@SETTINGS
@given(
    before=st.lists(tag_names, min_size=1, max_size=25, unique=True),
    added=st.lists(st.lists(tag_names, max_size=4), max_size=8),
    page_size=st.integers(1, 7),
)
def test_tag_pages_lose_and_repeat_nothing_while_tags_are_added(
    registry: InProcessRegistry, before: list[str], added: list[list[str]], page_size: int
) -> None:
    prefix = f"x{next(_examples)}-"  # this example's tags, after every earlier one's
    for tag in before:
        registry.run(_tag(registry, prefix + tag))
    seen: list[str] = []
    last: str | None = prefix
    batches = iter(added)
    while last is not None:
        response = registry.run(
            registry.client.get(f"/v2/{IMAGE}/tags/list", params={"n": page_size, "last": last})
        )
        assert response.status_code == 200, response.text
        page = response.json()["tags"] or []
        assert len(page) <= page_size
        seen += [tag for tag in page if tag.startswith(prefix)]
        last = _next_last(response.headers.get("link"))
        for tag in next(batches, []):  # the registry grows between two pages
            registry.run(_tag(registry, prefix + tag))
    assert seen == sorted(set(seen)), "a page repeated a tag or went back"
    missing = {prefix + tag for tag in before} - set(seen)
    assert not missing, f"tags present from the start were never listed: {sorted(missing)}"


@settings(SETTINGS, max_examples=10)
@given(
    before=st.lists(tag_names, min_size=1, max_size=8, unique=True),
    added=st.lists(st.lists(tag_names, max_size=2), max_size=4),
    page_size=st.integers(1, 4),
)
def test_catalog_pages_lose_and_repeat_nothing_while_images_are_added(
    registry: InProcessRegistry, before: list[str], added: list[list[str]], page_size: int
) -> None:
    prefix = f"{REGISTRY}/y{next(_examples)}-"  # after every earlier example's images
    image = make_image("paging")

    def push(name: str) -> None:
        registry.run(push_image(registry.client, prefix + name, image, "v1"))

    for name in before:
        push(name)
    seen: list[str] = []
    last: str | None = prefix
    batches = iter(added)
    while last is not None and last.startswith(prefix.rstrip("-")):
        response = registry.run(
            registry.client.get("/v2/_catalog", params={"n": page_size, "last": last})
        )
        assert response.status_code == 200, response.text
        page = response.json()["repositories"]
        assert len(page) <= page_size
        seen += [name for name in page if name.startswith(prefix)]
        last = _next_last(response.headers.get("link"))
        for name in next(batches, []):
            push(name)
    assert seen == sorted(set(seen)), "a page repeated an image or went back"
    missing = {prefix + name for name in before} - set(seen)
    assert not missing, f"images present from the start were never listed: {sorted(missing)}"
