"""Bad input: every malformed, mismatched or hostile request is refused, and changes nothing.

Each case checks three things: the HTTP status, the OCI error (`{"errors": [{"code",
"message"}]}` with a message a person can act on), and that the registry is exactly as it was
(tag list, catalog, upload progress, and the files in the storage folder). A refusal that
leaves half a blob or a stray folder behind is as much a bug as accepting the request.

The large parametrized families share one registry created for this module and give each case
a repository of its own (`repo`), which is as independent as a fresh registry and saves a CLI
run per case; scenarios that need a second namespace also take the `registry` fixture.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from support.oci import (
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
    STORAGE_LAYOUT,
    RawResponse,
    catalog,
    credentials_of,
    digest_of,
    error_of,
    make_image,
    make_index,
    patch_chunk,
    push_blob,
    push_image,
    put_manifest,
    raw_request,
    start_upload,
    storage_files,
    tag_list,
    upload_progress,
)
from support.server import RunningServer

MAX_MANIFEST_BYTES = 4 << 20
_repo_numbers = itertools.count()


# -- fixtures and checks --------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespace(server: RunningServer) -> str:
    """One registry for this module's parametrized families; each case uses its own image."""
    name = f"bad{os.getpid()}-{uuid.uuid4().hex[:8]}"
    server.create_registry(name)
    return name


@pytest.fixture
def repo(namespace: str) -> str:
    """A repository (image) name no other test uses, in an existing registry."""
    return f"{namespace}/img{next(_repo_numbers)}"


@dataclass(frozen=True)
class State:
    """What a refused request must leave alone."""

    tags: tuple[int, list[str] | None]
    catalog: list[str]
    files: frozenset[str]


def snapshot(server: RunningServer, client: httpx.Client, repo: str) -> State:
    """The state of `repo` and of the whole store, to compare before and after a request."""
    return State(tag_list(client, repo), catalog(client), frozenset(storage_files(server.data_dir)))


def assert_unchanged(before: State, after: State) -> None:
    """The same tags, catalog and storage files; on failure, show only what differs."""
    assert after.tags == before.tags, f"tags changed: {before.tags} -> {after.tags}"
    assert after.catalog == before.catalog, (
        f"catalog changed: +{set(after.catalog) - set(before.catalog)} "
        f"-{set(before.catalog) - set(after.catalog)}"
    )
    assert after.files == before.files, (
        f"storage changed: +{sorted(after.files - before.files)} "
        f"-{sorted(before.files - after.files)}"
    )


def assert_clear_message(message: str) -> None:
    """A sentence a person can act on: words, not a blank, a code or a traceback."""
    assert message.strip() == message and message, f"blank or padded message {message!r}"
    assert len(message.split()) >= 4, f"message too terse to act on: {message!r}"
    assert "Traceback" not in message and "Exception" not in message, message


def assert_error(response: httpx.Response | RawResponse, status: int, code: str) -> str:
    """The response is `status` with OCI error `code` and a clear message; returns it."""
    shown = f"{response.status_code} {response.content[:500]!r}"
    assert response.status_code == status, f"expected {status} {code}, got {shown}"
    assert response.headers.get("content-type", "").startswith("application/json"), shown
    got, message = error_of(response)
    assert got == code, f"expected {code}, got {got}: {message}"
    assert_clear_message(message)
    return message


def pushed_blobs(client: httpx.Client, repo: str, *blobs: bytes) -> None:
    """Push `blobs` to `repo` (the setup of a test, not what it checks)."""
    for blob in blobs:
        response = push_blob(client, repo, blob)
        assert response.status_code == 201, response.text


# -- repository names -----------------------------------------------------------------------

# How each name appears in the request path, byte for byte; `{ns}` is an existing registry.
BAD_NAMES = {
    "upper-case image": "{ns}/App",
    "upper-case registry": "{NS}/app",
    "dot-dot": "{ns}/../app",
    "dot-dot at end": "{ns}/app/..",
    "encoded dot-dot": "{ns}/%2e%2e/app",
    "encoded upper-case dot-dot": "{ns}/%2E%2E/app",
    "encoded slashes and dot-dots": "{ns}/app%2F..%2F..%2F..%2Fetc",
    "dot component": "{ns}/./app",
    "empty component": "{ns}/a//b",
    "trailing slash": "{ns}/app/",
    "leading slash": "/{ns}/app",
    "registry only": "{ns}",
    "over 255 characters": "{ns}/" + "a" * 256,
    "leading separator": "{ns}/-app",
    "trailing separator": "{ns}/app-",
    "three underscores": "{ns}/a___b",
    "NUL byte": "{ns}/app%00",
    "non-ASCII": "{ns}/caf%C3%A9",
    "space": "{ns}/my%20app",
    "backslashes": "{ns}/a%5C..%5Cb",
}

_BLOB = b"a blob for name tests"
_NAME_ENDPOINTS: dict[str, tuple[str, str, bytes, dict[str, str]]] = {
    "start upload": ("POST", "/blobs/uploads/", b"", {}),
    "monolithic upload": (
        "POST",
        f"/blobs/uploads/?digest={digest_of(_BLOB)}",
        _BLOB,
        {"Content-Type": "application/octet-stream"},
    ),
    "put manifest": (
        "PUT",
        "/manifests/v1",
        make_image("names").manifest,
        {"Content-Type": OCI_MANIFEST},
    ),
    "get manifest": ("GET", "/manifests/v1", b"", {}),
    "get blob": ("GET", f"/blobs/{digest_of(_BLOB)}", b"", {}),
    "tags list": ("GET", "/tags/list", b"", {}),
}


