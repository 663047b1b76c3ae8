"""Faults in the three-instance cluster (tests/cluster.py), through nginx: an instance killed
with SIGKILL during a push storm, S3 stopped mid-push, PostgreSQL restarted mid-push, and a
chunked upload whose instance dies. No acknowledged write may be lost, no tag may point at a
missing manifest, and clients get OCI errors (503 `UNAVAILABLE`), never a plain 500 or a reset.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from support.cluster import Cluster
from support.oci import Image, error_of, make_image, push_blob, put_manifest, start_upload

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

MIB = 1024 * 1024
ATTEMPTS = 8  # a bounded retry per request, as clients do, waiting as `Retry-After` says
MAX_WAIT_SECONDS = 3


@dataclass
class Outcome:
    """What the clients saw: pushes acknowledged, and every failed answer."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest
    failures: list[str] = field(default_factory=list)  # "status body" or "exception"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _send(outcome: Outcome, request: Callable[[], httpx.Response]) -> httpx.Response | None:
    """`request()` until it succeeds (2xx), at most ATTEMPTS times; failures are recorded."""
    for _ in range(ATTEMPTS):
        try:
            answer = request()
        except httpx.HTTPError as error:
            outcome.failed(f"{type(error).__name__}: {error}")
            time.sleep(1)
            continue
        if answer.status_code < 300:
            return answer
        outcome.failed(f"{answer.status_code} {answer.text[:300]}")
        time.sleep(min(int(answer.headers.get("Retry-After", "1")), MAX_WAIT_SECONDS))
    return None


def _push(http: httpx.Client, outcome: Outcome, repo: str, tag: str, image: Image) -> None:
    for blob in image.blobs:
        if _send(outcome, lambda blob=blob: push_blob(http, repo, blob)) is None:
            return
    put = _send(outcome, lambda: put_manifest(http, repo, tag, image.manifest))
    if put is not None and put.status_code == 201:
        with outcome.lock:
            outcome.acknowledged[tag] = put.headers["Docker-Content-Digest"]


def _storm(
    cluster: Cluster,
    repo: str,
    count: int,
    during: Callable[[], object],
    after_acks: int = 5,
) -> Outcome:
    """Push `count` small images concurrently through nginx; call `during()` once
    `after_acks` pushes were acknowledged, while the others are in flight."""
    outcome = Outcome()
    acked = threading.Event()

    def one(n: int) -> None:
        with cluster.client() as http:
            _push(http, outcome, repo, f"t{n}", make_image(f"{repo}-{n}-{os.urandom(4).hex()}"))
        if len(outcome.acknowledged) >= after_acks:
            acked.set()

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(one, n) for n in range(count)]
        acked.wait(timeout=120)
        during()
        for future in futures:
            future.result()
    return outcome


def _assert_all_readable(cluster: Cluster, repo: str, outcome: Outcome) -> None:
    """Every acknowledged push reads back, and every tag listed names a manifest there is."""
    with cluster.client() as http:
        for tag, digest in outcome.acknowledged.items():
            got = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": "*/*"})
            assert got.status_code == 200, f"acknowledged {tag} lost: {got.text}"
            assert got.headers["Docker-Content-Digest"] == digest
            for blob in got.json()["layers"] + [got.json()["config"]]:
                head = http.head(f"/v2/{repo}/blobs/{blob['digest']}")
                assert head.status_code in (200, 307), f"{tag}: blob {blob['digest']} missing"
        listed = http.get(f"/v2/{repo}/tags/list")
        assert listed.status_code == 200, listed.text
        for tag in listed.json()["tags"] or []:
            got = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": "*/*"})
            assert got.status_code == 200, f"tag {tag} points at a missing manifest: {got.text}"


