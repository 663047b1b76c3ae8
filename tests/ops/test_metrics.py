"""`/metrics` on a real server with two workers, scraped and parsed as Prometheus does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ociregistry import __version__
from support.oci import digest_of, make_image, push_image
from support.server import RunningServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer, **kwargs: object) -> Samples:
    response = httpx.get(f"{server.url}/metrics", timeout=30.0, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (n, ls), value in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path / "data",
        workers=2,
        env={"OCIREGISTRY_LOG_FORMAT": "json", "OCIREGISTRY_GC_INTERVAL_SECONDS": "2"},
    ).start()
    yield running
    running.kill()


def test_n_requests_raise_the_counter_by_exactly_n_across_workers(metered: RunningServer) -> None:
    requests = 60
    before = scrape(metered)
    for _ in range(requests):  # a new connection each: the kernel spreads them over workers
        assert httpx.get(f"{metered.url}/v2/").status_code in (200, 401)
    after = scrape(metered)
    name = "ociregistry_http_requests_total"
    assert (
        total(after, name, method="GET", route="/v2/")
        - total(before, name, method="GET", route="/v2/")
        == requests
    )
    durations = "ociregistry_http_request_duration_seconds_count"
    assert (
        total(after, durations, method="GET", route="/v2/")
        - total(before, durations, method="GET", route="/v2/")
        == requests
    )
    assert total(after, "ociregistry_build_info", version=__version__) == 1
    assert total(after, "ociregistry_http_requests_in_flight") >= 1  # the scrape itself
    served_by = {line["pid"] for line in _lines(metered.log_path) if line.get("route") == "/v2/"}
    assert len(served_by) == 2, "both workers should have served some of the requests"


def _lines(path: Path) -> Iterator[dict[str, object]]:
    for text in path.read_text().splitlines():
        if text.startswith("{"):
            yield json.loads(text)


def test_a_scrape_counts_pushes_pulls_bytes_and_storage_but_names_nothing_private(
    metered: RunningServer,
) -> None:
    metered.create_registry("hushhush", public=False)
    image = make_image("confidential-label")
    before = scrape(metered)
    with httpx.Client(base_url=metered.url, auth=metered.admin, timeout=60) as http:
        push_image(http, "hushhush/secretapp", image, tag="sekrit-tag")
        pulled = http.get(
            "/v2/hushhush/secretapp/manifests/sekrit-tag",
            headers={"Accept": image.media_type},
        )
        assert pulled.status_code == 200
        layer = http.get(f"/v2/hushhush/secretapp/blobs/{digest_of(image.layers[0])}")
        assert layer.status_code == 200
        wrong = http.get("/v2/", auth=("admin", "not-the-password"))
        assert wrong.status_code == 401
    response = httpx.get(f"{metered.url}/metrics")
    for private in ("hushhush", "secretapp", "sekrit-tag", "confidential", "admin"):
        assert private not in response.text
    after = scrape(metered)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("ociregistry_manifest_pushes_total") == 1
    assert grew("ociregistry_manifest_pulls_total") == 1
    assert grew("ociregistry_blob_received_bytes_total") == sum(map(len, image.blobs))
    assert grew("ociregistry_blob_sent_bytes_total") == len(image.layers[0])
    assert grew("ociregistry_signin_failures_total") == 1
    assert (
        grew(
            "ociregistry_http_requests_total",
            method="PUT",
            route="/v2/{name}/manifests/{reference}",
            status="201",
        )
        == 1
    )
    assert grew("ociregistry_storage_operation_duration_seconds_count", driver="filesystem") > 0
    assert ("ociregistry_database_connections_in_use", frozenset()) in after
    assert ("ociregistry_uploads_in_progress", frozenset()) in after
    assert ("ociregistry_gc_duration_seconds_count", frozenset()) in after


def test_metrics_token_guards_the_scrape(tmp_path: Path) -> None:
    running = RunningServer(
        tmp_path / "data", workers=2, env={"OCIREGISTRY_METRICS_TOKEN": "scrape-secret-42"}
    ).start()
    try:
        assert httpx.get(f"{running.url}/metrics").status_code == 401
        wrong = httpx.get(f"{running.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        samples = scrape(running, headers={"Authorization": "Bearer scrape-secret-42"})
        assert total(samples, "ociregistry_build_info") == 1
    finally:
        running.kill()


def test_garbage_collection_runs_are_counted(metered: RunningServer) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        samples = scrape(metered)
        if total(samples, "ociregistry_gc_runs_total", result="done") >= 1:
            break
        time.sleep(0.5)
    assert total(samples, "ociregistry_gc_runs_total", result="done") >= 1
    assert total(samples, "ociregistry_gc_duration_seconds_count") >= 1
    assert ("ociregistry_gc_reclaimed_bytes_total", frozenset()) in samples


def test_a_killed_worker_leaves_no_live_gauge_behind_and_counters_keep_counting(
    metered: RunningServer,
) -> None:
    """A worker killed mid-upload had one request in flight; the supervisor starts another,
    which marks the dead one's live gauges dead, while every counter keeps its total."""
    metered.create_registry("killed")
    started, release = threading.Event(), threading.Event()

    def stalled_body() -> Iterator[bytes]:
        yield b"x" * 1024
        started.set()
        release.wait(60)  # the worker dies first
        yield b""

    def upload() -> None:
        with contextlib.suppress(Exception):  # the worker dies under it: any failure will do
            httpx.post(
                f"{metered.url}/v2/killed/app/blobs/uploads/",
                params={"digest": "sha256:" + "0" * 64},
                content=stalled_body(),
                headers={"Content-Length": str(1 << 20)},
                auth=metered.admin,
                timeout=90,
            )

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert started.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = scrape(metered)
        if total(busy, "ociregistry_uploads_in_progress") == 1:
            break
        time.sleep(0.1)
    assert total(busy, "ociregistry_uploads_in_progress") == 1
    requests_before = total(busy, "ociregistry_http_requests_total")
    assert metered.process is not None
    workers = [pid for pid in metered.pids() if b"ociregistry.ops.worker" in _cmdline(pid)]
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    after: Samples = {}
    while time.monotonic() < deadline:
        try:
            after = scrape(metered)
            if total(after, "ociregistry_http_requests_in_flight") == 1:  # the scrape alone
                break
        except (httpx.HTTPError, AssertionError):
            pass  # the new workers are starting
        time.sleep(0.2)
    assert total(after, "ociregistry_uploads_in_progress") == 0
    assert total(after, "ociregistry_http_requests_in_flight") == 1
    assert total(after, "ociregistry_http_requests_total") >= requests_before
    assert not set(workers) & set(metered.pids())
    release.set()
    uploader.join(30)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
