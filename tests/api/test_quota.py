"""Registry quotas (issue 14, point 2): set by platform admins, enforced at the manifest PUT
that would add the bytes, atomically across worker processes and instances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from authtools import add_user
from support.oci import (
    OCI_CONFIG,
    OCI_LAYER,
    canonical_json,
    descriptor,
    digest_of,
    error_of,
    push_blob,
    put_manifest,
)
from support.pgcluster import URL_ENV, PostgresCluster
from support.server import RunningServer

LAYER_BYTES = 20_000


def _image(label: str) -> tuple[bytes, list[bytes]]:
    """An image of about LAYER_BYTES whose blobs no other image shares."""
    config = canonical_json({"os": "linux", "architecture": "amd64", "label": label})
    layer = (label.encode() * LAYER_BYTES)[:LAYER_BYTES]
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, layer)],
        }
    )
    return manifest, [config, layer]


def _size(manifest: bytes, blobs: list[bytes]) -> int:
    return len(manifest) + sum(len(blob) for blob in blobs)


def _registry(client: httpx.Client, name: str) -> dict:
    response = client.get(f"/api/v1/registries/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def _set_quota(client: httpx.Client, name: str, quota: int) -> httpx.Response:
    return client.patch(f"/api/v1/registries/{name}", json={"quota_bytes": quota})


def test_a_push_over_the_quota_is_refused_with_what_it_needs(
    client: httpx.Client, registry: str
) -> None:
    first, first_blobs = _image(f"{registry}-first")
    second, second_blobs = _image(f"{registry}-second")
    quota = _size(first, first_blobs) + LAYER_BYTES // 2
    assert _set_quota(client, registry, quota).status_code == 200
    assert _registry(client, registry)["quota_bytes"] == quota
    repo = f"{registry}/app"
    for blob in [*first_blobs, *second_blobs]:  # uploaded blobs count for nothing yet
        assert push_blob(client, repo, blob).status_code == 201
    assert _registry(client, registry)["size_bytes"] == 0
    assert put_manifest(client, repo, "1", first).status_code == 201
    used = _registry(client, registry)["size_bytes"]
    assert used == _size(first, first_blobs)

    refused = put_manifest(client, repo, "2", second)
    assert refused.status_code == 403
    code, message = error_of(refused)
    assert code == "DENIED"
    assert f"registry {registry} would exceed its storage quota" in message
    assert "this push needs" in message
    detail = refused.json()["errors"][0]["detail"]
    assert detail.pop("request_id")  # every error body names its request (ops/access.py)
    assert detail == {
        "registry": registry,
        "used_bytes": used,
        "quota_bytes": quota,
        "needed_bytes": _size(second, second_blobs),
    }
    # refused means unchanged: no manifest, no tag, the same figures
    assert client.get(f"/v2/{repo}/manifests/2").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{digest_of(second)}").status_code == 404
    assert _registry(client, registry)["size_bytes"] == used
    # the same manifest under another tag adds no bytes, so it passes
    assert put_manifest(client, repo, "1-again", first).status_code == 201
    # a larger quota lets the push through; 0 means none
    assert _set_quota(client, registry, 0).status_code == 200
    assert put_manifest(client, repo, "2", second).status_code == 201


def test_only_platform_admins_set_quotas(
    server: RunningServer, client: httpx.Client, registry_name: str
) -> None:
    username = f"quota-owner-{registry_name}"
    add_user(server, username, "owner-password-1")
    with httpx.Client(base_url=server.url, auth=(username, "owner-password-1")) as owner:
        created = owner.post("/api/v1/registries", json={"name": registry_name})
        assert created.status_code == 201, created.text
        denied = _set_quota(owner, registry_name, 1)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
        assert (
            owner.patch(f"/api/v1/registries/{registry_name}", json={"remark": "mine"}).status_code
            == 200
        )
    assert _registry(client, registry_name)["quota_bytes"] == 0
    for bad in (-1, 2**63, "10", True):
        response = _set_quota(client, registry_name, bad)  # type: ignore[arg-type]
        assert response.status_code == 400, bad
        assert response.json()["error"]["detail"]["field"] == "quota_bytes"
    assert _registry(client, registry_name)["quota_bytes"] == 0


def _race(urls: list[str], admin: tuple[str, str], registry: str, images: int) -> list[int]:
    """Push `images` images' blobs, then PUT all their manifests at once, spread over `urls`
    (the worker processes of one server, or several instances); the statuses of the PUTs."""
    prepared = [_image(f"{registry}-{n}") for n in range(images)]
    clients = [httpx.Client(base_url=url, auth=admin, timeout=60) for url in urls]
    try:
        for n, (_, blobs) in enumerate(prepared):
            for blob in blobs:
                assert (
                    push_blob(clients[n % len(clients)], f"{registry}/race{n}", blob).status_code
                    == 201
                )

        def put(n: int) -> int:
            manifest = prepared[n][0]
            http = clients[n % len(clients)]
            return put_manifest(http, f"{registry}/race{n}", "latest", manifest).status_code

        with ThreadPoolExecutor(images) as pool:
            return list(pool.map(put, range(images)))
    finally:
        for http in clients:
            http.close()


def _check_race(client: httpx.Client, registry: str, statuses: list[int], fits: int) -> None:
    assert sorted(statuses) == [201] * fits + [403] * (len(statuses) - fits), statuses
    shown = _registry(client, registry)
    assert shown["size_bytes"] <= shown["quota_bytes"]
    accepted = [n for n, status in enumerate(statuses) if status == 201]
    assert shown["size_bytes"] == sum(_size(*_image(f"{registry}-{n}")) for n in accepted)


def test_racing_pushes_on_two_worker_processes_cannot_pass_the_quota_together(
    server: RunningServer, client: httpx.Client, registry: str
) -> None:
    one = _size(*_image(f"{registry}-0"))
    assert _set_quota(client, registry, int(one * 3.5)).status_code == 200
    statuses = _race([server.url], server.admin, registry, 8)
    _check_race(client, registry, statuses, 3)


@pytest.fixture(scope="module")
def two_instances(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RunningServer]]:
    """Two servers on one PostgreSQL database and one data folder, as behind a load balancer."""
    url = postgres.create_database("quota")
    data = Path(tmp_path_factory.mktemp("quota-instances")) / "data"
    first = RunningServer(data, env={URL_ENV: url}).start()
    second = RunningServer(data, env={URL_ENV: url}).start()
    yield [first, second]
    second.stop()
    first.stop()


def test_racing_pushes_on_two_postgresql_instances_cannot_pass_the_quota_together(
    two_instances: list[RunningServer],
) -> None:
    first, second = two_instances
    first.create_registry("quota-race")
    with httpx.Client(base_url=first.url, auth=first.admin) as client:
        one = _size(*_image("quota-race-0"))
        assert _set_quota(client, "quota-race", int(one * 3.5)).status_code == 200
        statuses = _race([first.url, second.url], first.admin, "quota-race", 8)
        _check_race(client, "quota-race", statuses, 3)


def test_the_command_line_sets_quotas_and_prints_usage(
    server: RunningServer, client: httpx.Client, registry: str
) -> None:
    manifest, blobs = _image(f"{registry}-cli")
    for blob in blobs:
        assert push_blob(client, f"{registry}/app", blob).status_code == 201
    assert put_manifest(client, f"{registry}/app", "1", manifest).status_code == 201
    server.cli(
        "registry", "update", registry, "--quota-bytes", "123456789", "--immutable-tags", "v*,rc-?"
    )
    assert _registry(client, registry)["quota_bytes"] == 123456789
    assert _registry(client, registry)["immutable_tags"] == ["v*", "rc-?"]
    listed = json.loads(server.cli("registry", "list", "--json").stdout)
    row = next(r for r in listed if r["name"] == registry)
    assert (row["size_bytes"], row["unique_bytes"], row["quota_bytes"]) == (
        _size(manifest, blobs),
        _size(manifest, blobs),
        123456789,
    )
    images = json.loads(server.cli("image", "list", registry, "--json").stdout)
    assert [i["size_bytes"] for i in images] == [_size(manifest, blobs)]
