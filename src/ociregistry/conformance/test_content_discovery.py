"""Content discovery: tag listing with pagination, and the referrers API of spec 1.1.

The namespace may hold tags of other tests or runs, so the tag tests check our own tags and
the pagination rules (order, `n`, `last`, `Link`) against the full list the registry returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ociregistry.conformance import content
from ociregistry.conformance.checks import (
    expect_error,
    expect_status,
    json_body,
    optional_feature,
)
from ociregistry.conformance.client import RegistryClient, Tracker, describe, parse_challenge
from ociregistry.conformance.settings import Settings

pytestmark = pytest.mark.content_discovery

_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')

ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
ANNOTATION = "org.opencontainers.conformance.test"


def next_link(response: httpx.Response) -> str | None:
    match = _NEXT_LINK.search(response.headers.get("Link", ""))
    return match.group(1) if match else None


def tag_list(response: httpx.Response, name: str) -> list[str]:
    expect_status(response, 200)
    body = json_body(response)
    assert isinstance(body, dict), describe(response)
    assert body.get("name") == name, f"name is not {name!r}\n{describe(response)}"
    tags = body.get("tags") or []
    assert isinstance(tags, list), describe(response)
    return tags


def is_lexical(names: list[str]) -> bool:
    """Byte order or case-insensitive order: both readings of "lexical" in the spec."""
    return names == sorted(names) or names == sorted(names, key=lambda t: (t.lower(), t))


# Tags --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def our_tags(module_tracker: Tracker) -> list[str]:
    prefix = content.unique("disc")
    tags = [f"{prefix}-{i}" for i in range(6)]
    image = content.make_image()
    for blob in image.blobs:
        module_tracker.push_blob(blob)
    for tag in tags:
        module_tracker.push_manifest(image.manifest, tag)
    return tags


@pytest.fixture
def all_tags(client: RegistryClient, namespace: str, our_tags: list[str]) -> list[str]:
    return tag_list(client.tags(), namespace)


def test_list_tags(client: RegistryClient, namespace: str, our_tags: list[str]) -> None:
    response = client.tags()
    tags = tag_list(response, namespace)
    missing = [tag for tag in our_tags if tag not in tags]
    assert not missing, f"pushed tags {missing} not listed\n{describe(response)}"
    assert is_lexical(tags), f"tags are not in lexical order: {tags}\n{describe(response)}"
    assert len(tags) == len(set(tags)), f"duplicate tags\n{describe(response)}"


def test_tags_limited_by_n(
    client: RegistryClient, namespace: str, all_tags: list[str], strict: bool
) -> None:
    """`n` returns exactly the first n tags when there are more (and a Link to the rest)."""
    n = max(1, len(all_tags) // 2)
    response = client.tags(n=str(n))
    tags = tag_list(response, namespace)
    assert tags == all_tags[:n], f"expected the first {n} tags {all_tags[:n]}\n{describe(response)}"
    if strict or "Link" in response.headers:
        link = next_link(response)
        assert link, (
            f'no Link header with rel="next" although more tags exist\n{describe(response)}'
        )


def test_tags_start_after_last(client: RegistryClient, namespace: str, all_tags: list[str]) -> None:
    """`last` is exclusive: the page starts with the tag after it (official "last" check)."""
    n = max(1, len(all_tags) // 2)
    last = all_tags[n - 1]
    response = client.tags(n=str(n), last=last)
    tags = tag_list(response, namespace)
    assert last not in tags, describe(response)
    assert len(tags) <= n, describe(response)
    assert tags == all_tags[n : 2 * n], f"expected {all_tags[n : 2 * n]}\n{describe(response)}"


def test_tags_last_without_n(
    client: RegistryClient, namespace: str, all_tags: list[str], our_tags: list[str]
) -> None:
    """ "When using the last query parameter, the n parameter is OPTIONAL"."""
    last = our_tags[2]
    response = client.tags(last=last)
    tags = tag_list(response, namespace)
    assert tags, describe(response)
    assert all(tag in all_tags[all_tags.index(last) + 1 :] for tag in tags), describe(response)
    assert tags == all_tags[all_tags.index(last) + 1 :][: len(tags)], describe(response)


def test_tags_pagination_follows_link(
    client: RegistryClient, namespace: str, all_tags: list[str], strict: bool
) -> None:
    """Walking the Link headers with n=2 yields the full list, in order, once."""
    collected: list[str] = []
    response = client.tags(n="2")
    for _ in range(len(all_tags) + 2):
        page = tag_list(response, namespace)
        assert len(page) <= 2, describe(response)
        collected.extend(page)
        link = next_link(response)
        if link is None:
            if len(collected) < len(all_tags) and page:
                optional_feature(False, "Link pagination headers", response, strict=strict)
                response = client.tags(n="2", last=page[-1])
                continue
            break
        response = client.get(client.absolute(link))
    assert collected == all_tags, f"paged {collected}\nfull  {all_tags}"


def test_tags_n_zero_is_empty(client: RegistryClient, namespace: str, our_tags: list[str]) -> None:
    """ "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link"."""
    response = client.tags(n="0")
    assert tag_list(response, namespace) == [], describe(response)
    assert next_link(response) is None, describe(response)


def test_tags_of_unknown_repository(client: RegistryClient, namespace: str, strict: bool) -> None:
    response = client.tags(f"{namespace}-{content.unique('nothere')}")
    expect_error(response, 404, "NAME_UNKNOWN", strict=strict)


def test_catalog_challenge(client: RegistryClient, settings: Settings) -> None:
    """A registry that challenges for the catalog names its scope, `registry:catalog:*`, so
    that a client signing in when challenged lists what its user may see."""
    with httpx.Client(base_url=settings.root_url, timeout=60.0) as anonymous:
        response = anonymous.get("/v2/_catalog")
    if response.status_code != 401:
        pytest.skip(f"the catalog answers {response.status_code} without credentials")
    scheme, challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
    if scheme == "bearer":
        assert challenge.get("scope") == "registry:catalog:*", f"challenge: {challenge}"
    listed = client.get("/v2/_catalog")
    expect_status(listed, 200)


def test_catalog(client: RegistryClient, namespace: str, our_tags: list[str], strict: bool) -> None:
    """_catalog is not part of spec 1.1 (registries MAY keep it); strict runs require it."""
    response = client.get("/v2/_catalog")
    optional_feature(response.status_code == 200, "/v2/_catalog", response, strict=strict)
    repositories = json_body(response).get("repositories") or []
    assert namespace in repositories, f"{namespace} not in catalog\n{describe(response)}"
    assert is_lexical(repositories), describe(response)
    paged: list[str] = []
    response = client.get("/v2/_catalog", params={"n": "1"})
    for _ in range(len(repositories) + 2):
        expect_status(response, 200)
        page = json_body(response).get("repositories") or []
        assert len(page) <= 1, describe(response)
        paged.extend(page)
        link = next_link(response)
        if link is None:
            break
        response = client.get(client.absolute(link))
    assert paged == repositories, f"paged {paged}\nfull  {repositories}"


# Referrers ---------------------------------------------------------------------------------


@dataclass
class Referrers:
    """The official referrers fixture: 5 referrers of one subject, 1 of a missing subject."""

    subject: content.Manifest
    missing_subject: content.Manifest
    expected: dict[str, tuple[content.Manifest, str]] = field(default_factory=dict)
    orphan: content.Manifest | None = None
    put_responses: list[tuple[content.Manifest, httpx.Response]] = field(default_factory=list)


@pytest.fixture(scope="module")
def referrers(module_tracker: Tracker) -> Referrers:
    subject_image, missing_image = content.make_image(), content.make_image()
    subject = subject_image.manifest
    setup = Referrers(subject, missing_image.manifest)
    blob_a = content.random_blob(media_type=ARTIFACT_TYPE_A)
    blob_b = content.random_blob(media_type=ARTIFACT_TYPE_B)

    def push(manifest: content.Manifest, artifact_type: str | None) -> None:
        response = module_tracker.push_manifest(manifest)
        setup.put_responses.append((manifest, response))
        if artifact_type is not None:
            setup.expected[manifest.digest] = (manifest, artifact_type)

    def config_artifact(blob: content.Blob, label: str) -> content.Manifest:
        return content.image_manifest(
            blob, [content.EMPTY_JSON], subject=subject, annotations={ANNOTATION: label}
        )

    def layer_artifact(blob: content.Blob, label: str | None) -> content.Manifest:
        return content.image_manifest(
            content.EMPTY_JSON,
            [blob],
            artifact_type=blob.media_type,
            subject=subject if label else setup.missing_subject,
            annotations={ANNOTATION: label} if label else None,
        )

    module_tracker.push_blob(content.EMPTY_JSON)
    module_tracker.push_blob(blob_a)
    # Referrers pushed before their subject exists: registries MUST accept them.
    config_a, layer_a = (
        config_artifact(blob_a, "test config a"),
        layer_artifact(blob_a, "test layer a"),
    )
    push(config_a, ARTIFACT_TYPE_A)
    push(layer_a, ARTIFACT_TYPE_A)
    index = content.index_manifest(
        [config_a, layer_a],
        artifact_type=ARTIFACT_TYPE_INDEX,
        subject=subject,
        annotations={ANNOTATION: "test index"},
        platforms=False,
    )
    push(index, ARTIFACT_TYPE_INDEX)
    module_tracker.push_image(subject_image, content.unique("subject"))
    module_tracker.push_blob(blob_b)
    push(config_artifact(blob_b, "test config b"), ARTIFACT_TYPE_B)
    push(layer_artifact(blob_b, "test layer b"), ARTIFACT_TYPE_B)
    setup.orphan = layer_artifact(blob_b, None)
    push(setup.orphan, None)
    return setup


def referrers_index(response: httpx.Response) -> list[dict[str, Any]]:
    expect_status(response, 200)
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith(content.OCI_INDEX), f"Content-Type {content_type}\n" + describe(
        response
    )
    body = json_body(response)
    assert body.get("schemaVersion") == 2, describe(response)
    assert body.get("mediaType") == content.OCI_INDEX, describe(response)
    manifests = body.get("manifests")
    assert isinstance(manifests, list), describe(response)
    return manifests


def check_descriptor(entry: dict[str, Any], setup: Referrers, response: httpx.Response) -> None:
    """Each descriptor: the manifest's media type and size, artifactType and annotations."""
    assert entry.get("digest") in setup.expected, f"unexpected referrer {entry}\n" + describe(
        response
    )
    manifest, artifact_type = setup.expected[entry["digest"]]
    assert entry.get("mediaType") == manifest.media_type, describe(response)
    assert entry.get("size") == manifest.size, describe(response)
    assert entry.get("artifactType") == artifact_type, describe(response)
    assert entry.get("annotations") == manifest.doc.get("annotations"), describe(response)


