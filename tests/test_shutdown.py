"""A graceful stop: SIGTERM to a real server with two workers while a 256 MiB upload is in
flight and just after a burst of pulls. The upload finishes, new connections are refused, the
pulls are counted, and the server exits 0."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.oci import make_image, push_image
from support.server import RunningServer

CHUNK = bytes(range(256)) * 4096  # 1 MiB
CHUNKS = 256  # 256 MiB
BEFORE_SIGNAL = 32  # chunks sent before the signal
PULLS = 25
DEADLINE_SECONDS = 60.0  # for states to show up, not a measure of anything


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


@pytest.mark.slow
def test_sigterm_lets_an_upload_finish_counts_pulls_and_exits_zero(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data", workers=2).start()
    server.create_registry("drain")
    image = make_image("drain")
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
        push_image(http, "drain/app", image, tag="1.0")

    digest = hashlib.sha256()
    for _ in range(CHUNKS):
        digest.update(CHUNK)
    halfway, go_on = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def body() -> Iterator[bytes]:
        for index in range(CHUNKS):
            if index == BEFORE_SIGNAL:
                halfway.set()
                go_on.wait(DEADLINE_SECONDS)
            yield CHUNK

    def upload() -> None:
        try:
            with httpx.Client(base_url=server.url, auth=server.admin, timeout=120) as http:
                result["response"] = http.post(
                    "/v2/drain/big/blobs/uploads/",
                    params={"digest": f"sha256:{digest.hexdigest()}"},
                    content=body(),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(CHUNKS * len(CHUNK)),
                    },
                )
        except Exception as error:  # reported by the assertion below
            result["error"] = error

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        assert halfway.wait(DEADLINE_SECONDS)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(PULLS):  # buffered in the workers' memory until a flush
                pulled = http.get(
                    "/v2/drain/app/manifests/1.0", headers={"Accept": image.media_type}
                )
                assert pulled.status_code == 200
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGTERM)
        # no new connection is taken while the upload is still in flight
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not _refused(f"{server.url}/livez") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(f"{server.url}/livez")
        assert uploader.is_alive() and "response" not in result
    finally:
        go_on.set()
        uploader.join(DEADLINE_SECONDS * 2)
    response = result.get("response")
    assert isinstance(response, httpx.Response), result
    assert response.status_code == 201, response.text
    assert server.process.wait(timeout=DEADLINE_SECONDS) == 0

    server.start()
    try:
        with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
            stored = http.head(f"/v2/drain/big/blobs/sha256:{digest.hexdigest()}")
            assert stored.status_code == 200
            assert int(stored.headers["content-length"]) == CHUNKS * len(CHUNK)
            tags = http.get("/api/v1/registries/drain/images/app/-/tags").json()["items"]
            assert {t["name"]: t["pull_count"] for t in tags} == {"1.0": PULLS}
    finally:
        server.kill()
