"""Answers given without reading the request body keep the client's connection usable
through nginx (src/ociregistry/ops/unread_body.py).

Without the middleware, about one sequence in ten below lost its third request: nginx, which
streams uploads (`proxy_request_buffering off`), answered the retried chunk's 416 with
`Connection: keep-alive` and then closed the connection under the client's next PATCH.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ociregistry.ops.unread_body import DRAIN_LIMIT
from support.cluster import Nginx, require_nginx
from support.server import RunningServer

CHUNK = 5 * 1024 * 1024  # the chunk size of S3 storage, where the official suite met this
SEQUENCES = 60


@pytest.fixture
def nginx(server: RunningServer, tmp_path: Path) -> Iterator[Nginx]:
    require_nginx()
    host, port = server.address.split(":")
    assert host == "127.0.0.1"
    proxy = Nginx(tmp_path / "nginx", [int(port)]).start()
    yield proxy
    proxy.stop()


def _patch(http: httpx.Client, location: str, chunk: bytes, start: int) -> httpx.Response:
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + len(chunk) - 1}",
    }
    return http.patch(location, content=chunk, headers=headers)


def test_a_chunk_sent_again_leaves_the_connection_usable(
    nginx: Nginx, server: RunningServer, registry: str
) -> None:
    first, second = os.urandom(CHUNK), os.urandom(CHUNK)
    with httpx.Client(base_url=nginx.url, auth=server.admin, timeout=60.0) as http:
        for _ in range(SEQUENCES):
            started = http.post(f"/v2/{registry}/retry/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = started.headers["Location"]
            assert _patch(http, location, first, 0).status_code == 202

            again = _patch(http, location, first, 0)  # answered before its body is read
            assert again.status_code == 416, again.text
            assert again.headers["Range"] == f"0-{CHUNK - 1}"

            following = _patch(http, location, second, CHUNK)  # on the same connection
            assert following.status_code == 202, following.text
            assert following.headers["Range"] == f"0-{2 * CHUNK - 1}"
            assert http.delete(location).status_code == 204


def test_a_refused_push_leaves_the_connection_usable(
    nginx: Nginx, server: RunningServer, registry: str
) -> None:
    """A PATCH without credentials is refused before its body is read, like the retry."""
    body = os.urandom(CHUNK)
    with httpx.Client(base_url=nginx.url, timeout=60.0) as http:
        for _ in range(SEQUENCES // 2):
            started = http.post(f"/v2/{registry}/refused/blobs/uploads/", auth=server.admin)
            assert started.status_code == 202, started.text
            location = started.headers["Location"]
            refused = _patch(http, location, body, 0)
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
            allowed = http.patch(
                location,
                content=body,
                headers={"Content-Type": "application/octet-stream"},
                auth=server.admin,
            )
            assert allowed.status_code == 202, allowed.text
            assert http.delete(location, auth=server.admin).status_code == 204


def test_a_body_past_the_drain_limit_is_answered_without_waiting_for_the_rest(
    server: RunningServer, registry: str
) -> None:
    """A layer pushed to an upload that is gone is answered once DRAIN_LIMIT bytes are read:
    the client, still sending, learns of the error before the rest of its layer goes out."""
    credentials = base64.b64encode(":".join(server.admin).encode()).decode()
    declared = 4 * DRAIN_LIMIT  # announced, never all sent
    head = (
        f"PATCH /v2/{registry}/gone/blobs/uploads/0f5e1c9a-0000-4000-8000-000000000000 HTTP/1.1\r\n"
        f"Host: {server.address}\r\nAuthorization: Basic {credentials}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    host, port = server.address.split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head)
        piece = bytes(1024 * 1024)
        sent = 0
        while sent <= DRAIN_LIMIT + len(piece):  # a little past the limit, far from the end
            sock.sendall(piece)
            sent += len(piece)
        answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 404"), answer[:200]  # BLOB_UPLOAD_UNKNOWN
