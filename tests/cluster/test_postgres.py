"""The same registry on PostgreSQL: a real server process on a real PostgreSQL cluster, started
for this test module (Debian's `postgresql` package, which scripts/test installs).

The conformance suite and a walk through the management API, pull counts and deletion must
pass exactly as they do on the embedded SQLite.

Then several instances: two servers on one database and one data folder (the shared object
store), each request sent to either of them as a load balancer would, must act as one registry.
Nothing that must be shared between requests may live only in one process's memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from authtools import basic, bearer, jwt_header, request_token, token_for
from support.conformance import MIN_TESTS, REGISTRY, run_suite, totals
from support.oci import (
    blob_status,
    catalog,
    digest_of,
    error_of,
    make_image,
    patch_chunk,
    push_blob,
    push_image,
    start_upload,
    tag_list,
    upload_progress,
)
from support.pgcluster import URL_ENV, PostgresCluster
from support.server import RunningServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def pg_server(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("pg-registry") / "data",
        env={URL_ENV: postgres.create_database("registry")},
    ).start()
    yield running
    running.stop()


def test_conformance_suite_passes_on_postgres(pg_server: RunningServer, tmp_path: Path) -> None:
    pg_server.create_registry(REGISTRY)
    result, report = run_suite(pg_server, tmp_path / "junit.xml")
    counts = totals(report)
    summary = f"{counts}\n{result.stdout[-5000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, summary
    assert counts["failures"] == counts["errors"] == 0, summary
    assert counts["tests"] >= MIN_TESTS, summary


def _push(client: httpx.Client, repo: str, tag: str) -> str:
    import hashlib
    import json

    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    pushed = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": config_digest}, content=config
    )
    assert pushed.status_code == 201, pushed.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    put = client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    return put.headers["Docker-Content-Digest"]


def test_console_features_on_postgres(pg_server: RunningServer) -> None:
    """Registries with labels, image and tag lists, pull counts, and deletion."""
    with httpx.Client(base_url=pg_server.url, auth=pg_server.admin, timeout=60) as client:
        created = client.post(
            "/api/v1/registries",
            json={
                "name": "pg-team",
                "remark": "on postgres",
                "labels": {"env": "prod"},
            },
        )
        assert created.status_code == 201, created.text
        for tag in ("1.0", "2.0"):
            _push(client, "pg-team/app", tag)
        _push(client, "pg-team/tool", "1.0")

        listed = client.get("/api/v1/registries", params={"label": "env:prod", "q": "pg-"})
        assert [r["name"] for r in listed.json()["items"]] == ["pg-team"]
        assert listed.json()["items"][0]["image_count"] == 2

        assert client.get("/v2/pg-team/app/manifests/1.0").status_code == 200
        deadline = time.monotonic() + 5
        while True:
            image = client.get("/api/v1/registries/pg-team/images/app").json()
            if image["pull_count"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert image["pull_count"] == 1 and image["latest_tag"] == "2.0"
        tags = client.get("/api/v1/registries/pg-team/images/app/-/tags").json()["items"]
        assert {t["name"]: t["pull_count"] for t in tags} == {"1.0": 1, "2.0": 0}

        refused = client.delete("/api/v1/registries/pg-team")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == (
            "REGISTRY_NOT_EMPTY"
        )
        assert client.delete("/api/v1/registries/pg-team/images/app/-/tags/1.0").json() == {
            "name": "1.0",
            "image_deleted": False,
        }
        accepted = client.delete("/api/v1/registries/pg-team", params={"delete_images": "true"})
        assert accepted.status_code in (202, 204), accepted.text
        deadline = time.monotonic() + 30
        while client.get("/api/v1/registries/pg-team").status_code != 404:
            assert time.monotonic() < deadline, "the registry was never deleted"
            time.sleep(0.2)
        again = client.post("/api/v1/registries", json={"name": "pg-team"})
        assert again.status_code == 201, again.text


# -- several instances ------------------------------------------------------------------------
#
# Instance A and instance B: two `serve` processes (two workers each) on one database and one
# data folder. Each step names the instance it sends a request to, alternating as a load
# balancer would; every answer must be the one a single registry would give.

COUNTS_DEADLINE_SECONDS = 10.0  # how long to wait for counts to show, not a speed requirement


def _start_together(
    postgres: PostgresCluster, database: str, folder: Path
) -> tuple[RunningServer, RunningServer]:
    """Instances A and B, started at the same moment on a new, empty database and one data
    folder, as a deployment's instances come up together."""
    env = {URL_ENV: postgres.create_database(database)}
    pair = RunningServer(folder / "data", env=env), RunningServer(folder / "data", env=env)
    pair[1].log_path = folder / "data-b-server.log"  # the same data folder, a log of its own
    with ThreadPoolExecutor(len(pair)) as pool:
        errors = [started.exception() for started in [pool.submit(s.start) for s in pair]]
    if any(errors):
        for server in pair:
            server.kill()
        pytest.fail("\n".join(str(error) for error in errors if error))
    return pair


