"""The registry with its blobs in S3: real server processes against a real gateway (Ceph RGW).

What is proven here, each against the wire:
- finishing a 64 MiB chunked upload reads back no byte from S3 and sends none to it (the parts
  are composed server-side), counted by a relay between the registry and the gateway;
- blob GET answers 307 to a presigned SigV4 URL the gateway honours, and refuses once the
  signature is tampered with;
- with `s3_redirect=false` the registry streams the blob itself, `Range` included;
- S3 going away mid-push gives the client 503 `UNAVAILABLE` (OCI error JSON, `Retry-After`),
  and once S3 is back, retrying the same chunk finishes the push;
- S3's throttling (`503 SlowDown`) is retried, and past the bound of attempts the client gets
  503 `UNAVAILABLE` with `Retry-After` and nothing of the blob is visible;
- manifests are cached by digest: GETs and HEADs after the first read nothing from S3, nor do
  blob HEAD and GET (the database knows the size); uploads advertise S3's 5 MiB part minimum
  as `OCI-Chunk-Min-Length`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from ociregistry.blobstore.s3 import MAX_ATTEMPTS, MIN_PART_SIZE
from support import conformance
from support.oci import error_of, make_image, patch_chunk, push_blob, push_image, start_upload
from support.s3gateway import CountingProxy, S3Gateway, ThrottlingProxy
from support.server import RunningServer

pytestmark = pytest.mark.s3

MIB = 1024 * 1024
CHUNK = 8 * MIB


def _s3_server(
    gateway: S3Gateway, data_dir: Path, bucket: str, prefix: str, workers: int = 1, **env: str
) -> RunningServer:
    settings = {
        **gateway.environment(),
        "OCIREGISTRY_STORAGE": f"s3://{bucket}/{prefix}",
        **env,
    }
    return RunningServer(data_dir, workers=workers, env=settings).start()


@contextmanager
def _behind(
    proxy: CountingProxy | ThrottlingProxy,
    gateway: S3Gateway,
    data_dir: Path,
    bucket: str,
    prefix: str,
    **env: str,
) -> Iterator[RunningServer]:
    """A registry on the bucket that reaches S3 only through `proxy` (a relay that counts or
    throttles); the server stopped and the relay closed on leaving."""
    try:
        server = _s3_server(
            gateway, data_dir, bucket, prefix, OCIREGISTRY_S3_ENDPOINT_URL=proxy.endpoint_url, **env
        )
        try:
            yield server
        finally:
            server.stop()
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def s3_bucket(s3_gateway: S3Gateway) -> str:
    return s3_gateway.create_bucket(f"registry-{os.getpid()}")


@pytest.fixture(scope="module")
def s3_server(
    s3_gateway: S3Gateway, s3_bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A registry whose blobs live in the gateway, with redirects (the default)."""
    server = _s3_server(
        s3_gateway, tmp_path_factory.mktemp("s3") / "data", s3_bucket, "reg", workers=2
    )
    yield server
    server.stop()


@pytest.fixture
def s3_client(s3_server: RunningServer, registry_name: str) -> Iterator[httpx.Client]:
    s3_server.create_registry(registry_name)
    with httpx.Client(base_url=s3_server.url, timeout=120.0, auth=s3_server.admin) as http:
        yield http


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _chunked_upload(client: httpx.Client, repo: str, data: bytes) -> str:
    """POST, then PATCH `data` in 8 MiB chunks with Content-Range; returns the Location."""
    location = start_upload(client, repo)
    for start in range(0, len(data), CHUNK):
        chunk = data[start : start + CHUNK]
        answer = patch_chunk(client, location, chunk, f"{start}-{start + len(chunk) - 1}")
        assert answer.status_code == 202, answer.text
        location = httpx.URL(answer.headers["Location"]).raw_path.decode()
    return location


def _finish(client: httpx.Client, location: str, digest: str) -> httpx.Response:
    return client.put(httpx.URL(location).copy_merge_params({"digest": digest}))


def test_finishing_a_64_mib_chunked_upload_reads_nothing_back_from_s3(
    s3_gateway: S3Gateway, s3_bucket: str, tmp_path: Path, registry_name: str
) -> None:
    proxy = CountingProxy(s3_gateway.port)
    with _behind(proxy, s3_gateway, tmp_path / "data", s3_bucket, "counted") as server:
        server.create_registry(registry_name)
        data = os.urandom(64 * MIB)
        digest = _sha256(data)
        with httpx.Client(base_url=server.url, timeout=120.0, auth=server.admin) as client:
            location = _chunked_upload(client, f"{registry_name}/big", data)
            sent_before, received_before = proxy.counts()
            assert sent_before >= 64 * MIB  # the chunks did go to S3, through the relay
            finished = _finish(client, location, digest)
            assert finished.status_code == 201, finished.text
            sent, received = proxy.counts()
            # Requests and XML answers only: a read-back or a copy through the registry
            # would be 64 MiB.
            assert received - received_before < 256 * 1024
            assert sent - sent_before < 256 * 1024
            answer = client.get(f"/v2/{registry_name}/big/blobs/{digest}", follow_redirects=True)
            assert answer.status_code == 200 and _sha256(answer.content) == digest


