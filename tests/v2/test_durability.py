"""Crashes and memory with large blobs, against a real server process.

What the issue promises, checked the way an operator would notice a failure:

- A SIGKILL in the middle of a 512 MiB upload (monolithic, or chunked between and during
  PATCHes) leaves no partial blob visible: the blob is unknown, and every file under
  `storage/blobs/` holds exactly the bytes its name promises. After a restart everything pushed
  before is served byte for byte, and the upload can be done again (the chunked one resumed
  from where the server says it stands).
- A 201 is a promise: a SIGKILL right after it loses nothing.
- Pushing and pulling 1 GiB keeps every server process under 150 MiB resident.

Large bodies are streamed from generators and responses are hashed as they arrive, so the test
process never holds a large blob either. Nothing is timed: kills are triggered by what the
server has stored, and waits have generous deadlines.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.server import RunningServer
from support.waiting import wait_for

pytestmark = pytest.mark.slow

MIB = 1 << 20
CRASH_BLOB_BYTES = 512 * MIB
BIG_BLOB_BYTES = 1024 * MIB
PROMISE_BLOB_BYTES = 128 * MIB
PATCH_BYTES = 64 * MIB
RSS_LIMIT_BYTES = 150 * MIB
RSS_SAMPLE_SECONDS = 0.05
WAIT_SECONDS = 120.0
TIMEOUT = httpx.Timeout(600.0, connect=10.0)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCTETS = {"Content-Type": "application/octet-stream"}


# -- content -------------------------------------------------------------------------------


@functools.cache
def _blocks(seed: int) -> tuple[bytes, ...]:
    """Eight random MiB per seed: generating fresh random bytes for every MiB of several GiB
    would make the test process compete with the server for the machine's two cores."""
    generator = random.Random(seed)
    return tuple(generator.randbytes(MIB) for _ in range(8))


def _chunk(seed: int, index: int) -> bytes:
    """MiB number `index`: a block picked by a hash of (seed, index), stamped with that hash so
    no two MiB of a blob are equal and a misplaced or repeated MiB changes the digest."""
    stamp = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return stamp + _blocks(seed)[stamp[0] % 8][len(stamp) :]