# Every name on the endpoints that write or list, the traversal names on all of them too (one
# parser serves every endpoint, so the full product would only repeat itself).
_TRAVERSALS = ["dot-dot", "encoded dot-dot", "encoded slashes and dot-dots"]
_NAME_CASES = [
    *(
        pytest.param(name, endpoint, id=f"{name}-{endpoint}")
        for endpoint in ("start upload", "put manifest", "tags list")
        for name in BAD_NAMES
    ),
    *(
        pytest.param(name, endpoint, id=f"{name}-{endpoint}")
        for endpoint in ("monolithic upload", "get manifest", "get blob")
        for name in _TRAVERSALS
    ),
]


@pytest.mark.parametrize(("name", "endpoint"), _NAME_CASES)
def test_invalid_repository_name(
    server: RunningServer, client: httpx.Client, namespace: str, name: str, endpoint: str
) -> None:
    """Names are checked before any lookup or storage path: traversal never gets that far."""
    path_name = BAD_NAMES[name].format(ns=namespace, NS=namespace.upper())
    method, suffix, body, headers = _NAME_ENDPOINTS[endpoint]
    before = snapshot(server, client, f"{namespace}/app")
    response = raw_request(client, method, f"/v2/{path_name}{suffix}", body, headers)
    if name == "registry only":  # DENIED, which docker does not retry (test_client_protocol)
        message = assert_error(response, 403, "DENIED")
        assert "{host}/{registry}/{image}" in message, message
    else:
        assert_error(response, 400, "NAME_INVALID")
    assert_unchanged(before, snapshot(server, client, f"{namespace}/app"))


def test_name_of_255_characters_is_accepted(client: httpx.Client, namespace: str) -> None:
    """The limit is inclusive: 255 characters is a name, so the check above is the length."""
    name = f"{namespace}/" + "a" * (255 - len(namespace) - 1)
    assert len(name) == 255
    location = start_upload(client, name)
    assert client.delete(location).status_code == 204


# -- registries that do not exist -----------------------------------------------------------


def _missing_registry_requests(blob: bytes) -> dict[str, Callable[[httpx.Client, str], Any]]:
    digest = digest_of(blob)
    image = make_image("missing-registry")
    return {
        "start upload": lambda c, r: c.post(f"/v2/{r}/blobs/uploads/"),
        "monolithic upload": lambda c, r: push_blob(c, r, blob),
        "mount": lambda c, r: c.post(
            f"/v2/{r}/blobs/uploads/", params={"mount": digest, "from": "elsewhere/app"}
        ),
        "put manifest": lambda c, r: put_manifest(c, r, "v1", image.manifest),
        "tags list": lambda c, r: c.get(f"/v2/{r}/tags/list"),
    }


@pytest.mark.parametrize("request_name", list(_missing_registry_requests(b"")))
def test_push_into_missing_registry(
    server: RunningServer, client: httpx.Client, request_name: str
) -> None:
    """Registries are created first (SPEC §1); a push never creates one as a side effect."""
    missing = f"nosuch{uuid.uuid4().hex[:12]}"
    repo = f"{missing}/app"
    send = _missing_registry_requests(b"content for a registry that is not there")[request_name]
    before = snapshot(server, client, repo)
    message = assert_error(send(client, repo), 404, "NAME_UNKNOWN")
    assert missing in message
    assert_unchanged(before, snapshot(server, client, repo))


# -- digests --------------------------------------------------------------------------------

MALFORMED_DIGESTS = {
    "traversal": "sha256:../..",
    "encoded traversal": "sha256:..%2F..%2Fregistry.db",
    "non-hex": "sha256:" + "g" * 64,
    "upper-case hex": "sha256:" + "A" * 64,
    "too short": "sha256:" + "a" * 63,
    "too long": "sha256:" + "a" * 65,
    "sha512 length for sha256": "sha256:" + "a" * 128,
    "sha256 length for sha512": "sha512:" + "a" * 64,
    "empty hex": "sha256:",
    "no algorithm": ":" + "a" * 64,
    "no colon": "sha256" + "a" * 64,
    "upper-case algorithm": "SHA256:" + "a" * 64,
    "NUL byte": "sha256:" + "a" * 63 + "\x00",
}
UNSUPPORTED_DIGESTS = {
    "md5": "md5:" + "a" * 32,
    "sha1": "sha1:" + "a" * 40,
    "sha384": "sha384:" + "a" * 96,
    "blake3": "blake3:" + "a" * 64,
}
BAD_DIGESTS = [
    *(pytest.param(d, "DIGEST_INVALID", id=k) for k, d in MALFORMED_DIGESTS.items()),
    *(pytest.param(d, "UNSUPPORTED", id=k) for k, d in UNSUPPORTED_DIGESTS.items()),
]
# Digests that can sit in a URL path segment (no '/' once decoded, nothing the router rejects).
PATH_DIGESTS = [
    p
    for p in BAD_DIGESTS
    if "/" not in p.values[0]
    and "%" not in p.values[0]
    and "\x00" not in p.values[0]
    and ":" in p.values[0]
]


@pytest.mark.parametrize(("digest", "code"), BAD_DIGESTS)
def test_monolithic_upload_with_bad_digest(
    server: RunningServer, client: httpx.Client, repo: str, digest: str, code: str
) -> None:
    """A digest is parsed before any byte is written: no session, no blob, no image."""
    before = snapshot(server, client, repo)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=b"some bytes"
    )
    assert_error(response, 400, code)
    assert_unchanged(before, snapshot(server, client, repo))