@pytest.fixture(scope="module")
def instances(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    a, b = _start_together(postgres, "shared", tmp_path_factory.mktemp("pg-instances"))
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def admin_clients(
    instances: tuple[RunningServer, RunningServer],
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The platform admin's clients of A and of B (Basic credentials on every request)."""
    a, b = instances
    with (
        httpx.Client(base_url=a.url, auth=a.admin, timeout=60) as on_a,
        httpx.Client(base_url=b.url, auth=b.admin, timeout=60) as on_b,
    ):
        yield on_a, on_b


def _new_registry(client: httpx.Client, name: str) -> None:
    created = client.post("/api/v1/registries", json={"name": name})
    assert created.status_code == 201, created.text


def test_instances_starting_together_on_an_empty_database(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Both come up (migrations, the signing key and the first admin take turns), with one
    admin account and one token-signing key between them. A few rounds: a race shows only
    now and then."""
    for attempt in range(3):
        database = f"together{attempt}"
        a, b = _start_together(postgres, database, tmp_path_factory.mktemp("pg-together"))
        try:
            for server in (a, b):
                assert server.process is not None and server.process.poll() is None
                users = httpx.get(f"{server.url}/api/v1/users", auth=server.admin, timeout=60)
                assert users.status_code == 200, users.text
                assert [(u["username"], u["is_admin"]) for u in users.json()["items"]] == [
                    ("admin", True)
                ]
            # With two keys, which one a worker signs with and which it knows depend on when
            # it started: one instance may refuse the tokens of the other.
            keys = postgres.tool(
                "psql", "-At", "-d", database, "-c", "SELECT count(*) FROM signing_keys"
            )
            assert keys.strip() == "1"
        finally:
            a.stop()
            b.stop()


def test_a_token_from_one_instance_is_accepted_by_the_other(
    instances: tuple[RunningServer, RunningServer], admin_clients: tuple[httpx.Client, httpx.Client]
) -> None:
    """Signing keys live in the database: a registry token from A pushes to B and one from B
    pushes to A, whichever worker issued or checks it."""
    a, b = instances
    _new_registry(admin_clients[0], "lb-tokens")
    repo = "lb-tokens/app"
    kids = set()
    for attempt in range(4):
        for issuer, verifier in ((a, b), (b, a)):
            with httpx.Client(base_url=issuer.url, timeout=60) as anonymous:
                token = token_for(anonymous, issuer.admin, [f"repository:{repo}:pull,push"])
            kids.add(jwt_header(token)["kid"])
            blob = f"pushed to {verifier.port} with a token of {issuer.port}, {attempt}".encode()
            with httpx.Client(base_url=verifier.url, timeout=60) as holder:
                assert push_blob(holder, repo, blob).status_code == 401  # without the token
                holder.headers["Authorization"] = bearer(token)
                pushed = push_blob(holder, repo, blob)
                assert pushed.status_code == 201, pushed.text
                assert blob_status(holder, repo, digest_of(blob)) == 200
    assert len(kids) == 1  # one key signs for every instance


def test_a_chunked_upload_spread_over_both_instances(
    admin_clients: tuple[httpx.Client, httpx.Client],
) -> None:
    """POST on A, PATCH on B, PATCH on A, PUT (with a last chunk) on B: the session is in the
    shared store, and the digest covers every chunk whichever process received it."""
    on_a, on_b = admin_clients
    _new_registry(on_a, "lb-upload")
    repo = "lb-upload/app"
    chunks = [os.urandom(1 << 20), os.urandom(300_000), os.urandom(4096)]
    data = b"".join(chunks)
    digest = digest_of(data)
    first_end, second_end = len(chunks[0]), len(chunks[0]) + len(chunks[1])

    location = start_upload(on_a, repo)
    first = patch_chunk(on_b, location, chunks[0], f"0-{first_end - 1}")
    assert first.status_code == 202, first.text
    assert first.headers["Range"] == f"0-{first_end - 1}"
    second = patch_chunk(on_a, location, chunks[1], f"{first_end}-{second_end - 1}")
    assert second.status_code == 202, second.text
    assert second.headers["Range"] == f"0-{second_end - 1}"
    assert upload_progress(on_b, location) == (204, f"0-{second_end - 1}")
    finished = on_b.put(
        location,
        params={"digest": digest},
        content=chunks[2],
        headers={"Content-Type": "application/octet-stream"},
    )
    assert finished.status_code == 201, finished.text
    assert finished.headers["Docker-Content-Digest"] == digest

    for client in (on_a, on_b):
        served = client.get(f"/v2/{repo}/blobs/{digest}")
        assert served.status_code == 200, served.text
        assert served.headers["Docker-Content-Digest"] == digest
        assert served.content == data
    assert upload_progress(on_a, location)[0] == 404  # the finished session is gone for both


def test_a_manifest_pushed_on_one_instance_is_served_by_the_other(
    admin_clients: tuple[httpx.Client, httpx.Client],
) -> None:
    on_a, on_b = admin_clients
    _new_registry(on_a, "lb-manifests")
    repo = "lb-manifests/app"
    image = make_image("lb-manifests")
    push_image(on_a, repo, image, tag="1.0")

    for reference in ("1.0", image.digest):
        served = on_b.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert served.status_code == 200, served.text
        assert served.content == image.manifest
        assert served.headers["Docker-Content-Digest"] == image.digest
    assert [blob_status(on_b, repo, digest_of(blob)) for blob in image.blobs] == [200, 200]
    assert tag_list(on_a, repo) == tag_list(on_b, repo) == (200, ["1.0"])
    listed = catalog(on_a)
    assert repo in listed
    assert catalog(on_b) == listed


def test_pulls_on_both_instances_add_up(admin_clients: tuple[httpx.Client, httpx.Client]) -> None:
    """Each worker of each instance counts in memory and adds to the database: the image and
    the tag show every pull exactly once, whichever instance is asked."""
    on_a, on_b = admin_clients
    _new_registry(on_a, "lb-pulls")
    repo = "lb-pulls/app"
    push_image(on_a, repo, make_image("lb-pulls"), tag="1.0")
    pulls = [(on_a, 5), (on_b, 7)]
    for turn in range(max(n for _, n in pulls)):
        for client, n in pulls:
            if turn < n:
                assert client.get(f"/v2/{repo}/manifests/1.0").status_code == 200
    assert on_b.head(f"/v2/{repo}/manifests/1.0").status_code == 200  # a HEAD never counts
    expected = sum(n for _, n in pulls)

    def counts() -> list[tuple[int, int]]:
        """(image, tag) pull counts as A and as B report them."""
        seen = []
        for client in (on_a, on_b):
            image = client.get("/api/v1/registries/lb-pulls/images/app")
            tags = client.get("/api/v1/registries/lb-pulls/images/app/-/tags")
            assert image.status_code == tags.status_code == 200, image.text + tags.text
            by_name = {t["name"]: t["pull_count"] for t in tags.json()["items"]}
            seen.append((image.json()["pull_count"], by_name["1.0"]))
        return seen

    deadline = time.monotonic() + COUNTS_DEADLINE_SECONDS
    seen = counts()
    while any(n < expected for pair in seen for n in pair) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = counts()
    assert seen == [(expected, expected), (expected, expected)]


def test_registry_names_and_tag_deletion_are_shared(
    admin_clients: tuple[httpx.Client, httpx.Client],
) -> None:
    on_a, on_b = admin_clients
    created = on_a.post("/api/v1/registries", json={"name": "lb-shared"})
    assert created.status_code == 201, created.text
    duplicate = on_b.post("/api/v1/registries", json={"name": "lb-shared"})
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["error"]["code"] == "REGISTRY_EXISTS"
    assert on_b.get("/api/v1/registries/lb-shared").json()["id"] == created.json()["id"]

    repo = "lb-shared/app"
    push_image(on_a, repo, make_image("lb-shared 1"), tag="1.0")
    push_image(on_a, repo, make_image("lb-shared 2"), tag="2.0")
    assert on_a.get(f"/v2/{repo}/manifests/1.0").status_code == 200  # A has served it once
    deleted = on_b.delete("/api/v1/registries/lb-shared/images/app/-/tags/1.0")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"name": "1.0", "image_deleted": False}

    gone = on_a.get(f"/v2/{repo}/manifests/1.0")
    assert gone.status_code == 404
    assert error_of(gone)[0] == "MANIFEST_UNKNOWN"
    assert tag_list(on_a, repo) == (200, ["2.0"])
    tags = on_a.get("/api/v1/registries/lb-shared/images/app/-/tags").json()["items"]
    assert [t["name"] for t in tags] == ["2.0"]


def test_the_same_name_created_on_both_instances_at_once_is_created_once(
    admin_clients: tuple[httpx.Client, httpx.Client],
) -> None:
    """Two instances write side by side: one creation wins, the other is a clean 409."""
    requests = [
        ("/api/v1/users", {"username": f"lb-user-{i}", "password": "lb-password"}) for i in range(4)
    ] + [("/api/v1/registries", {"name": f"lb-race-{i}"}) for i in range(4)]
    with ThreadPoolExecutor(len(admin_clients)) as pool:
        for path, body in requests:
            sent = [pool.submit(client.post, path, json=body) for client in admin_clients]
            answers = [request.result() for request in sent]
            assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]


def test_a_token_revoked_on_one_instance_stops_working_on_the_other(
    instances: tuple[RunningServer, RunningServer], admin_clients: tuple[httpx.Client, httpx.Client]
) -> None:
    """A personal access token revoked on A is refused by B at once: as a password, as a
    bearer token, at the token endpoint, and through a registry token B issued for it."""
    _, b = instances
    on_a, _ = admin_clients
    created = on_a.post("/api/v1/users/me/tokens", json={"name": "lb-ci"})
    assert created.status_code == 201, created.text
    pat, pat_id = created.json()["token"], created.json()["id"]
    username = b.admin[0]

    with httpx.Client(base_url=b.url, timeout=60) as on_b:
        registry_token = token_for(on_b, (username, pat), [])
        presented = [
            ("/api/v1/users/me", basic(username, pat)),
            ("/api/v1/users/me", bearer(pat)),
            ("/api/v1/users/me", bearer(registry_token)),
            ("/v2/", bearer(registry_token)),
        ]

        def statuses() -> list[int]:
            return [
                on_b.get(path, headers={"Authorization": header}).status_code
                for path, header in presented
            ]

        assert statuses() == [200, 200, 200, 200]
        revoked = on_a.delete(f"/api/v1/users/me/tokens/{pat_id}")
        assert revoked.status_code == 204, revoked.text
        assert statuses() == [401, 401, 401, 401]
        assert request_token(on_b, (username, pat), []).status_code == 401


def test_access_changed_on_one_instance_acts_at_once_on_the_other(
    instances: tuple[RunningServer, RunningServer], admin_clients: tuple[httpx.Client, httpx.Client]
) -> None:
    """B caches what a token's user may do in a registry (auth/generation.py); a registry
    made private on A, and a user disabled on A, are refused by B on the next request, on
    every worker of B (each pull on a new connection)."""
    _, b = instances
    on_a, _ = admin_clients
    user, registry = "lb-cached", "lb-cached-reg"
    created = on_a.post("/api/v1/users", json={"username": user, "password": "lb-password"})
    assert created.status_code == 201, created.text
    made = on_a.post("/api/v1/registries", json={"name": registry, "public": True})
    assert made.status_code == 201, made.text
    repo = f"{registry}/app"
    push_image(on_a, repo, make_image("lb-cached"), tag="1.0")
    with httpx.Client(base_url=b.url, timeout=60) as on_b:
        token = token_for(on_b, (user, "lb-password"), [f"repository:{repo}:pull"])

    def pulls_on_b() -> set[int]:
        return {
            httpx.get(
                f"{b.url}/v2/{repo}/manifests/1.0",
                headers={"Authorization": bearer(token)},
                timeout=60,
            ).status_code
            for _ in range(10)
        }

    assert pulls_on_b() == {200}
    changed = on_a.patch(f"/api/v1/registries/{registry}", json={"public": False})
    assert changed.status_code == 200, changed.text
    assert pulls_on_b() == {404}
    changed = on_a.patch(f"/api/v1/registries/{registry}", json={"public": True})
    assert changed.status_code == 200, changed.text
    assert pulls_on_b() == {200}
    disabled = on_a.patch(f"/api/v1/users/{user}", json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    assert pulls_on_b() == {401}
