"""Immutable tags (issue 14, point 4): a registry's patterns make tags that never move once
pushed (the same digest again is fine), refused with 403 DENIED naming the tag and the rule,
atomically across worker processes and across instances on PostgreSQL; owners and admins may
still delete them, developers not."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from authtools import add_user
from support.oci import (
    OCI_INDEX,
    digest_of,
    error_of,
    make_image,
    make_index,
    push_image,
    put_manifest,
)
from support.pgcluster import URL_ENV, PostgresCluster
from support.server import RunningServer

DEVELOPER_PASSWORD = "developer-password-1"


@pytest.fixture
def governed(server: RunningServer, client: httpx.Client, registry_name: str) -> Iterator[str]:
    """A registry in a group of its own, with `v*` and `release-*` immutable, and a developer
    of that group (`dev-<registry>`)."""
    group = f"g-{registry_name}"
    assert client.post("/api/v1/project-groups", json={"name": group}).status_code == 201
    created = client.post(
        "/api/v1/registries", json={"name": registry_name, "project_group": group}
    )
    assert created.status_code == 201, created.text
    add_user(server, f"dev-{registry_name}", DEVELOPER_PASSWORD)
    member = client.put(
        f"/api/v1/project-groups/{group}/members/dev-{registry_name}", json={"role": "developer"}
    )
    assert member.status_code == 200, member.text
    patched = client.patch(
        f"/api/v1/registries/{registry_name}", json={"immutable_tags": ["v*", "release-*"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["immutable_tags"] == ["v*", "release-*"]
    yield registry_name


def _developer(server: RunningServer, registry: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, auth=(f"dev-{registry}", DEVELOPER_PASSWORD), timeout=60
    )


def test_an_immutable_tag_never_moves_and_the_same_digest_passes(
    client: httpx.Client, governed: str
) -> None:
    repo = f"{governed}/app"
    first, second = make_image(f"{governed}-1"), make_image(f"{governed}-2")
    push_image(client, repo, first, "v1.0")
    push_image(client, repo, second)  # by digest: its blobs and manifest are there
    again = put_manifest(client, repo, "v1.0", first.manifest)
    assert again.status_code == 201, again.text

    moved = put_manifest(client, repo, "v1.0", second.manifest)
    assert moved.status_code == 403
    code, message = error_of(moved)
    assert code == "DENIED"
    assert f"tag v1.0 of {repo} is immutable (rule 'v*' of the registry)" in message
    assert first.digest in message
    by_digest = client.put(
        f"/v2/{repo}/manifests/{second.digest}",
        params={"tag": ["latest", "release-1"]},
        content=second.manifest,
        headers={"Content-Type": second.media_type},
    )
    assert by_digest.status_code == 201, by_digest.text  # release-1 is new: it may be set
    moved_too = client.put(
        f"/v2/{repo}/manifests/{first.digest}",
        params={"tag": ["latest", "release-1"]},
        content=first.manifest,
        headers={"Content-Type": first.media_type},
    )
    assert moved_too.status_code == 403
    assert "tag release-1" in error_of(moved_too)[1]
    # refused means unchanged, every tag of the request included (all or none)
    for tag, digest in (("v1.0", first.digest), ("release-1", second.digest)):
        head = client.head(f"/v2/{repo}/manifests/{tag}")
        assert head.headers["docker-content-digest"] == digest
    assert (
        client.head(f"/v2/{repo}/manifests/latest").headers["docker-content-digest"]
        == second.digest
    )
    # tags no rule names move as ever
    assert put_manifest(client, repo, "latest", first.manifest).status_code == 201


def test_developers_may_not_delete_immutable_tags_owners_may(
    server: RunningServer, client: httpx.Client, governed: str
) -> None:
    repo = f"{governed}/app"
    image = make_image(f"{governed}-keep")
    push_image(client, repo, image, "v2")
    put_manifest(client, repo, "scratch", image.manifest)
    with _developer(server, governed) as developer:
        attempts = [
            developer.delete(f"/v2/{repo}/manifests/v2"),
            developer.delete(f"/v2/{repo}/manifests/{image.digest}"),
            developer.delete(f"/api/v1/registries/{governed}/images/app/-/tags/v2"),
            developer.delete(f"/api/v1/registries/{governed}/images/app"),
        ]
        for response in attempts:
            assert response.status_code == 403, response.text
            body = response.json()
            text = body["errors"][0]["message"] if "errors" in body else body["error"]["message"]
            assert "tag v2 of" in text and "immutable (rule 'v*')" in text
        batch = developer.post(
            f"/api/v1/registries/{governed}/images/app/-/tags:batchDelete",
            json={"tags": ["v2", "scratch"]},
        ).json()["results"]
        assert [item["ok"] for item in batch] == [False, True]  # a mutable tag still goes
        assert (
            developer.patch(
                f"/api/v1/registries/{governed}", json={"immutable_tags": []}
            ).status_code
            == 403
        )  # the rules are the owners'
    assert client.head(f"/v2/{repo}/manifests/v2").status_code == 200
    deleted = client.delete(f"/api/v1/registries/{governed}/images/app/-/tags/v2")
    assert deleted.status_code == 200, deleted.text
    assert client.head(f"/v2/{repo}/manifests/v2").status_code == 404


def test_bad_patterns_are_refused_and_change_nothing(client: httpx.Client, governed: str) -> None:
    for bad in (["v*", 3], "v*", ["a b"], ["x" * 129], [""], [f"p{n}" for n in range(21)]):
        response = client.patch(f"/api/v1/registries/{governed}", json={"immutable_tags": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["detail"]["field"] == "immutable_tags"
    shown = client.get(f"/api/v1/registries/{governed}").json()
    assert shown["immutable_tags"] == ["v*", "release-*"]


def test_racing_first_pushes_of_an_immutable_tag_leave_exactly_one_winner(
    server: RunningServer, governed: str
) -> None:
    """Eight different manifests pushed at once under one new immutable tag, spread over the
    server's worker processes: one wins, seven are refused, and the tag names the winner."""
    repo = f"{governed}/race"
    images = [make_image(f"{governed}-race-{n}") for n in range(8)]
    clients = [httpx.Client(base_url=server.url, auth=server.admin, timeout=60) for _ in images]
    try:
        for http, image in zip(clients, images, strict=True):
            push_image(http, repo, image)

        def put(n: int) -> int:
            return put_manifest(clients[n], repo, "v9", images[n].manifest).status_code

        with ThreadPoolExecutor(len(images)) as pool:
            statuses = list(pool.map(put, range(len(images))))
        assert sorted(statuses) == [201] + [403] * 7, statuses
        winner = images[statuses.index(201)]
        head = clients[0].head(f"/v2/{repo}/manifests/v9")
        assert head.headers["docker-content-digest"] == winner.digest == digest_of(winner.manifest)
    finally:
        for http in clients:
            http.close()