@pytest.mark.parametrize(("digest", "code"), BAD_DIGESTS)
def test_finishing_upload_with_bad_digest(
    server: RunningServer, client: httpx.Client, repo: str, digest: str, code: str
) -> None:
    """A bad digest on the closing PUT leaves the session as it was, ready for a correct one."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, b"hello").status_code == 202
    before = snapshot(server, client, repo)
    response = client.put(location, params={"digest": digest}, content=b" world")
    assert_error(response, 400, code)
    assert_unchanged(before, snapshot(server, client, repo))
    assert upload_progress(client, location) == (204, "0-4")
    finished = client.put(location, params={"digest": digest_of(b"hello world")}, content=b" world")
    assert finished.status_code == 201, finished.text


# Every bad digest on a blob and a manifest URL; a few on the other digest URLs (one parser).
_FEW = ("non-hex", "too short", "md5")
_PATH_DIGEST_CASES = [
    *(
        pytest.param(method, resource, *p.values, id=f"{method}-{resource}-{p.id}")
        for method, resource in (("GET", "blobs"), ("PUT", "manifests"))
        for p in PATH_DIGESTS
    ),
    *(
        pytest.param(method, resource, *p.values, id=f"{method}-{resource}-{p.id}")
        for method, resource in (
            ("DELETE", "blobs"),
            ("GET", "manifests"),
            ("DELETE", "manifests"),
            ("GET", "referrers"),
        )
        for p in PATH_DIGESTS
        if p.id in _FEW
    ),
]


@pytest.mark.parametrize(("method", "resource", "digest", "code"), _PATH_DIGEST_CASES)
def test_bad_digest_in_path(
    server: RunningServer,
    client: httpx.Client,
    repo: str,
    method: str,
    resource: str,
    digest: str,
    code: str,
) -> None:
    """Blob, manifest and referrers URLs parse the digest before looking anything up."""
    image = make_image(repo)
    push_image(client, repo, image, tag="v1")
    before = snapshot(server, client, repo)
    body = image.manifest if method == "PUT" else b""
    headers = {"Content-Type": OCI_MANIFEST} if method == "PUT" else {}
    response = client.request(
        method, f"/v2/{repo}/{resource}/{digest}", content=body, headers=headers
    )
    assert_error(response, 400, code)
    assert_unchanged(before, snapshot(server, client, repo))


@pytest.mark.parametrize("digest", [pytest.param(p.values[0], id=p.id) for p in PATH_DIGESTS])
def test_head_blob_with_bad_digest(client: httpx.Client, repo: str, digest: str) -> None:
    """HEAD has no body to carry the error code; the status alone says the request was bad."""
    response = client.head(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 400
    assert response.content == b""


@pytest.mark.parametrize("resource", ["blobs", "manifests", "referrers"])
@pytest.mark.parametrize("digest", ["sha256:../..", "sha256:..%2F..%2F..%2Fregistry.db"])
def test_traversal_digest_in_path_reaches_nothing(
    server: RunningServer, client: httpx.Client, repo: str, resource: str, digest: str
) -> None:
    """A digest with slashes in the path matches no route; it must not reach a file either."""
    push_image(client, repo, make_image(repo), tag="v1")
    before = snapshot(server, client, repo)
    response = raw_request(client, "GET", f"/v2/{repo}/{resource}/{digest}")
    assert response.status_code in (400, 404), response.content
    code, message = error_of(response)
    assert code in ("DIGEST_INVALID", "NAME_INVALID", "UNSUPPORTED"), message
    assert_clear_message(message)
    assert b"SQLite format" not in response.content
    assert_unchanged(before, snapshot(server, client, repo))


@pytest.mark.parametrize(("digest", "code"), BAD_DIGESTS)
def test_mount_with_bad_digest(
    server: RunningServer, client: httpx.Client, repo: str, digest: str, code: str
) -> None:
    """`?mount=` is a digest like any other; a bad one is refused, not turned into a session."""
    before = snapshot(server, client, repo)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": f"{repo}-source"}
    )
    assert_error(response, 400, code)
    assert_unchanged(before, snapshot(server, client, repo))


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_monolithic_upload_with_wrong_digest(
    server: RunningServer, client: httpx.Client, repo: str, algorithm: str
) -> None:
    """Bytes that do not hash to the digest are dropped, with their upload session."""
    data, claimed = b"the bytes sent", digest_of(b"other bytes", algorithm)
    before = snapshot(server, client, repo)
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data)
    message = assert_error(response, 400, "DIGEST_INVALID")
    assert digest_of(data, algorithm) in message and claimed in message
    assert_unchanged(before, snapshot(server, client, repo))
    assert client.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404


@pytest.mark.parametrize("final_chunk", [b"", b" and a last chunk"], ids=["no-body", "body"])
def test_chunked_upload_with_wrong_digest(
    server: RunningServer, client: httpx.Client, repo: str, final_chunk: bytes
) -> None:
    """A mismatch cancels the session, as Distribution does: no blob, nothing of the upload
    left in storage, the session unknown; a new upload with the right digest then works."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, b"first chunk").status_code == 202
    before = snapshot(server, client, repo)
    upload_id = location.rstrip("/").rpartition("/")[2]
    wrong = digest_of(b"something else")
    response = client.put(location, params={"digest": wrong}, content=final_chunk)
    assert_error(response, 400, "DIGEST_INVALID")
    after = snapshot(server, client, repo)
    assert_unchanged(
        State(
            before.tags, before.catalog, frozenset(f for f in before.files if upload_id not in f)
        ),
        after,
    )
    assert not any(upload_id in name for name in after.files)
    assert upload_progress(client, location)[0] == 404
    whole = b"first chunk" + final_chunk
    location = start_upload(client, repo)
    response = client.put(location, params={"digest": digest_of(whole)}, content=whole)
    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/blobs/{digest_of(whole)}").content == whole


