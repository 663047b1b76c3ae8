"""Blobs in S3 against blobs on the local disk, in one run on this machine.

Starts the test S3 server (tests/support/s3gateway.py: Ceph's RADOS Gateway on loopback) and two
registries side by side, one with `storage = s3://…`, one on the filesystem, and prints for each:
monolithic and chunked 256 MiB uploads, a 256 MiB blob GET (on S3: the 307 and the download from
the gateway), and manifest GET by tag with `wrk` (32 connections, anonymous pulls of a public
registry). About a minute. Run as root on a machine where scripts/test has run:

    .venv/bin/python bench/s3_bench.py [--size-mib 256] [--seconds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.s3gateway import S3Gateway
from support.server import RunningServer

MIB = 1 << 20
CHUNK = 8 * MIB
REGISTRY = "bench"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _timed(work) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def monolithic(client: httpx.Client, data: bytes) -> float:
    def push() -> None:
        answer = client.post(
            f"/v2/{REGISTRY}/mono/blobs/uploads/",
            params={"digest": _digest(data)},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert answer.status_code == 201, answer.text

    return _timed(push)


def chunked(client: httpx.Client, data: bytes) -> float:
    def push() -> None:
        answer = client.post(f"/v2/{REGISTRY}/chunked/blobs/uploads/")
        location = answer.headers["Location"]
        for start in range(0, len(data), CHUNK):
            piece = data[start : start + CHUNK]
            answer = client.patch(
                location,
                content=piece,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(piece) - 1}",
                },
            )
            assert answer.status_code == 202, answer.text
            location = answer.headers["Location"]
        done = client.put(httpx.URL(location).copy_merge_params({"digest": _digest(data)}))
        assert done.status_code == 201, done.text

    return _timed(push)


def blob_get(client: httpx.Client, digest: str, size: int) -> float:
    def pull() -> None:
        received = 0
        with client.stream(
            "GET", f"/v2/{REGISTRY}/mono/blobs/{digest}", follow_redirects=True
        ) as answer:
            for chunk in answer.iter_bytes(MIB):
                received += len(chunk)
        assert received == size

    return _timed(pull)


def manifest_rate(server: RunningServer, client: httpx.Client, seconds: int) -> float:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    client.post(
        f"/v2/{REGISTRY}/app/blobs/uploads/",
        params={"digest": _digest(config)},
        content=config,
        headers={"Content-Type": "application/octet-stream"},
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    answer = client.put(
        f"/v2/{REGISTRY}/app/manifests/latest",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert answer.status_code == 201, answer.text
    url = f"{server.url}/v2/{REGISTRY}/app/manifests/latest"
    output = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "-H",
         "Accept: application/vnd.oci.image.manifest.v1+json", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw failed requests:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def measure(server: RunningServer, data: bytes, seconds: int) -> dict[str, float]:
    server.create_registry(REGISTRY)
    size_mb = len(data) / 1e6
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=600) as client:
        figures = {
            "monolithic upload MB/s": size_mb / monolithic(client, data),
            "chunked upload (8 MiB PATCHes) MB/s": size_mb / chunked(client, data),
            "blob GET MB/s": size_mb / blob_get(client, _digest(data), len(data)),
            "manifest GET by tag req/s": manifest_rate(server, client, seconds),
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    data = os.urandom(args.size_mib * MIB)
    with tempfile.TemporaryDirectory(prefix="s3bench-") as work:
        root = Path(work)
        gateway = S3Gateway(root / "gateway").start()
        try:
            bucket = gateway.create_bucket("bench")
            s3_env = {**gateway.environment(), "OCIREGISTRY_STORAGE": f"s3://{bucket}/registry"}
            results = {}
            for name, env in (("filesystem", {}), ("s3", s3_env)):
                server = RunningServer(root / name / "data", env=env).start()
                try:
                    results[name] = measure(server, data, args.seconds)
                finally:
                    server.stop()
        finally:
            gateway.stop()
    print(f"{'':40} {'filesystem':>12} {'s3':>12} {'s3/fs':>7}")
    for figure, value in results["filesystem"].items():
        on_s3 = results["s3"][figure]
        print(f"{figure:40} {value:12,.0f} {on_s3:12,.0f} {on_s3 / value:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
