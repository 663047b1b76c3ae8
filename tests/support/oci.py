"""Small OCI client helpers for tests: push blobs and manifests over httpx, read errors and state.

Tests talk to the registry over HTTP only, as real clients do. These helpers keep the request
plumbing out of the tests so that each test reads as the scenario it checks. `raw_request`
exists for paths that httpx would normalise (`..`) and for headers that disagree with the body,
which no well-behaved client library will send.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# What the store may hold, relative to `<data>/storage`: blobs named by digest, upload sessions
# named by UUID. Anything else means a path was built from unchecked input.
STORAGE_LAYOUT = re.compile(
    r"blobs/sha256/([0-9a-f]{2})/\1[0-9a-f]{62}"
    r"|blobs/sha512/([0-9a-f]{2})/\2[0-9a-f]{126}"
    r"|uploads/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/(?:info|data)"
)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The `algorithm:hex` content address of `data`."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def canonical_json(value: object) -> bytes:
    """Compact JSON with sorted keys: the same document always has the same digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def descriptor(media_type: str, data: bytes, algorithm: str = "sha256") -> dict[str, Any]:
    """An OCI descriptor for `data` under `media_type`."""
    return {"mediaType": media_type, "digest": digest_of(data, algorithm), "size": len(data)}


@dataclass(frozen=True)
class Image:
    """An image manifest with its config and layers, as exact bytes."""

    config: bytes
    layers: tuple[bytes, ...]
    manifest: bytes
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def blobs(self) -> list[bytes]:
        """Everything the manifest references: config first, then the layers."""
        return [self.config, *self.layers]

    @property
    def document(self) -> dict[str, Any]:
        """The manifest as a JSON object, to derive broken variants from."""
        return json.loads(self.manifest)


def make_image(label: str, *, algorithm: str = "sha256", media_type: str = OCI_MANIFEST) -> Image:
    """A small image whose bytes depend on `label`, so distinct labels never share blobs."""
    config = canonical_json({"architecture": "amd64", "os": "linux", "label": label})
    layer = f"layer of {label}".encode() * 4
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(OCI_CONFIG, config, algorithm),
        "layers": [descriptor(OCI_LAYER, layer, algorithm)],
    }
    return Image(config, (layer,), canonical_json(document), media_type)


def make_index(children: list[Image]) -> bytes:
    """An OCI index listing `children` (as linux/amd64), as exact bytes."""
    platform = {"os": "linux", "architecture": "amd64"}
    manifests = [
        {**descriptor(child.media_type, child.manifest), "platform": platform} for child in children
    ]
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})


# -- requests -------------------------------------------------------------------------------


def push_blob(
    client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256"
) -> httpx.Response:
    """A monolithic blob push (one POST with `?digest=`); returns the response unchecked."""
    return client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest_of(data, algorithm)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def put_manifest(
    client: httpx.Client,
    repo: str,
    reference: str,
    body: bytes,
    content_type: str | None = OCI_MANIFEST,
) -> httpx.Response:
    """PUT a manifest by tag or digest; returns the response unchecked."""
    headers = {"Content-Type": content_type} if content_type else {}
    return client.put(f"/v2/{repo}/manifests/{reference}", content=body, headers=headers)


def push_image(client: httpx.Client, repo: str, image: Image, tag: str | None = None) -> str:
    """Push an image's blobs, then its manifest (by `tag`, else by digest); return the digest."""
    for blob in image.blobs:
        response = push_blob(client, repo, blob)
        assert response.status_code == 201, response.text
    response = put_manifest(client, repo, tag or image.digest, image.manifest, image.media_type)
    assert response.status_code == 201, response.text
    return image.digest


def start_upload(client: httpx.Client, repo: str) -> str:
    """Open an upload session; return its URL path (the `Location`)."""
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return httpx.URL(response.headers["Location"]).raw_path.decode()


def patch_chunk(
    client: httpx.Client, location: str, data: bytes, content_range: str | None = None
) -> httpx.Response:
    """Send one chunk of a chunked upload, with `Content-Range` when given."""
    headers = {"Content-Type": "application/octet-stream"}
    if content_range is not None:
        headers["Content-Range"] = content_range
    return client.patch(location, content=data, headers=headers)


def upload_progress(client: httpx.Client, location: str) -> tuple[int, str | None]:
    """An upload session's status: the HTTP status and the `Range` it reports."""
    response = client.get(location)
    return response.status_code, response.headers.get("Range")


def tag_list(client: httpx.Client, repo: str) -> tuple[int, list[str] | None]:
    """The status of `tags/list` and its tags (None when the repository is unknown)."""
    response = client.get(f"/v2/{repo}/tags/list")
    tags = response.json().get("tags") if response.status_code == 200 else None
    return response.status_code, tags


def catalog(client: httpx.Client) -> list[str]:
    """Every repository name the registry lists."""
    response = client.get("/v2/_catalog")
    assert response.status_code == 200, response.text
    return response.json()["repositories"]


def blob_status(client: httpx.Client, repo: str, digest: str) -> int:
    """The status of a HEAD on a blob: 200 when `repo` serves it, 404 when not."""
    return client.head(f"/v2/{repo}/blobs/{digest}").status_code


def error_of(response: httpx.Response | RawResponse) -> tuple[str, str]:
    """The first `(code, message)` of an OCI error body, checking the body's shape."""
    try:
        body = json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"error body is not JSON: {response.content[:300]!r}") from error
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), body
    assert body["errors"], f"empty errors list: {body}"
    first = body["errors"][0]
    assert isinstance(first.get("code"), str) and isinstance(first.get("message"), str), first
    return first["code"], first["message"]


# -- raw HTTP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    """A response read with http.client: what came back, with no client-side interpretation."""

    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes


def credentials_of(client: httpx.Client) -> dict[str, str]:
    """The `Authorization` header `client` sends (set as a header or by a Basic `auth`), so
    requests made without httpx act as the same caller."""
    request = client.build_request("GET", "/v2/")
    if client.auth is not None:
        request = next(client.auth.sync_auth_flow(request))
    value = request.headers.get("Authorization")
    return {"Authorization": value} if value else {}


def raw_request(
    client: httpx.Client,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    content_length: int | None = None,
) -> RawResponse:
    """Send `path` byte for byte (no dot-segment removal, no re-encoding) to `client`'s server,
    with its credentials, and read the reply.

    `content_length` overrides the `Content-Length` header, to send one that lies about `body`.
    """
    url = client.base_url
    connection = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        length = len(body) if content_length is None else content_length
        connection.putheader("Content-Length", str(length))
        for name, value in {**credentials_of(client), **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        content = response.read()
        return RawResponse(
            response.status, {k.lower(): v for k, v in response.getheaders()}, content
        )
    finally:
        connection.close()


# -- storage --------------------------------------------------------------------------------


def storage_files(data_dir: Path) -> set[str]:
    """Every file under the server's storage folder, as paths relative to it."""
    root = str(data_dir / "storage")
    found = set()
    for folder, _, names in os.walk(root):  # several times faster than Path.rglob
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if relative == "." else relative + "/"
        found.update(prefix + name for name in names)
    return found