def test_sha512_blobs_and_manifests_work(
    server: RunningServer, client: httpx.Client, repo: str
) -> None:
    """sha512 is the one other algorithm OCI names; it works end to end, not just parses."""
    image = make_image(repo, algorithm="sha512")
    for blob in image.blobs:
        response = push_blob(client, repo, blob, "sha512")
        assert response.status_code == 201, response.text
        assert response.headers["Docker-Content-Digest"] == digest_of(blob, "sha512")
    chunked = b"a sha512 blob sent in two chunks"
    location = start_upload(client, repo)
    assert patch_chunk(client, location, chunked[:10], "0-9").status_code == 202
    response = client.put(
        location, params={"digest": digest_of(chunked, "sha512")}, content=chunked[10:]
    )
    assert response.status_code == 201, response.text
    for blob in [*image.blobs, chunked]:
        fetched = client.get(f"/v2/{repo}/blobs/{digest_of(blob, 'sha512')}")
        assert fetched.status_code == 200 and fetched.content == blob
        assert fetched.headers["Docker-Content-Digest"] == digest_of(blob, "sha512")
    manifest_digest = digest_of(image.manifest, "sha512")
    response = put_manifest(client, repo, manifest_digest, image.manifest)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == manifest_digest
    fetched = client.get(f"/v2/{repo}/manifests/{manifest_digest}")
    assert fetched.status_code == 200 and fetched.content == image.manifest
    hexes = {path.rsplit("/", 1)[-1] for path in storage_files(server.data_dir)}
    assert digest_of(chunked, "sha512").split(":")[1] in hexes


# -- chunk ranges and lengths ---------------------------------------------------------------

FIRST_CHUNK = b"01234"
NEXT_CHUNK = b"56789"


@pytest.mark.parametrize(
    ("content_range", "body", "status"),
    [
        pytest.param("5-14", NEXT_CHUNK, 400, id="range-longer-than-body"),
        pytest.param("5-6", NEXT_CHUNK, 400, id="range-shorter-than-body"),
        pytest.param("5-5", b"", 400, id="range-of-empty-body"),
        pytest.param("5-99999999999999999999", NEXT_CHUNK, 400, id="huge-range"),
        pytest.param("3-7", NEXT_CHUNK, 416, id="overlaps-received-bytes"),
        pytest.param("0-4", FIRST_CHUNK, 416, id="repeats-first-chunk"),
        pytest.param("10-14", NEXT_CHUNK, 416, id="leaves-a-gap"),
        pytest.param("9-5", NEXT_CHUNK, 400, id="end-before-start"),
        pytest.param("bytes=5-9", NEXT_CHUNK, 400, id="range-header-syntax"),
        pytest.param("5-", NEXT_CHUNK, 400, id="open-end"),
        pytest.param("-5", NEXT_CHUNK, 400, id="open-start"),
        pytest.param("five-nine", NEXT_CHUNK, 400, id="words"),
        pytest.param("5-9, 10-14", NEXT_CHUNK, 400, id="two-ranges"),
    ],
)
def test_chunk_with_bad_content_range(
    server: RunningServer,
    client: httpx.Client,
    repo: str,
    content_range: str,
    body: bytes,
    status: int,
) -> None:
    """A chunk whose range disagrees with its body or with the upload is refused whole, and the
    upload goes on from where it was."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, FIRST_CHUNK, "0-4").status_code == 202
    before = snapshot(server, client, repo)
    response = patch_chunk(client, location, body, content_range)
    assert_error(response, status, "BLOB_UPLOAD_INVALID")
    if status == 416:  # tells the client where to resume
        assert response.headers["Range"] == "0-4"
        assert response.headers["Location"].endswith(location)
    assert_unchanged(before, snapshot(server, client, repo))
    assert upload_progress(client, location) == (204, "0-4")
    assert patch_chunk(client, location, NEXT_CHUNK, "5-9").status_code == 202
    whole = FIRST_CHUNK + NEXT_CHUNK
    assert client.put(location, params={"digest": digest_of(whole)}).status_code == 201


def test_content_length_disagrees_with_content_range(
    server: RunningServer, client: httpx.Client, repo: str
) -> None:
    """`Content-Length: 3` delimits a body of 3 bytes, which `Content-Range: 5-9` contradicts."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, FIRST_CHUNK, "0-4").status_code == 202
    before = snapshot(server, client, repo)
    response = raw_request(
        client,
        "PATCH",
        location,
        NEXT_CHUNK[:3],
        {"Content-Range": "5-9", "Content-Type": "application/octet-stream"},
        content_length=3,
    )
    assert_error(response, 400, "BLOB_UPLOAD_INVALID")
    assert_unchanged(before, snapshot(server, client, repo))
    assert patch_chunk(client, location, NEXT_CHUNK, "5-9").status_code == 202
    assert client.delete(location).status_code == 204


