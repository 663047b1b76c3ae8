"""A full disk while receiving a blob is an OCI error, not a plain 500 and a reset connection
(issue 10 point 8): 507 with an OCI error body that says the storage is full, the connection
stays usable, nothing half-written becomes visible or blocks a retry, and once space is freed
the same upload succeeds.

The data folder is a small tmpfs (the tests run as root); the database lives elsewhere, so
only blob storage runs out of space.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.oci import digest_of, error_of, patch_chunk, push_blob, start_upload, upload_progress
from support.server import RunningServer

MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def server_on_small_disk(small_disk: Path, tmp_path: Path) -> Iterator[RunningServer]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    server = RunningServer(
        small_disk / "data", workers=1, env={"OCIREGISTRY_DATABASE_URL": database}
    )
    server.log_path = tmp_path / "server.log"
    server.start()
    server.create_registry("full")
    yield server
    server.kill()


def _fill(disk: Path, leave: int) -> Path:
    """A file that leaves about `leave` bytes free on `disk`."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as file:
        file.write(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    return filler


def _assert_full(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    code, message = error_of(response)
    assert code == "UNKNOWN"
    assert "storage is full" in message and "No space left" in message


def test_full_disk_is_an_oci_error_and_a_retry_succeeds(
    server_on_small_disk: RunningServer, small_disk: Path
) -> None:
    server, repo = server_on_small_disk, "full/app"
    blob, chunk = os.urandom(5 * MIB // 2), os.urandom(5 * MIB // 2)
    filler = _fill(small_disk, MIB)
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as client:
        # Monolithic: the error, on a connection that goes on serving.
        _assert_full(push_blob(client, repo, blob))
        assert client.head(f"/v2/{repo}/blobs/{digest_of(blob)}").status_code == 404
        assert push_blob(client, repo, b"a small blob still fits").status_code == 201

        # Chunked: the chunk is not recorded, the session lives on.
        location = start_upload(client, repo)
        _assert_full(patch_chunk(client, location, chunk, f"0-{len(chunk) - 1}"))
        assert upload_progress(client, location) == (204, "0-0")
        assert client.get("/v2/").status_code in (200, 401)

        # Nothing half-written is left to take the space or be served.
        storage = small_disk / "data" / "storage"
        leftovers = [
            path
            for folder in ("uploads", ".incoming")
            for path in (storage / folder).rglob("*")
            if path.is_file() and path.stat().st_size
        ]
        assert leftovers == []

        filler.unlink()  # the operator frees space
        response = push_blob(client, repo, blob)
        assert response.status_code == 201, response.text
        response = patch_chunk(client, location, chunk, f"0-{len(chunk) - 1}")
        assert response.status_code == 202, response.text
        response = client.put(location, params={"digest": digest_of(chunk)})
        assert response.status_code == 201, response.text
        assert client.get(f"/v2/{repo}/blobs/{digest_of(blob)}").content == blob
        assert client.get(f"/v2/{repo}/blobs/{digest_of(chunk)}").content == chunk
