"""What both servers get: the seed image, blob uploads in the agreed form, manifests."""

from __future__ import annotations

import hashlib
import json
import os
import random
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .harness import (
    APP_REPO,
    FORM_POST,
    HTTP_TIMEOUT,
    MANIFEST_ACCEPT,
    MIB,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    OCTET_STREAM,
    SEED_TAG,
    BenchError,
    Server,
    Settings,
    auth_headers,
    expect,
    log,
    run_tool,
    sha256_digest,
    with_query,
    write_random_file,
)


def upload_blob(client: httpx.Client, repo: str, data: bytes, form: str) -> str:
    """A small blob in one piece, in the form both servers were found to support."""
    digest = sha256_digest(data)
    headers = {"Content-Type": OCTET_STREAM}
    start = f"/v2/{repo}/blobs/uploads/"
    if form == FORM_POST:
        expect(
            client.post(start, params={"digest": digest}, content=data, headers=headers),
            201,
            f"POST {start}?digest=",
        )
        return digest
    location = expect(client.post(start), 202, f"POST {start}").headers["location"]
    expect(
        client.put(with_query(location, digest=digest), content=data, headers=headers),
        201,
        "PUT upload?digest=",
    )
    return digest


def image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": sha256_digest(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def image_config(layers: list[bytes], label: str) -> bytes:
    """A minimal but valid image config; the label makes every config distinct."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.example.bench": label}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
    }
    return json.dumps(config, separators=(",", ":")).encode()


def probe_upload_form(server: Server) -> bool:
    """Whether `POST ?digest=` with the body completes an upload in one request (201)."""
    data = os.urandom(1024)
    digest = sha256_digest(data)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        client.headers.update(auth_headers(server, [APP_REPO]))
        response = client.post(
            f"/v2/{APP_REPO}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"Content-Type": OCTET_STREAM},
        )
        if response.status_code == 202 and "location" in response.headers:
            client.delete(response.headers["location"])  # leave no upload session behind
        return response.status_code == 201


@dataclass(frozen=True)
class SeedData:
    """What both servers hold before the measurements: the same bytes in each."""

    layer: bytes
    config: bytes
    manifest: bytes
    tags: list[str]
    big_blob: Path
    big_digest: str

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)


def make_seed(workdir: Path, settings: Settings) -> SeedData:
    rng = random.Random(20240601)
    layer = rng.randbytes(4096)
    config = image_config([layer], "seed")
    big_blob = workdir / "download-blob"
    log(f"writing the {settings.blob_mib} MiB download blob")
    big_digest = write_random_file(big_blob, settings.blob_mib * MIB)
    tags = [SEED_TAG] + [f"v{index:03d}" for index in range(settings.extra_tags)]
    return SeedData(layer, config, image_manifest(config, [layer]), tags, big_blob, big_digest)


def seed_server(server: Server, seed: SeedData, form: str) -> None:
    """Push the seed image under every tag, and the big blob for the download test."""
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        client.headers.update(auth_headers(server, [APP_REPO]))
        upload_blob(client, APP_REPO, seed.layer, form)
        upload_blob(client, APP_REPO, seed.config, form)
        for tag in seed.tags:
            expect(
                client.put(
                    f"/v2/{APP_REPO}/manifests/{tag}",
                    content=seed.manifest,
                    headers={"Content-Type": OCI_MANIFEST},
                ),
                201,
                f"PUT manifest {tag}",
            )
    curl_upload(server, seed.big_blob, seed.big_digest, form)
    verify_seed(server, seed)


def verify_seed(server: Server, seed: SeedData) -> None:
    """Check every URL the load tests hit, so a 404 cannot pass for a fast answer."""
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        client.headers.update(auth_headers(server, [APP_REPO]))
        url = f"/v2/{APP_REPO}/manifests/{SEED_TAG}"
        for method in ("GET", "HEAD"):
            response = expect(
                client.request(method, url, headers={"Accept": MANIFEST_ACCEPT}),
                200,
                f"{method} {url}",
            )
            if response.headers.get("docker-content-digest") != seed.manifest_digest:
                raise BenchError(f"{server.label}: {method} manifest has the wrong digest")
        tags = expect(client.get(f"/v2/{APP_REPO}/tags/list"), 200, "GET tags/list").json()
        if sorted(tags.get("tags") or []) != sorted(seed.tags):
            raise BenchError(f"{server.label}: tags/list answered {tags}")
        hasher = hashlib.sha256()
        with client.stream(
            "GET", f"/v2/{APP_REPO}/blobs/{seed.big_digest}", follow_redirects=True
        ) as response:
            expect(response, 200, "GET big blob")
            for block in response.iter_bytes(MIB):
                hasher.update(block)
        if "sha256:" + hasher.hexdigest() != seed.big_digest:
            raise BenchError(f"{server.label}: the big blob came back different")


# --------------------------------------------------------------------------------------------


def curl_base(headers: dict[str, str]) -> list[str]:
    argv = ["curl", "--silent", "--show-error", "--http1.1"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    return argv


def curl_request(argv: list[str]) -> tuple[int, float, str, float]:
    """Run curl once; returns the status, curl's own transfer time, Location and bytes received.

    Timing with curl's `time_total` leaves out starting the process and curl reading the file
    into memory (`--data-binary @file` does that before the transfer begins).
    """
    out = run_tool(
        [*argv, "--write-out", "%{http_code}\n%{time_total}\n%{size_download}\n%header{location}\n"]
    )
    status, total, size, location = [*out.splitlines(), ""][:4]
    return int(status), float(total), location.strip(), float(size)


def curl_upload(server: Server, path: Path, digest: str, form: str) -> float:
    """Upload `path` in one piece; returns the seconds the transfer took."""
    base = curl_base(auth_headers(server, [APP_REPO]))
    body = ["--data-binary", f"@{path}", "-H", f"Content-Type: {OCTET_STREAM}", "-H", "Expect:"]
    start = f"{server.url}/v2/{APP_REPO}/blobs/uploads/"
    if form == FORM_POST:
        argv = [*base, "-o", "/dev/null", "-X", "POST", *body, with_query(start, digest=digest)]
        status, seconds, _, _ = curl_request(argv)
        if status != 201:
            raise BenchError(f"{server.label}: monolithic POST answered {status}")
        return seconds
    argv = [*base, "-o", "/dev/null", "-X", "POST", "-H", "Content-Length: 0", start]
    status, post_seconds, location, _ = curl_request(argv)
    if status != 202 or not location:
        raise BenchError(f"{server.label}: POST {start} answered {status}")
    target = with_query(urllib.parse.urljoin(server.url, location), digest=digest)
    status, put_seconds, _, _ = curl_request([*base, "-o", "/dev/null", "-X", "PUT", *body, target])
    if status != 201:
        raise BenchError(f"{server.label}: PUT of the whole blob answered {status}")
    return post_seconds + put_seconds


def upload_in_chunks(client: httpx.Client, repo: str, blocks: Iterable[bytes], digest: str) -> None:
    """POST, a PATCH with Content-Range for each block, PUT ?digest=: what docker push does.

    Each PATCH needs the Location of the one before (Distribution signs the offset into it), so
    this is a loop over one kept-alive connection; `blocks` may read them from a file as it goes.
    """
    response = expect(client.post(f"/v2/{repo}/blobs/uploads/"), 202, "POST upload")
    location = response.headers["location"]
    offset = 0
    for block in blocks:
        headers = {
            "Content-Type": OCTET_STREAM,
            "Content-Range": f"{offset}-{offset + len(block) - 1}",
        }
        response = expect(client.patch(location, content=block, headers=headers), 202, "PATCH")
        location = response.headers["location"]
        offset += len(block)
    expect(client.put(with_query(location, digest=digest)), 201, "PUT ?digest=")