def _send_and_hang_up(
    client: httpx.Client, method: str, path: str, headers: dict[str, str], body: bytes
) -> bytes:
    """Send a request whose `Content-Length` promises 10 bytes more than `body`, close our
    side, and return whatever the server answers before it closes too."""
    url = client.base_url
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {url.host}:{url.port}",
        f"Content-Length: {len(body) + 10}",
    ]
    head += [f"{name}: {value}" for name, value in {**credentials_of(client), **headers}.items()]
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall("\r\n".join([*head, "", ""]).encode() + body)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_chunk_shorter_than_content_length(
    server: RunningServer, client: httpx.Client, repo: str, method: str
) -> None:
    """A client that promises 15 bytes, sends 5 and hangs up gets no success and leaves the
    upload as it was; the session stays usable."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, FIRST_CHUNK, "0-4").status_code == 202
    before = snapshot(server, client, repo)
    # Were the 5 bytes taken as the whole body, this digest would match and the blob appear.
    query = f"?digest={digest_of(FIRST_CHUNK + NEXT_CHUNK)}" if method == "PUT" else ""
    reply = _send_and_hang_up(
        client,
        method,
        location + query,
        {"Content-Type": "application/octet-stream"},
        NEXT_CHUNK,
    )
    assert not reply.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")), reply[:300]
    assert_unchanged(before, snapshot(server, client, repo))
    assert upload_progress(client, location) == (204, "0-4")
    assert patch_chunk(client, location, NEXT_CHUNK, "5-9").status_code == 202
    assert client.delete(location).status_code == 204


def test_manifest_shorter_than_content_length(
    server: RunningServer, client: httpx.Client, repo: str
) -> None:
    """A whole, valid manifest announced as 10 bytes longer is an unfinished request: the
    client never said it was done, so nothing is stored or tagged."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    before = snapshot(server, client, repo)
    reply = _send_and_hang_up(
        client, "PUT", f"/v2/{repo}/manifests/v1", {"Content-Type": OCI_MANIFEST}, image.manifest
    )
    assert not reply.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")), reply[:300]
    assert_unchanged(before, snapshot(server, client, repo))
    assert client.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 404


# -- upload sessions ------------------------------------------------------------------------

UNKNOWN_UPLOAD_IDS = {
    "random uuid": str(uuid.uuid4()),
    "not a uuid": "not-a-uuid",
    "dot-dot": "..",
    "encoded dot-dot": "%2e%2e",
    "encoded traversal": "..%2F..%2Fregistry.db",
    "long": "0" * 1000,
}
_UPLOAD_METHODS = ["GET", "PATCH", "PUT", "DELETE"]


@pytest.mark.parametrize("method", _UPLOAD_METHODS)
@pytest.mark.parametrize("upload_id", list(UNKNOWN_UPLOAD_IDS))
def test_unknown_upload_session(
    server: RunningServer, client: httpx.Client, repo: str, upload_id: str, method: str
) -> None:
    """An upload id is a UUID the server handed out; anything else creates nothing."""
    pushed_blobs(client, repo, b"so that the repository exists")
    before = snapshot(server, client, repo)
    query = f"?digest={digest_of(b'x')}" if method == "PUT" else ""
    path = f"/v2/{repo}/blobs/uploads/{UNKNOWN_UPLOAD_IDS[upload_id]}{query}"
    body = b"x" if method in ("PATCH", "PUT") else b""
    response = raw_request(client, method, path, body)
    if "%2F" in path:  # a slash once decoded: no route takes it
        assert response.status_code == 404, response.content
        assert_clear_message(error_of(response)[1])
    else:
        assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_unchanged(before, snapshot(server, client, repo))


def _alias(upload_id: str, form: str) -> str:
    """Another spelling of `upload_id` that `uuid.UUID` would read as the same session."""
    if form == "upper case":
        return upload_id.upper()
    if form == "no dashes":
        return upload_id.replace("-", "")
    if form == "braces":
        return "{" + upload_id + "}"
    if form == "urn":
        return "urn:uuid:" + upload_id
    assert form == "other version"  # the version digit, which UUID(..., version=4) overwrites
    return upload_id[:14] + "1" + upload_id[15:]


@pytest.mark.parametrize("form", ["upper case", "no dashes", "braces", "urn", "other version"])
def test_upload_id_must_be_exactly_as_issued(
    server: RunningServer, client: httpx.Client, repo: str, form: str
) -> None:
    """Only the id the server handed out names a session; another spelling of it was never
    issued, so it is unknown and cannot add to (or cancel) the real session."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, FIRST_CHUNK, "0-4").status_code == 202
    prefix, upload_id = location.rsplit("/", 1)
    before = snapshot(server, client, repo)
    alias = f"{prefix}/{_alias(upload_id, form)}"
    assert_error(patch_chunk(client, alias, NEXT_CHUNK, "5-9"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(alias), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_unchanged(before, snapshot(server, client, repo))
    assert upload_progress(client, location) == (204, "0-4")
    assert client.delete(location).status_code == 204


@pytest.mark.parametrize("ending", ["finished", "cancelled"])
@pytest.mark.parametrize("method", ["PATCH", "PUT", "GET", "DELETE"])
def test_ended_upload_session(
    server: RunningServer, client: httpx.Client, repo: str, ending: str, method: str
) -> None:
    """A finished or cancelled session is gone: no late chunk reopens it or alters its blob."""
    data = b"a blob uploaded in one session"
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data).status_code == 202
    if ending == "finished":
        assert client.put(location, params={"digest": digest_of(data)}).status_code == 201
    else:
        assert client.delete(location).status_code == 204
    before = snapshot(server, client, repo)
    params = {"digest": digest_of(data + b"more")} if method == "PUT" else {}
    body = b"more" if method in ("PATCH", "PUT") else b""
    response = client.request(method, location, params=params, content=body)
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_unchanged(before, snapshot(server, client, repo))
    expected = 200 if ending == "finished" else 404
    assert client.head(f"/v2/{repo}/blobs/{digest_of(data)}").status_code == expected
    if ending == "finished":
        assert client.get(f"/v2/{repo}/blobs/{digest_of(data)}").content == data


@pytest.mark.parametrize("other", ["same registry", "other registry"])
@pytest.mark.parametrize("method", _UPLOAD_METHODS)
def test_upload_session_of_another_repository(
    server: RunningServer,
    client: httpx.Client,
    repo: str,
    request: pytest.FixtureRequest,
    other: str,
    method: str,
) -> None:
    """A session belongs to the repository that opened it: used on another, it is unknown,
    and the owner's session is untouched (not extended, finished or cancelled)."""
    location = start_upload(client, repo)
    assert patch_chunk(client, location, FIRST_CHUNK, "0-4").status_code == 202
    upload_id = location.rsplit("/", 1)[1]
    if other == "same registry":
        elsewhere = f"{repo}-other"
    else:  # a fresh registry of its own, created only for these cases
        elsewhere = f"{request.getfixturevalue('registry')}/app"
    pushed_blobs(client, elsewhere, b"so that the other repository exists")
    before_owner = snapshot(server, client, repo)
    before_other = snapshot(server, client, elsewhere)
    whole = FIRST_CHUNK + NEXT_CHUNK
    params = {"digest": digest_of(whole)} if method == "PUT" else {}
    body = NEXT_CHUNK if method in ("PATCH", "PUT") else b""
    response = client.request(
        method, f"/v2/{elsewhere}/blobs/uploads/{upload_id}", params=params, content=body
    )
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_unchanged(before_owner, snapshot(server, client, repo))
    assert_unchanged(before_other, snapshot(server, client, elsewhere))
    assert client.head(f"/v2/{elsewhere}/blobs/{digest_of(whole)}").status_code == 404
    assert upload_progress(client, location) == (204, "0-4")
    response = client.put(location, params={"digest": digest_of(whole)}, content=NEXT_CHUNK)
    assert response.status_code == 201, response.text


