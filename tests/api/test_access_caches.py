"""The request path caches who a token's user is and what they may do in a registry
(auth/generation.py), yet a change takes effect on the very next request, on every worker.

Each test warms the caches of both workers of the shared server with pulls on new connections
(the kernel spreads them over the workers), changes the rows through the CLI (another process,
so no worker hears of it but through the database), and at once pulls again, every pull on a
new connection: each must see the change. Disabling a user and revoking a personal access
token are proven the same way in test_auth_attacks.py.
"""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from authtools import add_user, bearer, cli, describe, push_image, token_for
from support.server import RunningServer

TAG = "v1"
ROUNDS = 12  # pulls per step, each on a new connection: both workers answer some


def _pull_statuses(server: RunningServer, repo: str, token: str) -> set[int]:
    statuses = set()
    for _ in range(ROUNDS):
        response = httpx.get(
            f"{server.url}/v2/{repo}/manifests/{TAG}",
            headers={"Authorization": bearer(token)},
            timeout=30,
        )
        assert response.status_code in (200, 404), describe(response)
        statuses.add(response.status_code)
    return statuses


def test_leaving_a_group_stops_pulls_at_once(server: RunningServer, client: httpx.Client) -> None:
    user, group, registry = "cache-gina", "cache-team", "cache-private"
    add_user(server, user, "gina-password")
    cli(server, "group", "create", group, "--owner", "admin")
    cli(server, "registry", "create", registry, "--owner", "admin", "--group", group)
    cli(server, "group", "member", group, user, "guest")
    repo = f"{registry}/app"
    push_image(client, repo, "cache gina", tag=TAG)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = token_for(http, (user, "gina-password"), [f"repository:{repo}:pull"])

    assert _pull_statuses(server, repo, token) == {200}
    cli(server, "group", "member", group, user, "none")
    assert _pull_statuses(server, repo, token) == {404}  # as if it did not exist
    cli(server, "group", "member", group, user, "guest")
    assert _pull_statuses(server, repo, token) == {200}


def test_a_registry_made_private_stops_strangers_at_once(
    server: RunningServer, client: httpx.Client
) -> None:
    user, registry = "cache-sam", "cache-public"
    add_user(server, user, "sam-password")
    cli(server, "registry", "create", registry, "--public")
    repo = f"{registry}/app"
    push_image(client, repo, "cache sam", tag=TAG)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = token_for(http, (user, "sam-password"), [f"repository:{repo}:pull"])

    assert _pull_statuses(server, repo, token) == {200}
    cli(server, "registry", "update", registry, "--no-public")
    assert _pull_statuses(server, repo, token) == {404}
    cli(server, "registry", "update", registry, "--public")
    assert _pull_statuses(server, repo, token) == {200}


def test_only_changes_to_access_raise_the_generation(
    server: RunningServer, client: httpx.Client
) -> None:
    """A token's last use, a remark or a push leave the access caches alone (they would be
    emptied on every pull otherwise), while a change of visibility raises the generation."""
    if not (server.data_dir / "registry.db").exists():
        pytest.skip("reads the counter from the SQLite file")
    registry = "cache-quiet"
    cli(server, "registry", "create", registry, "--public")

    def generation() -> int:
        with sqlite3.connect(server.data_dir / "registry.db") as db:
            return db.execute("SELECT value FROM access_generation").fetchone()[0]

    before = generation()
    push_image(client, f"{registry}/app", "cache quiet", tag=TAG)
    cli(server, "registry", "update", registry, "--remark", "quiet")
    assert generation() == before
    cli(server, "registry", "update", registry, "--no-public")
    assert generation() > before
