"""Protocol answers real clients depend on (issue 10, points 1-7 and 11), over HTTP.

Each test is one case a client got wrong before: the challenge of a cross-repository mount,
automatic cross-mount, the catalog's challenge, an out-of-order last chunk, referrers of an
empty repository, `?tag=` pushes and sha512 manifests pushed by tag, sparse indexes, and what a
push into a missing registry says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from authtools import (
    add_user,
    basic,
    bearer,
    create_pat,
    describe,
    oci_error,
    parse_challenge,
    token_for,
)
from support.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    blob_status,
    canonical_json,
    descriptor,
    digest_of,
    make_image,
    make_index,
    push_blob,
    push_image,
    put_manifest,
    start_upload,
    tag_list,
)
from support.server import RunningServer

PASSWORD = "protocol-test-password"


@pytest.fixture
def anonymous(server: RunningServer) -> Iterator[httpx.Client]:
    """A client without credentials, as a script that signs in only when challenged."""
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        yield http


@pytest.fixture(scope="module")
def stranger(server: RunningServer) -> tuple[str, str]:
    """A signed-in user who belongs to no group of the other tests' registries."""
    username = f"proto{os.getpid()}"
    add_user(server, username, PASSWORD)
    return username, PASSWORD


def own_registry(server: RunningServer, who: tuple[str, str], name: str) -> str:
    """A private registry `who` creates through the API, in their own group."""
    response = httpx.post(
        f"{server.url}/api/v1/registries", json={"name": name}, auth=who, timeout=60.0
    )
    assert response.status_code == 201, describe(response)
    return name


# -- 1. cross-repository mount with token auth ---------------------------------------------


def test_mount_challenge_asks_for_the_source_too(
    server: RunningServer, registry: str, client: httpx.Client, anonymous: httpx.Client
) -> None:
    source, target = f"{registry}/source", f"{registry}/target"
    layer = b"a layer to mount with a token"
    assert push_blob(client, source, layer).status_code == 201
    params = {"mount": digest_of(layer), "from": source}

    challenged = anonymous.post(f"/v2/{target}/blobs/uploads/", params=params)
    assert challenged.status_code == 401, describe(challenged)
    _, challenge = parse_challenge(challenged.headers.get("www-authenticate"))
    scopes = challenge["scope"].split()
    assert scopes == [f"repository:{target}:pull,push", f"repository:{source}:pull"], challenge

    # A token for the target alone: the user could pull the source, so ask for both.
    narrow = token_for(anonymous, server.admin, scopes[:1])
    refused = anonymous.post(
        f"/v2/{target}/blobs/uploads/", params=params, headers={"Authorization": bearer(narrow)}
    )
    assert refused.status_code == 401, describe(refused)
    _, challenge = parse_challenge(refused.headers.get("www-authenticate"))
    assert challenge["scope"].split() == scopes, challenge
    assert challenge.get("error") == "insufficient_scope", challenge
    assert blob_status(client, target, digest_of(layer)) == 404

    token = token_for(anonymous, server.admin, scopes)
    mounted = anonymous.post(
        f"/v2/{target}/blobs/uploads/", params=params, headers={"Authorization": bearer(token)}
    )
    assert mounted.status_code == 201, describe(mounted)
    assert mounted.headers["docker-content-digest"] == digest_of(layer)
    assert blob_status(client, target, digest_of(layer)) == 200


# -- 2. automatic cross-mount ----------------------------------------------------------------