def test_subject_header_on_push(referrers: Referrers) -> None:
    """A registry with the referrers API answers a push that has `subject` with OCI-Subject."""
    for manifest, response in referrers.put_responses:
        subject = manifest.doc["subject"]["digest"]
        assert response.headers.get("OCI-Subject") == subject, describe(response)


def test_referrers_of_unknown_digest_is_empty(client: RegistryClient) -> None:
    response = client.get(client.referrers_url(content.unknown_digest()))
    assert referrers_index(response) == [], describe(response)


def test_referrers_list(client: RegistryClient, referrers: Referrers) -> None:
    response = client.get(client.referrers_url(referrers.subject.digest))
    entries = referrers_index(response)
    digests = [entry.get("digest") for entry in entries]
    assert sorted(digests) == sorted(referrers.expected), (
        f"expected the 5 referrers {sorted(referrers.expected)}\n{describe(response)}"
    )
    for entry in entries:
        check_descriptor(entry, referrers, response)


def test_referrers_filtered_by_artifact_type(
    client: RegistryClient, referrers: Referrers, strict: bool
) -> None:
    response = client.get(
        client.referrers_url(referrers.subject.digest), params={"artifactType": ARTIFACT_TYPE_A}
    )
    entries = referrers_index(response)
    applied = response.headers.get("OCI-Filters-Applied")
    if applied is None:
        assert len(entries) == len(referrers.expected), describe(response)
        optional_feature(False, "referrers artifactType filter", response, strict=strict)
    assert applied == "artifactType", describe(response)
    expected = {d for d, (_, kind) in referrers.expected.items() if kind == ARTIFACT_TYPE_A}
    assert {entry.get("digest") for entry in entries} == expected, describe(response)
    assert len(entries) == 2, describe(response)
    for entry in entries:
        check_descriptor(entry, referrers, response)