@pytest.fixture
def healed(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, whole again after the test (killed instances started, S3 up)."""
    yield cluster
    cluster.gateway.start_gateway()
    cluster.ensure_all_running()


def test_a_push_storm_survives_an_instance_killed(healed: Cluster, registry_name: str) -> None:
    healed.create_registry(registry_name)
    repo = f"{registry_name}/storm"
    victim = healed.instances[1]
    outcome = _storm(healed, repo, 30, during=victim.kill)
    assert victim.process is not None and victim.process.poll() is not None
    assert len(outcome.acknowledged) >= 20, outcome.failures[-10:]
    _assert_all_readable(healed, repo, outcome)


def test_s3_stopped_mid_push_answers_503_and_retries_succeed(
    healed: Cluster, registry_name: str
) -> None:
    healed.create_registry(registry_name)
    repo = f"{registry_name}/s3down"
    image = make_image(f"{registry_name}-s3down")
    data = os.urandom(6 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with healed.client() as http:
        location = start_upload(http, repo)
        first = http.patch(location, content=data[: 5 * MIB],
                           headers={"Content-Range": f"0-{5 * MIB - 1}"})  # fmt: skip
        assert first.status_code == 202, first.text
        healed.gateway.kill_gateway()
        try:
            refused = [
                http.patch(location, content=data[5 * MIB :],
                           headers={"Content-Range": f"{5 * MIB}-{len(data) - 1}"}),
                push_blob(http, repo, image.config),
            ]  # fmt: skip
            for answer in refused:
                assert answer.status_code == 503, answer.text
                assert error_of(answer)[0] == "UNAVAILABLE"
                assert int(answer.headers["Retry-After"]) > 0
            # Nothing half-visible: the refused blob is unknown, the upload still at 5 MiB.
            assert http.head(f"/v2/{repo}/blobs/{digest_of(image.config)}").status_code == 404
            progress = http.get(location)
            assert progress.headers.get("Range") == f"0-{5 * MIB - 1}", progress.text
        finally:
            healed.gateway.start_gateway()
        retried = http.patch(location, content=data[5 * MIB :],
                             headers={"Content-Range": f"{5 * MIB}-{len(data) - 1}"})  # fmt: skip
        assert retried.status_code == 202, retried.text
        done = http.put(location, params={"digest": digest})
        assert done.status_code == 201, done.text
        got = http.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]
        outcome = Outcome()
        _push(http, outcome, repo, "after", image)
        assert outcome.acknowledged, outcome.failures
    _assert_all_readable(healed, repo, outcome)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_postgres_restarted_mid_push_loses_nothing_and_errors_cleanly(
    healed: Cluster, registry_name: str
) -> None:
    healed.create_registry(registry_name)
    repo = f"{registry_name}/pgdown"
    outcome = _storm(healed, repo, 24, during=healed.postgres.restart)
    for failure in outcome.failures:  # every refusal is an OCI error, never a 500 or a reset
        status, _, body = failure.partition(" ")
        assert status.isdigit() and status != "500", failure
        assert '"errors"' in body and '"code"' in body, failure
    assert len(outcome.acknowledged) == 24, outcome.failures[-10:]
    _assert_all_readable(healed, repo, outcome)
    # Every instance recovered: each answers a database read directly.
    for instance in healed.instances:
        with healed.client(instance.url) as http:
            assert http.get(f"/v2/{repo}/tags/list").status_code == 200


def test_a_chunked_upload_continues_after_its_instance_dies(
    healed: Cluster, registry_name: str
) -> None:
    healed.create_registry(registry_name)
    repo = f"{registry_name}/orphan"
    data = os.urandom(11 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first, second = healed.instances[0], healed.instances[2]
    with healed.client(first.url) as http:
        location = start_upload(http, repo)
        answer = http.patch(location, content=data[: 5 * MIB],
                            headers={"Content-Range": f"0-{5 * MIB - 1}"})  # fmt: skip
        assert answer.status_code == 202, answer.text
    first.kill()
    with healed.client(second.url) as http:
        answer = http.patch(location, content=data[5 * MIB :],
                            headers={"Content-Range": f"{5 * MIB}-{len(data) - 1}"})  # fmt: skip
        assert answer.status_code == 202, answer.text
    with healed.client() as http:  # and finishes through nginx, on whichever is alive
        done = http.put(location, params={"digest": digest})
        assert done.status_code == 201, done.text
        got = http.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]