# -- manifests ------------------------------------------------------------------------------


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], bytes]:
    def build(document: dict[str, Any]) -> bytes:
        change(document)
        return json.dumps(document).encode()

    return build


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], bytes]:
    """A variant of the image manifest with `value` at a dotted path (`layers.0.size`)."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return _edit(change)


def _drop(key: str) -> Callable[[dict[str, Any]], bytes]:
    return _edit(lambda document: document.pop(key))


BROKEN_MANIFESTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "empty body": lambda d: b"",
    "truncated JSON": lambda d: json.dumps(d).encode()[:-1],
    "not JSON": lambda d: b"this is not a manifest",
    "trailing garbage": lambda d: json.dumps(d).encode() + b"}",
    "invalid UTF-8": lambda d: b'{"schemaVersion": 2, "x": "\xff\xfe"}',
    "JSON array": lambda d: json.dumps([d]).encode(),
    "JSON string": lambda d: b'"a manifest"',
    "JSON null": lambda d: b"null",
    "no schemaVersion": _drop("schemaVersion"),
    "schemaVersion 3": _set("schemaVersion", 3),
    "schemaVersion as string": _set("schemaVersion", "2"),
    "no config": _drop("config"),
    "config not an object": _set("config", "sha256:abc"),
    "layers not an array": _set("layers", {}),
    "layer not an object": _set("layers.0", 7),
    "layer without digest": _edit(lambda d: d["layers"][0].pop("digest")),
    "layer without mediaType": _edit(lambda d: d["layers"][0].pop("mediaType")),
    "negative size": _set("layers.0.size", -1),
    "size as string": _set("layers.0.size", "12"),
    "size as boolean": _set("layers.0.size", True),
    "size as float": _set("layers.0.size", 12.5),
    "traversal digest": _set("layers.0.digest", "sha256:../.."),
    "non-hex digest": _set("layers.0.digest", "sha256:" + "z" * 64),
    "short digest": _set("config.digest", "sha256:abc"),
    "unsupported digest algorithm": _set("config.digest", "md5:" + "a" * 32),
    "mediaType not a string": _set("mediaType", 5),
    "annotations not strings": _set("annotations", {"count": 1}),
    "annotations not an object": _set("annotations", ["a"]),
    "artifactType not a string": _set("artifactType", ["a"]),
    "subject not a descriptor": _set("subject", "sha256:" + "a" * 64),
    "image manifest with manifests": _set("manifests", []),
    "unsupported mediaType": _set("mediaType", "application/vnd.example.thing+json"),
}


@pytest.mark.parametrize("case", list(BROKEN_MANIFESTS))
def test_broken_manifest(server: RunningServer, client: httpx.Client, repo: str, case: str) -> None:
    """Structure is checked before anything is stored; the blobs it names are all present, so
    the defect is the only reason to refuse."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    body = BROKEN_MANIFESTS[case](image.document)
    content_type = None if case == "unsupported mediaType" else OCI_MANIFEST
    before = snapshot(server, client, repo)
    response = put_manifest(client, repo, "v1", body, content_type)
    assert_error(response, 400, "MANIFEST_INVALID")
    assert_unchanged(before, snapshot(server, client, repo))
    assert client.get(f"/v2/{repo}/manifests/{digest_of(body)}").status_code == 404


BROKEN_INDEXES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "no manifests": _drop("manifests"),
    "manifests not an array": _set("manifests", {}),
    "entry not an object": _set("manifests.0", "sha256:" + "a" * 64),
    "entry digest traversal": _set("manifests.0.digest", "sha256:../.."),
    "entry size negative": _set("manifests.0.size", -5),
}