@dataclass(frozen=True)
class Content:
    """`size` deterministic pseudo-random bytes, produced a MiB at a time."""

    seed: int
    size: int

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes `start` to `end` (exclusive), in pieces of at most a MiB."""
        end = self.size if end is None else end
        offset = start
        while offset < end:
            index, skip = divmod(offset, MIB)
            piece = _chunk(self.seed, index)[skip : min(MIB, skip + end - offset)]
            yield piece
            offset += len(piece)

    @property
    def digest(self) -> str:
        return _content_digest(self.seed, self.size)


@functools.cache
def _content_digest(seed: int, size: int) -> str:
    hasher = hashlib.sha256()
    for piece in Content(seed, size).chunks():
        hasher.update(piece)
    return f"sha256:{hasher.hexdigest()}"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# -- a small image, pushed before each crash -------------------------------------------------


@dataclass(frozen=True)
class SmallImage:
    """A config, one layer and their manifest: what a crash must not take away."""

    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def blobs(self) -> tuple[bytes, bytes]:
        return self.config, self.layer


def small_image(label: str, extra_layers: tuple[Content, ...] = ()) -> SmallImage:
    config = json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()
    layer = random.Random(label).randbytes(64 * 1024)
    layers = [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}]
    layers += [
        {"mediaType": OCI_LAYER, "digest": content.digest, "size": content.size}
        for content in extra_layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": layers,
    }
    return SmallImage(config, layer, json.dumps(manifest, sort_keys=True).encode())


def push_small_image(client: httpx.Client, repo: str, image: SmallImage, tag: str) -> None:
    for blob in image.blobs:
        response = client.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": sha256(blob)},
            content=blob,
            headers=OCTETS,
        )
        assert response.status_code == 201, response.text
    put_manifest(client, repo, image, tag)


def put_manifest(client: httpx.Client, repo: str, image: SmallImage, tag: str) -> None:
    response = client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == sha256(image.manifest)


def assert_image_served(client: httpx.Client, repo: str, image: SmallImage, tag: str) -> None:
    """The manifest by tag and by digest, and each small blob, byte for byte."""
    for reference in (tag, sha256(image.manifest)):
        response = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200, response.text
        assert response.content == image.manifest
        assert response.headers["docker-content-digest"] == sha256(image.manifest)
    for blob in image.blobs:
        response = client.get(f"/v2/{repo}/blobs/{sha256(blob)}")
        assert response.status_code == 200, response.text
        assert response.content == blob


# -- large transfers -------------------------------------------------------------------------


def client_for(server: RunningServer) -> httpx.Client:
    """A new client per server life, so no pooled connection to a killed process is reused."""
    return httpx.Client(base_url=server.url, timeout=TIMEOUT, auth=server.admin)


def push_monolithic(
    client: httpx.Client, repo: str, body: Iterable[bytes], content: Content
) -> httpx.Response:
    return client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": content.digest},
        content=body,
        headers={**OCTETS, "Content-Length": str(content.size)},
    )


def patch(
    client: httpx.Client, location: str, body: Iterable[bytes], start: int, end: int
) -> httpx.Response:
    """Send bytes `start` to `end` (exclusive) of an upload, with their Content-Range."""
    headers = {**OCTETS, "Content-Range": f"{start}-{end - 1}", "Content-Length": str(end - start)}
    return client.patch(location, content=body, headers=headers)


def patch_range(client: httpx.Client, location: str, content: Content, start: int, end: int) -> str:
    """PATCH `start`..`end` in pieces that end on PATCH_BYTES boundaries; the next Location."""
    offset = start
    while offset < end:
        stop = min((offset // PATCH_BYTES + 1) * PATCH_BYTES, end)
        response = patch(client, location, content.chunks(offset, stop), offset, stop)
        assert response.status_code == 202, response.text
        assert response.headers["range"] == f"0-{stop - 1}"
        location, offset = response.headers["location"], stop
    return location


def start_upload(client: httpx.Client, repo: str) -> str:
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["location"]


def finish_upload(client: httpx.Client, location: str, content: Content) -> None:
    response = client.put(location, params={"digest": content.digest})
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == content.digest


def pull_digest(client: httpx.Client, repo: str, digest: str) -> tuple[str, int]:
    """GET a blob, hashing it as it arrives; its digest and size."""
    hasher, size = hashlib.sha256(), 0
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
        assert response.status_code == 200, response.read()
        for piece in response.iter_raw(MIB):
            hasher.update(piece)
            size += len(piece)
    return f"sha256:{hasher.hexdigest()}", size


def assert_blob_served(client: httpx.Client, repo: str, content: Content) -> None:
    head = client.head(f"/v2/{repo}/blobs/{content.digest}")
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == content.size
    assert pull_digest(client, repo, content.digest) == (content.digest, content.size)


# -- crashes ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def crash(server: RunningServer) -> None:
    """SIGKILL every server process and wait until none runs, so a restart can take the port
    (a zombie no longer holds sockets; nobody may reap orphans in a container)."""
    pids = server.pids()
    server.kill()
    wait_for(
        lambda: not any(_alive(pid) for pid in pids),
        f"server processes {pids} to die",
        WAIT_SECONDS,
        every=0.02,
    )


def stored_bytes(server: RunningServer, upload_id: str = "*") -> int:
    """How many bytes the server has written into upload sessions' data files, or into the
    file a monolithic upload streams to (`.incoming/`), the largest."""
    storage = server.data_dir / "storage"
    sizes = []
    incoming = storage.glob(".incoming/*") if upload_id == "*" else []
    for path in [*storage.glob(f"uploads/{upload_id}/data"), *incoming]:
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            continue
    return max(sizes, default=0)


def crashing_midway(
    body: Iterable[bytes], server: RunningServer, *, after: int, stored: int, upload_id: str = "*"
) -> Iterator[bytes]:
    """Yield `body`; once `after` bytes are sent, wait until the server has stored `stored`
    bytes of the upload, SIGKILL it, and go on sending as a client unaware of the crash."""
    sent, crashed = 0, False
    for piece in body:
        if not crashed and sent >= after:
            wait_for(
                lambda: stored_bytes(server, upload_id) >= stored,
                f"the server to store {stored} bytes of the upload",
                WAIT_SECONDS,
                every=0.02,
            )
            crash(server)
            crashed = True
        yield piece
        sent += len(piece)


def assert_crashed(server: RunningServer) -> None:
    assert server.process is not None and server.process.poll() is not None


def assert_no_partial_blob(server: RunningServer, repo: str, content: Content) -> None:
    """The interrupted blob is unknown, and no file in the blob store holds anything but the
    complete content its name is the digest of."""
    with client_for(server) as client:
        assert client.head(f"/v2/{repo}/blobs/{content.digest}").status_code == 404
        assert client.get(f"/v2/{repo}/blobs/{content.digest}").status_code == 404
    root = server.data_dir / "storage" / "blobs"
    hex_digest = content.digest.removeprefix("sha256:")
    assert not (root / "sha256" / hex_digest[:2] / hex_digest).exists()
    checked = 0
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.name.startswith(".tmp-"):  # temporaries are never served
            continue
        algorithm, prefix, name = path.relative_to(root).parts
        assert (algorithm, prefix) == ("sha256", name[:2]), path
        hasher = hashlib.sha256()
        with open(path, "rb") as file:
            while piece := file.read(MIB):
                hasher.update(piece)
        assert hasher.hexdigest() == name, f"{path} does not hold the blob its name says"
        checked += 1
    assert checked > 0


def upload_status(client: httpx.Client, location: str) -> int:
    """The bytes the server says an upload holds, from GET on the session."""
    response = client.get(location)
    assert response.status_code == 204, response.text
    first, _, last = response.headers["range"].partition("-")
    assert first == "0"
    return 0 if last == "0" else int(last) + 1


# -- tests -----------------------------------------------------------------------------------


def test_sigkill_during_monolithic_upload(fresh_server: RunningServer, registry_name: str) -> None:
    """Kill once the server has stored a quarter of a 512 MiB POST ?digest=; the session it
    leaves behind must never surface as a blob, and the same push works after a restart."""
    server, repo = fresh_server, f"{registry_name}/app"
    server.create_registry(registry_name)
    content, before = Content(1, CRASH_BLOB_BYTES), small_image("monolithic-before")
    with client_for(server) as client:
        push_small_image(client, repo, before, "before")
        body = crashing_midway(content.chunks(), server, after=192 * MIB, stored=128 * MIB)
        with pytest.raises(httpx.TransportError):
            push_monolithic(client, repo, body, content)
    assert_crashed(server)  # the SIGKILL ended the request, not an error reply

    server.start()
    assert_no_partial_blob(server, repo, content)
    with client_for(server) as client:
        assert_image_served(client, repo, before, "before")
        response = push_monolithic(client, repo, content.chunks(), content)
        assert response.status_code == 201, response.text
        assert response.headers["docker-content-digest"] == content.digest
        assert_blob_served(client, repo, content)
        assert_image_served(client, repo, before, "before")


def test_sigkill_between_and_during_chunks(fresh_server: RunningServer, registry_name: str) -> None:
    """Kill after a PATCH's 202, resume; kill in the middle of a PATCH, resume from the offset
    the server reports (the chunk cut off is not recorded); the finished blob is whole."""
    server, repo = fresh_server, f"{registry_name}/app"
    server.create_registry(registry_name)
    content, before = Content(2, CRASH_BLOB_BYTES), small_image("chunked-before")
    with client_for(server) as client:
        push_small_image(client, repo, before, "before")
        location = start_upload(client, repo)
        upload_id = location.rstrip("/").rpartition("/")[2]
        location = patch_range(client, location, content, 0, 2 * PATCH_BYTES)
    crash(server)  # between chunks: both 202s were given

    server.start()
    assert_no_partial_blob(server, repo, content)
    with client_for(server) as client:
        assert_image_served(client, repo, before, "before")
        assert upload_status(client, location) == 2 * PATCH_BYTES
        location = patch_range(client, location, content, 2 * PATCH_BYTES, 3 * PATCH_BYTES)
        start, end = 3 * PATCH_BYTES, 4 * PATCH_BYTES
        body = crashing_midway(
            content.chunks(start, end),
            server,
            after=PATCH_BYTES // 2,
            stored=start + PATCH_BYTES // 4,
            upload_id=upload_id,
        )
        with pytest.raises(httpx.TransportError):
            patch(client, location, body, start, end)
    assert_crashed(server)  # the SIGKILL ended the request, not an error reply

    server.start()
    assert_no_partial_blob(server, repo, content)
    with client_for(server) as client:
        assert_image_served(client, repo, before, "before")
        held = upload_status(client, location)
        assert held == start
        location = patch_range(client, location, content, held, content.size)
        finish_upload(client, location, content)
        assert_blob_served(client, repo, content)
        assert_image_served(client, repo, before, "before")
    assert not (server.data_dir / "storage" / "uploads" / upload_id).exists()


def test_created_survives_sigkill(fresh_server: RunningServer, registry_name: str) -> None:
    """SIGKILL right after a blob's 201, then right after a manifest's 201: both stay."""
    server, repo = fresh_server, f"{registry_name}/app"
    server.create_registry(registry_name)
    content, before = Content(3, PROMISE_BLOB_BYTES), small_image("promise-before")
    with client_for(server) as client:
        push_small_image(client, repo, before, "before")
        response = push_monolithic(client, repo, content.chunks(), content)
        assert response.status_code == 201, response.text
    crash(server)

    server.start()
    with client_for(server) as client:
        assert_blob_served(client, repo, content)
        assert_image_served(client, repo, before, "before")
        after = small_image("promise-after", extra_layers=(content,))
        push_small_image(client, repo, after, "after")
    crash(server)

    server.start()
    with client_for(server) as client:
        assert_image_served(client, repo, after, "after")
        assert_image_served(client, repo, before, "before")
        assert_blob_served(client, repo, content)


class RssSampler:
    """Samples VmRSS of every server process every 50 ms in a thread; keeps each one's max."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.peaks: dict[int, int] = {}
        self.samples: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids: list[int] = []
        rounds = 0
        while not self._stop.is_set():
            if rounds % 20 == 0:  # a worker restarted after dying would show up here
                pids = self.server.pids()
            rounds += 1
            for pid in pids:
                rss = _rss_bytes(pid)
                if rss is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), rss)
                    self.samples[pid] = self.samples.get(pid, 0) + 1
            self._stop.wait(RSS_SAMPLE_SECONDS)