def test_automatic_mount_takes_a_blob_the_caller_may_pull(
    server: RunningServer,
    registry: str,
    registry_name: str,
    client: httpx.Client,
    anonymous: httpx.Client,
    stranger: tuple[str, str],
) -> None:
    public_layer = f"public layer {registry}".encode()
    assert push_blob(client, f"{registry}/base", public_layer).status_code == 201
    private = f"{registry_name}-private"
    server.create_registry(private, public=False)
    private_layer = f"private layer {registry}".encode()
    assert push_blob(client, f"{private}/secret", private_layer).status_code == 201
    mine = own_registry(server, stranger, f"{registry_name}-mine")

    as_stranger = {"Authorization": basic(*stranger)}
    mounted = anonymous.post(
        f"/v2/{mine}/app/blobs/uploads/",
        params={"mount": digest_of(public_layer)},
        headers=as_stranger,
    )
    assert mounted.status_code == 201, describe(mounted)
    assert mounted.headers["location"] == f"/v2/{mine}/app/blobs/{digest_of(public_layer)}"
    assert blob_status(client, f"{mine}/app", digest_of(public_layer)) == 200

    # With a token for the target only, as a client that names no source: still mounted.
    token = token_for(anonymous, stranger, [f"repository:{mine}/tok:pull,push"])
    mounted = anonymous.post(
        f"/v2/{mine}/tok/blobs/uploads/",
        params={"mount": digest_of(public_layer)},
        headers={"Authorization": bearer(token)},
    )
    assert mounted.status_code == 201, describe(mounted)

    # A blob only a private registry of others holds: an upload, exactly as for no blob.
    answers = []
    for digest in (digest_of(private_layer), digest_of(b"a blob nobody has")):
        fallback = anonymous.post(
            f"/v2/{mine}/app/blobs/uploads/", params={"mount": digest}, headers=as_stranger
        )
        assert fallback.status_code == 202, describe(fallback)
        assert "docker-content-digest" not in fallback.headers
        assert blob_status(client, f"{mine}/app", digest) == 404
        answers.append((fallback.content, fallback.headers.get("range")))
    assert answers[0] == answers[1]

    # The admin may read the private registry: the automatic mount finds it there.
    mounted = client.post(
        f"/v2/{registry}/admin/blobs/uploads/", params={"mount": digest_of(private_layer)}
    )
    assert mounted.status_code == 201, describe(mounted)


# -- 3. the catalog --------------------------------------------------------------------------


def test_catalog_challenges_a_caller_without_credentials(
    server: RunningServer, registry: str, client: httpx.Client, anonymous: httpx.Client
) -> None:
    private = f"{registry}-hidden"
    server.create_registry(private, public=False)
    push_image(client, f"{private}/app", make_image(f"catalog {private}"), "1")

    challenged = anonymous.get("/v2/_catalog")
    assert challenged.status_code == 401, describe(challenged)
    assert oci_error(challenged) == "UNAUTHORIZED"
    scheme, challenge = parse_challenge(challenged.headers.get("www-authenticate"))
    assert (scheme, challenge["scope"]) == ("bearer", "registry:catalog:*"), challenge

    # The client signs in as asked and sees the private repository its user may read.
    token = token_for(anonymous, server.admin, [challenge["scope"]])
    listed = anonymous.get("/v2/_catalog", headers={"Authorization": bearer(token)})
    assert listed.status_code == 200, describe(listed)
    assert f"{private}/app" in listed.json()["repositories"]

    # An anonymous token is a credential too: the public part, never the private one.
    public_token = token_for(anonymous, None, [challenge["scope"]])
    listed = anonymous.get("/v2/_catalog", headers={"Authorization": bearer(public_token)})
    assert listed.status_code == 200, describe(listed)
    assert f"{private}/app" not in listed.json()["repositories"]