@pytest.mark.parametrize("case", list(BROKEN_INDEXES))
def test_broken_index(server: RunningServer, client: httpx.Client, repo: str, case: str) -> None:
    """An index is checked like an image manifest, entry by entry."""
    child = make_image(repo)
    push_image(client, repo, child)
    body = BROKEN_INDEXES[case](json.loads(make_index([child])))
    before = snapshot(server, client, repo)
    response = put_manifest(client, repo, "v1", body, OCI_INDEX)
    assert_error(response, 400, "MANIFEST_INVALID")
    assert_unchanged(before, snapshot(server, client, repo))


@pytest.mark.parametrize(
    ("document_type", "content_type"),
    [
        (OCI_MANIFEST, DOCKER_MANIFEST),
        (OCI_MANIFEST, OCI_INDEX),
        (DOCKER_MANIFEST, OCI_MANIFEST),
        (OCI_MANIFEST, f"{OCI_INDEX}; charset=utf-8"),
        (OCI_INDEX, OCI_MANIFEST),
    ],
)
def test_media_type_disagrees_with_content_type(
    server: RunningServer, client: httpx.Client, repo: str, document_type: str, content_type: str
) -> None:
    """A manifest that says one thing and is sent as another is refused, naming both."""
    child = make_image(repo)
    push_image(client, repo, child)
    if document_type == OCI_INDEX:
        body = make_index([child])
    else:
        image = make_image(f"{repo}/typed", media_type=document_type)
        pushed_blobs(client, repo, *image.blobs)
        body = image.manifest
    before = snapshot(server, client, repo)
    response = put_manifest(client, repo, "v1", body, content_type)
    message = assert_error(response, 400, "MANIFEST_INVALID")
    assert document_type in message and content_type.split(";")[0] in message
    assert_unchanged(before, snapshot(server, client, repo))


SCHEMA1_MANIFEST = json.dumps(
    {
        "schemaVersion": 1,
        "name": "team/app",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:" + "a" * 64}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }
).encode()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED, id="signed"),
        pytest.param(SCHEMA1_MANIFEST, DOCKER_SCHEMA1, id="unsigned"),
        pytest.param(SCHEMA1_MANIFEST, "application/json", id="as-json"),
        pytest.param(SCHEMA1_MANIFEST, None, id="no-content-type"),
        pytest.param(make_image("schema1").manifest, DOCKER_SCHEMA1_SIGNED, id="v2-sent-as-v1"),
    ],
)
def test_docker_schema1_is_refused(
    server: RunningServer, client: httpx.Client, repo: str, body: bytes, content_type: str | None
) -> None:
    """Schema 1 is long deprecated; the refusal says so, so the user knows to upgrade."""
    pushed_blobs(client, repo, b"so that the repository exists")
    before = snapshot(server, client, repo)
    response = put_manifest(client, repo, "v1", body, content_type)
    message = assert_error(response, 400, "MANIFEST_INVALID")
    assert "schema 1" in message.lower()
    assert_unchanged(before, snapshot(server, client, repo))


@pytest.mark.parametrize(
    "missing",
    [
        "config",
        "layer",
        "everything",
        "blobs of another repository",
    ],
)
def test_manifest_references_missing_content(
    server: RunningServer, client: httpx.Client, repo: str, missing: str
) -> None:
    """Every blob an image manifest names must be in this repository first; the spec requires
    MANIFEST_BLOB_UNKNOWN for such a refusal. (An index whose children are missing is a
    sparse index, which is accepted: tests/test_protocol.py.)"""
    image = make_image(repo)
    if missing == "config":
        pushed_blobs(client, repo, *image.layers)
        body = image.manifest
    elif missing == "layer":
        pushed_blobs(client, repo, image.config)
        body = image.manifest
    elif missing == "everything":
        pushed_blobs(client, repo, b"so that the repository exists")
        body = image.manifest
    else:  # in the store, but not linked here
        pushed_blobs(client, f"{repo}-owner", *image.blobs)
        pushed_blobs(client, repo, b"so that the repository exists")
        body = image.manifest
    before = snapshot(server, client, repo)
    response = put_manifest(client, repo, "v1", body, OCI_MANIFEST)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_unchanged(before, snapshot(server, client, repo))
    assert client.get(f"/v2/{repo}/manifests/{digest_of(body)}").status_code == 404


def test_missing_subject_is_not_a_missing_reference(client: httpx.Client, repo: str) -> None:
    """The control for the test above: the spec requires accepting a `subject` that is not
    there yet, so that referrers can be pushed before what they refer to."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    document = image.document
    document["subject"] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 9}
    body = json.dumps(document).encode()
    response = put_manifest(client, repo, digest_of(body), body)
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == "sha256:" + "b" * 64


def test_manifest_digest_disagrees_with_bytes(
    server: RunningServer, client: httpx.Client, repo: str
) -> None:
    """PUT by digest stores the bytes under that digest only if they hash to it."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    claimed = digest_of(image.manifest + b" ")
    before = snapshot(server, client, repo)
    response = put_manifest(client, repo, claimed, image.manifest)
    message = assert_error(response, 400, "DIGEST_INVALID")
    assert claimed in message and image.digest in message
    assert_unchanged(before, snapshot(server, client, repo))
    for digest in (claimed, image.digest):
        assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 404


