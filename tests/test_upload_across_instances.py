"""A chunked upload whose requests go to two different server processes reads no byte back.

Two `ociregistry serve` instances share one data folder and one database, as instances behind
a load balancer do. The session row carries the multipart state and the sha256 state from one
request to the next, so whichever instance takes a chunk continues the hash from the row: the
row's hash state changes with every PATCH, and the storage trace of both instances (a test-only
observer on the driver wrapper, `OCIREGISTRY_STORAGE_TRACE`) shows parts written by both and
not one read of upload data.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.oci import digest_of, patch_chunk, start_upload, upload_progress
from support.server import RunningServer

CHUNK = 3 << 20


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer, Path]]:
    trace = tmp_path / "storage-trace"
    env = {"OCIREGISTRY_STORAGE_TRACE": str(trace)}
    a = RunningServer(tmp_path / "data", workers=1, env=env).start()
    b = RunningServer(tmp_path / "data", workers=1, env=env)
    b.log_path = tmp_path / "data-b-server.log"
    b.start()
    yield a, b, trace
    a.stop()
    b.stop()


def _row(data_dir: Path, upload_id: str) -> tuple[int, bytes | None]:
    with sqlite3.connect(data_dir / "registry.db") as db:
        return db.execute(
            "SELECT received, hash_state FROM upload_sessions WHERE id = ?", (upload_id,)
        ).fetchone()


def test_chunked_upload_over_two_instances_reads_nothing_back(
    pair: tuple[RunningServer, RunningServer, Path],
) -> None:
    a, b, trace = pair
    a.create_registry("seam")
    repo = "seam/app"
    chunks = [os.urandom(CHUNK) for _ in range(4)] + [os.urandom(1000)]
    data = b"".join(chunks)
    with (
        httpx.Client(base_url=a.url, auth=a.admin, timeout=60) as on_a,
        httpx.Client(base_url=b.url, auth=b.admin, timeout=60) as on_b,
    ):
        location = start_upload(on_a, repo)
        upload_id = location.rstrip("/").rpartition("/")[2]
        trace.unlink(missing_ok=True)  # from here on: the upload's storage operations only
        offset, states = 0, []
        for number, chunk in enumerate(chunks[:-1]):
            client = (on_b, on_a)[number % 2]
            response = patch_chunk(client, location, chunk, f"{offset}-{offset + len(chunk) - 1}")
            assert response.status_code == 202, response.text
            offset += len(chunk)
            received, hash_state = _row(a.data_dir, upload_id)
            assert received == offset
            assert hash_state and hash_state not in states  # the hash advanced in the row
            states.append(hash_state)
        assert upload_progress(on_b, location) == (204, f"0-{offset - 1}")
        finished = on_b.put(location, params={"digest": digest_of(data)}, content=chunks[-1])
        assert finished.status_code == 201, finished.text
        operations = [line.split(" ", 2) for line in trace.read_text().splitlines()]
        assert on_a.get(f"/v2/{repo}/blobs/{digest_of(data)}").content == data

    writers = {pid for pid, operation, _ in operations if operation == "write_part"}
    assert len(writers) == 2, operations  # both instances took chunks
    reads = [op for op in operations if op[1] in ("reader", "get_content")]
    assert reads == [], f"upload bytes were read back: {reads}"
    assert [op for _, op, _ in operations if op == "compose"] == ["compose"]