# -- 4. an out-of-order last chunk -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_closing_put_with_a_chunk_out_of_order_is_416(
    client: httpx.Client, registry: str, algorithm: str
) -> None:
    repo = f"{registry}/chunks"
    data = os.urandom(3067)
    digest = digest_of(data, algorithm)
    location = start_upload(client, repo)
    first = client.patch(
        location,
        content=data[:1024],
        headers={"Content-Range": "0-1023", "Content-Type": "application/octet-stream"},
    )
    assert first.status_code == 202, describe(first)
    location = httpx.URL(first.headers["location"]).raw_path.decode()

    skipped = client.put(
        location,
        params={"digest": digest},
        content=data[2048:],
        headers={"Content-Range": "2048-3066", "Content-Type": "application/octet-stream"},
    )
    assert skipped.status_code == 416, describe(skipped)
    assert skipped.headers.get("range") == "0-1023", skipped.headers
    assert blob_status(client, repo, digest) == 404
    status = client.get(location)
    assert (status.status_code, status.headers.get("range")) == (204, "0-1023")

    done = client.put(
        location,
        params={"digest": digest},
        content=data[1024:],
        headers={"Content-Range": "1024-3066", "Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, describe(done)
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data


# -- 5. referrers of an empty repository -----------------------------------------------------


def test_referrers_of_an_empty_repository_are_an_empty_index(
    client: httpx.Client, registry: str
) -> None:
    response = client.get(f"/v2/{registry}/nothing-yet/referrers/{digest_of(b'no subject')}")
    assert response.status_code == 200, describe(response)
    assert response.headers["content-type"].startswith(OCI_INDEX)
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


# -- 6. ?tag= and sha512 manifests -----------------------------------------------------------


def test_push_by_digest_sets_every_tag_parameter(client: httpx.Client, registry: str) -> None:
    repo = f"{registry}/tagged"
    image = make_image(f"tags {registry}")
    for blob in image.blobs:
        assert push_blob(client, repo, blob).status_code == 201
    response = client.put(
        f"/v2/{repo}/manifests/{image.digest}",
        params=[("tag", "1.2.3"), ("tag", "1.2"), ("tag", "latest")],
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, describe(response)
    assert response.headers.get_list("oci-tag") == ["1.2.3", "1.2", "latest"]
    assert response.headers["docker-content-digest"] == image.digest
    assert sorted(tag_list(client, repo)[1] or []) == ["1.2", "1.2.3", "latest"]
    for tag in ("1.2.3", "1.2", "latest"):
        pulled = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert pulled.content == image.manifest, describe(pulled)


def test_one_bad_tag_parameter_sets_nothing(client: httpx.Client, registry: str) -> None:
    repo = f"{registry}/badtag"
    image = make_image(f"bad tag {registry}")
    for blob in image.blobs:
        assert push_blob(client, repo, blob).status_code == 201
    response = client.put(
        f"/v2/{repo}/manifests/{image.digest}",
        params=[("tag", "good"), ("tag", "-bad")],
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert (response.status_code, oci_error(response)) == (400, "TAG_INVALID"), describe(response)
    assert "-bad" in response.json()["errors"][0]["message"]
    assert "oci-tag" not in response.headers
    assert client.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/good").status_code in (404,)


def test_sha512_manifest_pushed_by_tag_keeps_its_digest(
    client: httpx.Client, registry: str
) -> None:
    repo = f"{registry}/sha512"
    image = make_image(f"sha512 {registry}", algorithm="sha512")
    for blob in image.blobs:
        assert push_blob(client, repo, blob, "sha512").status_code == 201
    digest = digest_of(image.manifest, "sha512")
    by_digest = put_manifest(client, repo, digest, image.manifest)
    assert by_digest.status_code == 201, describe(by_digest)
    assert by_digest.headers["docker-content-digest"] == digest

    by_tag = put_manifest(client, repo, "v1", image.manifest)
    assert by_tag.status_code == 201, describe(by_tag)
    assert by_tag.headers["docker-content-digest"] == digest
    assert by_tag.headers["location"] == f"/v2/{repo}/manifests/{digest}"
    pulled = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert pulled.headers["docker-content-digest"] == digest, describe(pulled)
    assert pulled.content == image.manifest


# -- 7. sparse manifests ---------------------------------------------------------------------


def test_sparse_index_and_missing_subject_are_accepted(client: httpx.Client, registry: str) -> None:
    repo = f"{registry}/sparse"
    absent = make_image(f"never pushed {registry}")
    index = make_index([absent])
    response = put_manifest(client, repo, "sparse", index, OCI_INDEX)
    assert response.status_code == 201, describe(response)
    pulled = client.get(f"/v2/{repo}/manifests/sparse", headers={"Accept": OCI_INDEX})
    assert pulled.content == index, describe(pulled)

    config = b"{}"
    assert push_blob(client, repo, config).status_code == 201
    referrer = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": descriptor("application/vnd.oci.empty.v1+json", config),
            "layers": [],
            "subject": descriptor(OCI_MANIFEST, absent.manifest),
        }
    )
    response = put_manifest(client, repo, digest_of(referrer), referrer)
    assert response.status_code == 201, describe(response)
    assert response.headers["oci-subject"] == absent.digest
    listed = client.get(f"/v2/{repo}/referrers/{absent.digest}").json()["manifests"]
    assert [entry["digest"] for entry in listed] == [digest_of(referrer)]


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_image_manifest_with_missing_blobs_is_refused(
    client: httpx.Client, registry: str, missing: str
) -> None:
    repo = f"{registry}/incomplete-{missing}"
    image = make_image(f"incomplete {missing} {registry}")
    absent = image.config if missing == "config" else image.layers[0]
    for blob in image.blobs:
        if blob != absent:
            assert push_blob(client, repo, blob).status_code == 201
    response = put_manifest(client, repo, "1", image.manifest)
    assert (response.status_code, oci_error(response)) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert digest_of(absent) in json.dumps(response.json())
    assert client.get(f"/v2/{repo}/manifests/1").status_code == 404


# -- 11. a push into a registry that does not exist ------------------------------------------


def test_push_into_a_missing_registry_says_how_to_create_it(
    server: RunningServer,
    registry_name: str,
    anonymous: httpx.Client,
    stranger: tuple[str, str],
) -> None:
    missing = f"{registry_name}-nosuch"
    response = anonymous.post(
        f"/v2/{missing}/busybox/blobs/uploads/", headers={"Authorization": basic(*stranger)}
    )
    assert (response.status_code, oci_error(response)) == (404, "NAME_UNKNOWN")
    message = response.json()["errors"][0]["message"]
    assert "create it first" in message, message
    assert "/console/" in message and "/api/v1/registries" in message, message
    assert f"ociregistry registry create {missing}" in message, message


def test_push_into_a_registry_the_caller_may_not_know_says_nothing_more(
    server: RunningServer,
    registry_name: str,
    anonymous: httpx.Client,
    stranger: tuple[str, str],
) -> None:
    hidden = f"{registry_name}-hidden"
    server.create_registry(hidden, public=False)
    _, read_only = create_pat(server, stranger[0], f"ro-{registry_name}", read_only=True)
    cases = [
        (hidden, basic(*stranger)),  # exists, private to others
        (f"{registry_name}-nosuch", basic(stranger[0], read_only)),  # could not create it
    ]
    for name, authorization in cases:
        response = anonymous.post(
            f"/v2/{name}/busybox/blobs/uploads/", headers={"Authorization": authorization}
        )
        assert (response.status_code, oci_error(response)) == (404, "NAME_UNKNOWN")
        message = response.json()["errors"][0]["message"]
        assert message == f"repository {name}/busybox is not known", message


# -- the /v2 action table (issue 11, point 1) ------------------------------------------------


def test_every_repository_route_declares_its_action_once() -> None:
    """Distribution's method -> action table, read off the routes themselves: reads pull,
    writes push, deletes delete; every request on an upload session is part of a push."""
    from ociregistry.auth.policy import Action
    from ociregistry.v2 import routes

    table = {}
    for route in routes:
        if "{name:path}" not in route.path:
            continue
        for method in route.methods - {"HEAD"} or route.methods:
            table[(method, route.path)] = getattr(route.endpoint, "action", None)
    assert None not in table.values(), table
    for (method, path), action in table.items():
        if "/blobs/uploads" in path or method in ("POST", "PUT", "PATCH"):
            assert action is Action.PUSH, (method, path)
        elif method == "DELETE":
            assert action is Action.DELETE, (method, path)
        else:
            assert action is Action.PULL, (method, path)