def test_racing_first_pushes_on_two_postgresql_instances_leave_exactly_one_winner(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """The same race as above, spread over two instances sharing one PostgreSQL database and
    one data folder (as behind a load balancer): the rule is held by the database, not by a
    process."""
    servers: list[RunningServer] = []
    try:
        url = postgres.create_database("immutable")
        for _ in range(2):
            servers.append(RunningServer(tmp_path / "data", env={URL_ENV: url}).start())
        first = servers[0]
        first.create_registry("immutable-race")
        repo = "immutable-race/app"
        images = [make_image(f"immutable-race-{n}") for n in range(8)]
        clients = [
            httpx.Client(base_url=servers[n % 2].url, auth=first.admin, timeout=60)
            for n in range(len(images))
        ]
        try:
            rules = clients[0].patch(
                "/api/v1/registries/immutable-race", json={"immutable_tags": ["v*"]}
            )
            assert rules.status_code == 200, rules.text
            for http, image in zip(clients, images, strict=True):
                push_image(http, repo, image)

            def put(n: int) -> int:
                return put_manifest(clients[n], repo, "v1", images[n].manifest).status_code

            with ThreadPoolExecutor(len(images)) as pool:
                statuses = list(pool.map(put, range(len(images))))
            assert sorted(statuses) == [201] + [403] * 7, statuses
            winner = images[statuses.index(201)]
            for http in clients[:2]:  # both instances name the winner
                head = http.head(f"/v2/{repo}/manifests/v1")
                assert head.headers["docker-content-digest"] == winner.digest
        finally:
            for http in clients:
                http.close()
    finally:
        for server in servers:
            server.stop()


def test_an_index_under_an_immutable_tag_is_held_the_same_way(
    client: httpx.Client, governed: str
) -> None:
    repo = f"{governed}/multi"
    first, second = make_image(f"{governed}-i1"), make_image(f"{governed}-i2")
    for image in (first, second):
        push_image(client, repo, image)

    one, two = make_index([first]), make_index([second])
    assert put_manifest(client, repo, "release-3", one, OCI_INDEX).status_code == 201
    assert put_manifest(client, repo, "release-3", two, OCI_INDEX).status_code == 403