def _rss_bytes(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None  # a zombie has no VmRSS


def _role(pid: int, supervisor: int) -> str:
    """What a server process is, for the printed figures."""
    if pid == supervisor:
        return "supervisor"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return "resource tracker" if "resource_tracker" in cmdline else "worker"


def test_one_gib_push_and_pull_memory(fresh_server: RunningServer, registry_name: str) -> None:
    """1 GiB monolithic and 1 GiB in 64 MiB PATCHes, both pulled: no process grows with it."""
    server, repo = fresh_server, f"{registry_name}/app"
    server.create_registry(registry_name)
    monolithic, chunked = Content(4, BIG_BLOB_BYTES), Content(5, BIG_BLOB_BYTES)
    pids_before = sorted(server.pids())
    with client_for(server) as client, RssSampler(server) as sampler:
        response = push_monolithic(client, repo, monolithic.chunks(), monolithic)
        assert response.status_code == 201, response.text
        location = patch_range(client, start_upload(client, repo), chunked, 0, chunked.size)
        finish_upload(client, location, chunked)
        for content in (monolithic, chunked):
            assert pull_digest(client, repo, content.digest) == (content.digest, content.size)

    assert sorted(server.pids()) == pids_before, "a server process died and was replaced"
    assert server.process is not None
    print()
    for pid, peak in sorted(sampler.peaks.items()):
        role = _role(pid, server.process.pid)
        print(f"max RSS of {role} {pid}: {peak / MIB:.1f} MiB ({sampler.samples[pid]} samples)")
    assert set(sampler.peaks) == set(pids_before)
    for pid, peak in sampler.peaks.items():
        assert peak < RSS_LIMIT_BYTES, f"process {pid} reached {peak / MIB:.1f} MiB resident"