def test_blob_get_redirects_to_a_presigned_url_the_gateway_honours(
    s3_client: httpx.Client, s3_gateway: S3Gateway, registry_name: str
) -> None:
    data = os.urandom(3 * MIB + 5)
    digest = _sha256(data)
    assert push_blob(s3_client, f"{registry_name}/app", data).status_code == 201
    head = s3_client.head(f"/v2/{registry_name}/app/blobs/{digest}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    answer = s3_client.get(f"/v2/{registry_name}/app/blobs/{digest}")
    assert answer.status_code == 307, answer.text
    url = answer.headers["Location"]
    assert url.startswith(s3_gateway.endpoint_url + "/")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "1200"
    fetched = httpx.get(url, timeout=60)  # no registry credentials: the URL is the grant
    assert fetched.status_code == 200 and _sha256(fetched.content) == digest
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = signature[:-4] + ("0000" if signature[-4:] != "0000" else "1111")
    tampered = urlunsplit(urlsplit(url)._replace(query=urlencode(query)))
    refused = httpx.get(tampered, timeout=60)
    assert refused.status_code == 403 and b"SignatureDoesNotMatch" in refused.content


def test_without_redirects_the_registry_streams_the_blob_and_ranges(
    s3_gateway: S3Gateway, s3_bucket: str, tmp_path: Path, registry_name: str
) -> None:
    server = _s3_server(
        s3_gateway, tmp_path / "data", s3_bucket, "streamed", OCIREGISTRY_S3_REDIRECT="false"
    )
    try:
        server.create_registry(registry_name)
        data = os.urandom(9 * MIB + 7)
        digest = _sha256(data)
        with httpx.Client(base_url=server.url, timeout=120.0, auth=server.admin) as client:
            assert push_blob(client, f"{registry_name}/app", data).status_code == 201
            whole = client.get(f"/v2/{registry_name}/app/blobs/{digest}")
            assert whole.status_code == 200 and whole.content == data
            part = client.get(
                f"/v2/{registry_name}/app/blobs/{digest}",
                headers={"Range": f"bytes={8 * MIB - 3}-{8 * MIB + 9}"},
            )
            assert part.status_code == 206
            assert part.content == data[8 * MIB - 3 : 8 * MIB + 10]
            assert part.headers["Content-Range"] == f"bytes {8 * MIB - 3}-{8 * MIB + 9}/{len(data)}"
    finally:
        server.stop()


def test_s3_gone_mid_push_gives_503_unavailable_and_a_retry_succeeds(
    s3_client: httpx.Client, s3_gateway: S3Gateway, registry_name: str
) -> None:
    data = os.urandom(2 * CHUNK)
    digest = _sha256(data)
    location = start_upload(s3_client, f"{registry_name}/app")
    first = patch_chunk(s3_client, location, data[:CHUNK], f"0-{CHUNK - 1}")
    assert first.status_code == 202, first.text
    location = httpx.URL(first.headers["Location"]).raw_path.decode()
    second_range = f"{CHUNK}-{2 * CHUNK - 1}"
    s3_gateway.kill_gateway()
    try:
        refused = patch_chunk(s3_client, location, data[CHUNK:], second_range)
        assert refused.status_code == 503, refused.text
        assert error_of(refused)[0] == "UNAVAILABLE"
        assert int(refused.headers["Retry-After"]) > 0
    finally:
        s3_gateway.start_gateway()
    retried = patch_chunk(s3_client, location, data[CHUNK:], second_range)
    assert retried.status_code == 202, retried.text
    location = httpx.URL(retried.headers["Location"]).raw_path.decode()
    finished = _finish(s3_client, location, digest)
    assert finished.status_code == 201, finished.text
    fetched = s3_client.get(f"/v2/{registry_name}/app/blobs/{digest}", follow_redirects=True)
    assert _sha256(fetched.content) == digest


def test_throttling_is_retried_and_past_the_bound_answers_503_unavailable(
    s3_gateway: S3Gateway, s3_bucket: str, tmp_path: Path, registry_name: str
) -> None:
    proxy = ThrottlingProxy(s3_gateway.port)
    repo = f"{registry_name}/app"
    with _behind(
        proxy,
        s3_gateway,
        tmp_path / "data",
        s3_bucket,
        "throttled",
        OCIREGISTRY_S3_REDIRECT="false",
    ) as server:
        server.create_registry(registry_name)
        with httpx.Client(base_url=server.url, timeout=120.0, auth=server.admin) as client:
            # A few SlowDowns are absorbed by the retries: the client never sees them.
            absorbed = os.urandom(MIB + 1)
            proxy.throttle(2)
            pushed = push_blob(client, repo, absorbed)
            assert pushed.status_code == 201, pushed.text
            assert proxy.refused == 2
            got = client.get(f"/v2/{repo}/blobs/{_sha256(absorbed)}")
            assert got.status_code == 200 and got.content == absorbed

            # S3 throttling without end: a bounded number of attempts, then 503 UNAVAILABLE.
            refused_data = os.urandom(MIB + 2)
            digest = _sha256(refused_data)
            proxy.throttle(ThrottlingProxy.ALWAYS)
            before = proxy.refused
            try:
                refused = push_blob(client, repo, refused_data)
            finally:
                proxy.throttle(0)
            assert refused.status_code == 503, refused.text
            code, message = error_of(refused)
            assert code == "UNAVAILABLE" and "SlowDown" in message, message
            assert int(refused.headers["Retry-After"]) > 0
            attempts = proxy.refused - before
            # Retried (not given up at the first answer), and within a bound: the failed
            # write and at most the clean-up after it, MAX_ATTEMPTS tries each.
            assert MAX_ATTEMPTS <= attempts <= 4 * MAX_ATTEMPTS, attempts
            print(f"SlowDown answers before the client got 503: {attempts}")

            # Nothing of it is visible, and the same push succeeds once S3 takes requests.
            assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
            again = push_blob(client, repo, refused_data)
            assert again.status_code == 201, again.text
            assert client.get(f"/v2/{repo}/blobs/{digest}").content == refused_data


def test_manifest_and_blob_reads_send_nothing_to_s3_and_uploads_advertise_the_part_minimum(
    s3_gateway: S3Gateway, s3_bucket: str, tmp_path: Path, registry_name: str
) -> None:
    proxy = CountingProxy(s3_gateway.port)
    repo = f"{registry_name}/app"
    with _behind(proxy, s3_gateway, tmp_path / "data", s3_bucket, "cached") as server:
        server.create_registry(registry_name)
        with httpx.Client(base_url=server.url, timeout=120.0, auth=server.admin) as client:
            opened = client.post(f"/v2/{repo}/blobs/uploads/")
            assert opened.status_code == 202, opened.text
            assert opened.headers["OCI-Chunk-Min-Length"] == str(MIN_PART_SIZE)
            image = make_image(f"{registry_name}-cached")
            digest = push_image(client, repo, image, tag="1.0")
            accept = {"Accept": image.media_type}
            first = client.get(f"/v2/{repo}/manifests/{digest}", headers=accept)
            assert first.status_code == 200 and first.content == image.manifest
            sent, received = proxy.counts()
            for reference in (digest, "1.0", digest, "1.0"):
                again = client.get(f"/v2/{repo}/manifests/{reference}", headers=accept)
                assert again.status_code == 200 and again.content == image.manifest
                head = client.head(f"/v2/{repo}/manifests/{reference}", headers=accept)
                assert head.status_code == 200
            # Blob HEAD and GET (a 307 to a presigned URL) answer from the database's metadata.
            layer = f"/v2/{repo}/blobs/{_sha256(image.layers[0])}"
            head = client.head(layer)
            assert head.status_code == 200
            assert head.headers["Content-Length"] == str(len(image.layers[0]))
            assert client.get(layer).status_code == 307
            # Not one request to S3: manifest bytes came from the process's cache by digest,
            # blob sizes from the database, and a presigned URL is signed locally.
            assert proxy.counts() == (sent, received)


def test_conformance_suite_passes_on_s3(
    s3_gateway: S3Gateway, s3_bucket: str, tmp_path: Path
) -> None:
    """The project's whole conformance suite, strict, against a registry on S3."""
    server = _s3_server(s3_gateway, tmp_path / "data", s3_bucket, "conformance")
    try:
        server.create_registry(conformance.REGISTRY)
        result, report = conformance.run_suite(server, tmp_path / "junit.xml")
        counts = conformance.totals(report)
        summary = f"{counts}\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, f"conformance suite failed on S3: {summary}"
        assert counts["failures"] == 0 and counts["errors"] == 0, summary
        assert counts["tests"] >= conformance.MIN_TESTS and counts["skipped"] == 0, summary
    finally:
        server.stop()