def _manifest_of_size(image_manifest: dict[str, Any], size: int) -> bytes:
    """A valid manifest of exactly `size` bytes, padded with an annotation."""
    document = {**image_manifest, "annotations": {"padding": ""}}
    document["annotations"]["padding"] = "x" * (size - len(json.dumps(document).encode()))
    body = json.dumps(document).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_oversized_manifest(
    server: RunningServer, client: httpx.Client, repo: str, transfer: str
) -> None:
    """Manifests over 4 MiB are refused (413) whether or not the size is announced up front."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    body = _manifest_of_size(image.document, MAX_MANIFEST_BYTES + 1)
    content: bytes | Iterator[bytes] = body
    if transfer == "chunked":  # no Content-Length: the limit must hold while streaming
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    before = snapshot(server, client, repo)
    response = client.put(
        f"/v2/{repo}/manifests/v1", content=content, headers={"Content-Type": OCI_MANIFEST}
    )
    message = assert_error(response, 413, "SIZE_INVALID")
    assert str(MAX_MANIFEST_BYTES) in message
    assert_unchanged(before, snapshot(server, client, repo))


def test_manifest_of_exactly_4_mib_is_accepted(client: httpx.Client, repo: str) -> None:
    """The control for the test above: the limit is "over 4 MiB", not "4 MiB"."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    body = _manifest_of_size(image.document, MAX_MANIFEST_BYTES)
    response = put_manifest(client, repo, "v1", body)
    assert response.status_code == 201, response.text


INVALID_TAGS = {
    "129 characters": "a" * 129,
    "leading dot": ".hidden",
    "leading dash": "-v1",
    "dot-dot": "..",
    "encoded dot-dot": "%2e%2e",
    "plus sign": "v1+build",
    "space": "v%201",
    "non-ASCII": "caf%C3%A9",
    "at sign": "v1@sha256",
}


@pytest.mark.parametrize("tag", list(INVALID_TAGS))
def test_invalid_tag(server: RunningServer, client: httpx.Client, repo: str, tag: str) -> None:
    """A tag is `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`; nothing else is stored, not even the
    manifest it came with."""
    image = make_image(repo)
    pushed_blobs(client, repo, *image.blobs)
    before = snapshot(server, client, repo)
    response = raw_request(
        client,
        "PUT",
        f"/v2/{repo}/manifests/{INVALID_TAGS[tag]}",
        image.manifest,
        {"Content-Type": OCI_MANIFEST},
    )
    assert_error(response, 400, "TAG_INVALID")
    assert_unchanged(before, snapshot(server, client, repo))
    assert client.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 404


def test_tag_of_128_characters_is_accepted(client: httpx.Client, repo: str) -> None:
    """The control for the test above: 128 characters is still a tag."""
    tag = "_" + "a" * 127
    push_image(client, repo, make_image(repo), tag=tag)
    assert tag_list(client, repo) == (200, [tag])


# -- pagination -----------------------------------------------------------------------------


@pytest.fixture
def tagged_repo(client: httpx.Client, repo: str) -> str:
    """A repository with tags a, b and c on one image."""
    image = make_image(repo)
    push_image(client, repo, image, tag="a")
    for tag in ("b", "c"):
        assert put_manifest(client, repo, tag, image.manifest).status_code == 201
    return repo


@pytest.mark.parametrize("n", ["1000000000000", "9" * 5000])
def test_huge_page_size_is_capped(client: httpx.Client, tagged_repo: str, n: str) -> None:
    """A huge `n` gets an ordinary page, not an allocation of `n` entries or an error."""
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"n": n})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["a", "b", "c"]
    assert "Link" not in response.headers
    response = client.get("/v2/_catalog", params={"n": n})
    assert response.status_code == 200, response.text
    assert tagged_repo in response.json()["repositories"]


def test_page_size_with_leading_zeros(client: httpx.Client, tagged_repo: str) -> None:
    """`n=0000000000002` is 2, however many zeros come first."""
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"n": "0000000000002"})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["a", "b"]
    assert "last=b" in response.headers["Link"]


@pytest.mark.parametrize(
    "n",
    [
        pytest.param("abc", id="letters"),
        pytest.param("-1", id="negative"),
        pytest.param("+5", id="plus-sign"),
        pytest.param("1.5", id="fraction"),
        pytest.param("1e3", id="exponent"),
        pytest.param("0x10", id="hexadecimal"),
        pytest.param(" 5", id="leading-space"),
        pytest.param("5 ", id="trailing-space"),
        pytest.param("\u00b2", id="superscript-two"),  # str.isdigit() is True, int() fails
        pytest.param("\u0661", id="arabic-indic-one"),  # str.isdigit() is True, int() gives 1
    ],
)
@pytest.mark.parametrize("endpoint", ["tags", "catalog"])
def test_invalid_page_size(client: httpx.Client, tagged_repo: str, endpoint: str, n: str) -> None:
    """`n` is a non-negative decimal integer in ASCII; anything else is a clear 400."""
    path = f"/v2/{tagged_repo}/tags/list" if endpoint == "tags" else "/v2/_catalog"
    response = client.get(path, params={"n": n})
    assert_error(response, 400, "PAGINATION_NUMBER_INVALID")


# -- storage --------------------------------------------------------------------------------


def test_storage_holds_only_digest_and_uuid_paths(
    server: RunningServer, client: httpx.Client, repo: str
) -> None:
    """After all the hostile input above (and everything else this session pushed), every
    stored file sits at a path built from a validated digest or an upload UUID."""
    push_image(client, repo, make_image(repo), tag="v1")
    location = start_upload(client, repo)
    assert patch_chunk(client, location, b"a chunk").status_code == 202
    files = storage_files(server.data_dir)
    assert client.delete(location).status_code == 204
    assert {f.split("/", 1)[0] for f in files} == {"blobs", "uploads"}
    strays = sorted(f for f in files if STORAGE_LAYOUT.fullmatch(f) is None)
    assert not strays, f"files outside the storage layout: {strays[:20]}"
    outside = sorted(
        p.name
        for p in server.data_dir.iterdir()
        if p.name != "storage" and not p.name.startswith("registry.db")
    )
    assert not outside, f"unexpected files in the data folder: {outside}"
