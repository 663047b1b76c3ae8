"""What moving an upload's bytes costs the server, counted rather than timed (the timings are in
`bench/upload_bench.py`): page faults of the workers per MiB received, and whether the
resumable hash lets the event loop run while it hashes."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import httpx
import pytest
import rehashes

from ociregistry.blobstore.hashing import ResumableSha256
from support.server import RunningServer

MIB = 1 << 20
PATCH_BYTES = 4 * MIB
BLOB_BYTES = 32 * MIB
# Without `ops/allocator.py` a chunked upload faulted in a fresh page for every 4 KiB it
# received (256 per MiB, measured: 245); with it, the buffers are reused (under 1 per MiB).
MAX_FAULTS_PER_MIB = 32


def _faults(pids: list[int]) -> int:
    """Minor page faults so far of `pids` (field 10 of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        total += int(text[text.rindex(")") + 2 :].split()[7])
    return total


def _workers(server: RunningServer) -> list[int]:
    assert server.process is not None
    return [pid for pid in server.pids() if pid != server.process.pid]


def _chunked_upload(client: httpx.Client, repo: str, data: bytes) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    for start in range(0, len(data), PATCH_BYTES):
        chunk = data[start : start + PATCH_BYTES]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        }
        response = client.patch(location, content=chunk, headers=headers)
        assert response.status_code == 202, response.text
        location = response.headers["location"]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = client.put(location, params={"digest": digest})
    assert response.status_code == 201, response.text


def _monolithic_upload(client: httpx.Client, repo: str, data: bytes) -> None:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text


def test_upload_buffers_are_reused_not_faulted_in(
    fresh_server: RunningServer, registry_name: str
) -> None:
    """A chunked and a monolithic upload, after a first one of each has warmed the workers'
    heap, fault in far fewer than one page per 4 KiB received; and so does a blob GET (its
    1 MiB reads stay on the heap too)."""
    server, repo = fresh_server, f"{registry_name}/app"
    server.create_registry(registry_name)
    with httpx.Client(base_url=server.url, timeout=120.0, auth=server.admin) as client:
        _chunked_upload(client, repo, os.urandom(BLOB_BYTES))  # warm-ups
        _monolithic_upload(client, repo, os.urandom(BLOB_BYTES))
        data = os.urandom(BLOB_BYTES)
        workers = _workers(server)
        before = _faults(workers)
        _chunked_upload(client, repo, data)
        chunked = (_faults(workers) - before) / (BLOB_BYTES / MIB)

        data = os.urandom(BLOB_BYTES)
        before = _faults(workers)
        _monolithic_upload(client, repo, data)
        monolithic = (_faults(workers) - before) / (BLOB_BYTES / MIB)

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        for _ in range(2):  # the first warms the heap up for 1 MiB reads
            before = _faults(workers)
            with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
                assert response.status_code == 200
                assert sum(len(piece) for piece in response.iter_raw()) == BLOB_BYTES
            download = (_faults(workers) - before) / (BLOB_BYTES / MIB)
    print(f"page faults per MiB: chunked {chunked:.1f}, monolithic {monolithic:.1f}")
    print(f"page faults per MiB: blob GET {download:.1f}")
    assert chunked < MAX_FAULTS_PER_MIB, f"{chunked:.1f} page faults per MiB (chunked)"
    assert monolithic < MAX_FAULTS_PER_MIB, f"{monolithic:.1f} page faults per MiB (monolithic)"
    assert download < MAX_FAULTS_PER_MIB, f"{download:.1f} page faults per MiB (blob GET)"


def test_resumable_hash_lets_other_threads_run() -> None:
    """While a worker thread hashes a batch of a chunked upload, the event loop's thread can
    run (it receives the next batch meanwhile): the hash releases the GIL. The interpreter is
    told never to take the GIL from a thread by itself, so the main thread runs during the
    hash only if the hash gives the GIL up; it then holds it until it has counted to
    `turns`. With rehashes, used before, it ran no turn at all until the hash was over."""
    data = os.urandom(16 * MIB)
    hasher = ResumableSha256()
    started, finished = threading.Event(), threading.Event()
    turns = 1000

    def hash_all() -> None:
        started.set()
        hasher.update(data)
        finished.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        thread = threading.Thread(target=hash_all)
        thread.start()
        started.wait()
        ran = 0
        while not finished.is_set() and ran < turns:
            ran += 1
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert str(hasher.digest()) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert ran == turns, f"the main thread ran {ran} turns while 16 MiB were hashed"


def test_resumable_hash_state_continues_anywhere() -> None:
    """A state saved at any point continues to the same digest as hashlib's; a state saved by
    rehashes (sessions in flight across an upgrade) continues too; a foreign one is refused."""
    data = os.urandom(1_000_003)
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    for cut in (0, 1, 63, 64, 65, 999_999):
        first = ResumableSha256()
        first.update(data[:cut])
        second = ResumableSha256(first.state())
        second.update(memoryview(data)[cut:])
        assert str(second.digest()) == expected, cut
    old = rehashes.PySha256()
    old.update(data[:12345])
    resumed = ResumableSha256(bytes(old.serialize()))
    resumed.update(data[12345:])
    assert str(resumed.digest()) == expected
    broken = ResumableSha256().state()
    with pytest.raises(ValueError):
        ResumableSha256(broken[:-1])