def test_referrers_filter_without_match(client: RegistryClient, referrers: Referrers) -> None:
    response = client.get(
        client.referrers_url(referrers.subject.digest),
        params={"artifactType": "application/vnd.example.nothing"},
    )
    entries = referrers_index(response)
    if response.headers.get("OCI-Filters-Applied") == "artifactType":
        assert entries == [], describe(response)
    else:
        assert len(entries) == len(referrers.expected), describe(response)


def test_referrers_of_an_empty_repository(client: RegistryClient, namespace: str) -> None:
    """A repository nothing was pushed to has no referrers: an empty index, not an error."""
    empty = f"{namespace}-{content.unique('empty')}"
    response = client.get(client.referrers_url(content.unknown_digest(), empty))
    assert referrers_index(response) == [], describe(response)


def test_referrers_of_missing_manifest(client: RegistryClient, referrers: Referrers) -> None:
    """Referrers of a subject that was never pushed are listed all the same."""
    assert referrers.orphan is not None
    response = client.get(client.referrers_url(referrers.missing_subject.digest))
    entries = referrers_index(response)
    assert [entry.get("digest") for entry in entries] == [referrers.orphan.digest], describe(
        response
    )
    assert entries[0].get("artifactType") == ARTIFACT_TYPE_B, describe(response)


def test_referrers_with_invalid_digest(client: RegistryClient, strict: bool) -> None:
    response = client.get(client.referrers_url("sha256:totallywrong"))
    expect_error(response, (400, 404), "DIGEST_INVALID", "MANIFEST_UNKNOWN", strict=strict)
