"""The measurements: each row of the report, measured on both servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import re
import secrets
import statistics
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import aiohttp
import httpx

from .content import (
    SeedData,
    curl_base,
    curl_request,
    curl_upload,
    image_config,
    image_manifest,
    upload_in_chunks,
)
from .harness import (
    APP_REPO,
    FORM_POST,
    HTTP_TIMEOUT,
    MANIFEST_ACCEPT,
    MB,
    MIB,
    OCI_MANIFEST,
    OCTET_STREAM,
    REGISTRY,
    SEED_TAG,
    TOKEN_ISSUER,
    BenchError,
    Details,
    OurServer,
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

T = TypeVar("T")

# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class Metric:
    """One row of the report."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    target: float
    values: dict[str, float] = field(default_factory=dict)
    details: dict[str, Details] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Always ">1 means ours is better": ours/theirs for rates, theirs/ours for seconds."""
        ours, theirs = self.values.get("ours"), self.values.get("theirs")
        if not ours or not theirs:
            return None
        return ours / theirs if self.higher_is_better else theirs / ours

    def cpu_cost(self, label: str) -> float | None:
        """The server CPU one unit of this row's work took: per request, per push, or per
        transfer (the median over the runs)."""
        details = self.details.get(label, {})
        for key in ("server_cpu_ms_per_request", "server_cpu_ms_per_push", "server_cpu_seconds"):
            if key in details:
                return float(details[key])  # type: ignore[arg-type]
        runs = details.get("runs")
        if isinstance(runs, list) and runs and isinstance(runs[0], dict):
            return statistics.median(float(run["server_cpu_seconds"]) for run in runs)
        return None

    @property
    def cpu_ratio(self) -> float | None:
        """Their server CPU over ours for the same work: > 1 means ours needs less CPU.

        Unlike the rates this hardly moves when other processes compete for the CPUs.
        """
        ours, theirs = self.cpu_cost("ours"), self.cpu_cost("theirs")
        if not ours or not theirs:
            return None
        return theirs / ours


@dataclass
class Bench:
    """The servers under test and what they share."""

    servers: list[Server]
    settings: Settings
    seed: SeedData
    workdir: Path

    def ordered(self, turn: int) -> list[Server]:
        """Alternate which server goes first, so neither always inherits a warm or busy box."""
        return self.servers if turn % 2 == 0 else list(reversed(self.servers))

    def measure(self, metric: Metric, turn: int, run: Callable[[Server, Details], float]) -> None:
        """Run one measurement on each server; `run` adds what else it learns to the details."""
        for server in self.ordered(turn):
            log(f"{metric.title}: {server.label}")
            value = run(server, metric.details.setdefault(server.label, {}))
            metric.values[server.label] = value
            log(f"  {server.label}: {value:,.2f} {metric.unit}")


@contextlib.contextmanager
def server_cpu(server: Server, details: Details, per: str = "", count: float = 0) -> Iterator[None]:
    """Record the CPU the server spent in the block, and per request or push when given.

    CPU per request barely depends on what else runs on the machine, unlike the rates, so it
    is the figure to look at when the box was busy.
    """
    before = server.cpu_seconds()
    yield
    spent = server.cpu_seconds() - before
    details["server_cpu_seconds"] = round(spent, 3)
    if per and count:
        details[f"server_cpu_ms_per_{per}"] = round(spent * 1000 / count, 3)


def pull_headers(bench: Bench, server: Server) -> dict[str, str]:
    """Authorization for the read tests: the user's pull token; with `--pull-auth anonymous`,
    what an anonymous docker pull sends: nothing where the server lets it read (ours, the
    registry being public), else an anonymous token from the realm (Distribution, whose token
    auth reads nothing without a token)."""
    if bench.settings.pull_auth == "token":
        return auth_headers(server, [APP_REPO], "pull")
    manifest = f"{server.url}/v2/{APP_REPO}/manifests/{SEED_TAG}"
    if httpx.head(manifest, headers={"Accept": MANIFEST_ACCEPT}, timeout=10.0).status_code == 200:
        return {}
    return auth_headers(server, [APP_REPO], "pull", anonymous=True)


def blob_download(bench: Bench, server: Server, details: Details) -> float:
    """One stream of the big blob into /dev/null with curl; median MB/s over the runs.

    The seed check already read the blob once through each server (the warm-up), so both
    serve it from the page cache.
    """
    url = f"{server.url}/v2/{APP_REPO}/blobs/{bench.seed.big_digest}"
    argv = [*curl_base(pull_headers(bench, server)), "-o", "/dev/null", url]
    speeds = []
    with server_cpu(server, details):
        for _ in range(bench.settings.download_runs):
            status, seconds, _, size = curl_request(argv)
            if status != 200 or size != bench.settings.blob_mib * MIB:
                raise BenchError(f"{server.label}: blob GET answered {status} with {size} bytes")
            speeds.append(size / seconds / MB)
    details["runs"] = [round(speed, 1) for speed in speeds]
    return statistics.median(speeds)


def parallel_download(bench: Bench, server: Server, details: Details) -> float:
    """`download_streams` curl processes read the big blob at once; total MB/s over the wall
    time of all of them, the median of `repetitions` rounds."""
    url = f"{server.url}/v2/{APP_REPO}/blobs/{bench.seed.big_digest}"
    argv = [*curl_base(pull_headers(bench, server)), "-o", "/dev/null", "--write-out"]
    argv += ["%{http_code} %{size_download}\n", url]
    streams = bench.settings.download_streams
    speeds = []
    with server_cpu(server, details):
        for _ in range(bench.settings.repetitions):
            started = time.perf_counter()
            procs = [
                subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(streams)
            ]
            outputs = [proc.communicate()[0].split() for proc in procs]
            seconds = time.perf_counter() - started
            expected = ["200", str(bench.settings.blob_mib * MIB)]
            if any(output != expected for output in outputs):
                raise BenchError(f"{server.label}: parallel blob GETs answered {outputs}")
            speeds.append(streams * bench.settings.blob_mib * MIB / seconds / MB)
    details["runs"] = [round(speed, 1) for speed in speeds]
    return statistics.median(speeds)


def token_headers(server: Server) -> dict[str, str]:
    """Basic credentials, as docker sends them to the realm for every pull after a login."""
    assert server.credentials is not None
    return {
        "Authorization": "Basic " + base64.b64encode(":".join(server.credentials).encode()).decode()
    }


@contextlib.contextmanager
def fresh_blob(bench: Bench, server: Server, run: int) -> Iterator[tuple[Path, str]]:
    """New random content for each run and each server, so nothing can be deduplicated."""
    path = bench.workdir / f"upload-{server.label}-{run}"
    digest = write_random_file(path, bench.settings.blob_mib * MIB)
    os.sync()  # start every run with no dirty pages from the previous one waiting
    try:
        yield path, digest
    finally:
        path.unlink(missing_ok=True)


def check_blob(server: Server, digest: str, size: int) -> None:
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        client.headers.update(auth_headers(server, [APP_REPO]))
        # Distribution on S3 answers HEAD with a 307 to a presigned HEAD too.
        head = client.head(f"/v2/{APP_REPO}/blobs/{digest}", follow_redirects=True)
        response = expect(head, 200, "HEAD new blob")
        if int(response.headers.get("content-length", -1)) != size:
            raise BenchError(f"{server.label}: the uploaded blob has the wrong size")


def monolithic_upload(bench: Bench, server: Server, run: int) -> float:
    size = bench.settings.blob_mib * MIB
    with fresh_blob(bench, server, run) as (path, digest):
        seconds = curl_upload(server, path, digest, bench.settings.upload_form)
    check_blob(server, digest, size)
    return size / seconds / MB


def chunked_upload(bench: Bench, server: Server, run: int) -> float:
    """POST, PATCH 8 MiB chunks with Content-Range, PUT ?digest=: what docker push does, read
    from the file chunk by chunk over one kept-alive httpx connection."""
    size = bench.settings.blob_mib * MIB
    chunk = bench.settings.chunk_mib * MIB
    with (
        fresh_blob(bench, server, run) as (path, digest),
        path.open("rb") as source,
        httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client,
    ):
        client.headers.update(auth_headers(server, [APP_REPO]))
        started = time.perf_counter()
        upload_in_chunks(client, APP_REPO, iter(partial(source.read, chunk), b""), digest)
        seconds = time.perf_counter() - started
    check_blob(server, digest, size)
    return size / seconds / MB


def median_of_runs(
    bench: Bench, metric: Metric, measure: Callable[[Bench, Server, int], float]
) -> None:
    """Interleave the servers run by run and keep each one's median."""
    runs: dict[str, list[Details]] = {server.label: [] for server in bench.servers}
    for run in range(bench.settings.transfer_runs):
        for server in bench.ordered(run):
            log(f"{metric.title}: {server.label}, run {run + 1}/{bench.settings.transfer_runs}")
            details: Details = {}
            with server_cpu(server, details):
                speed = measure(bench, server, run)
            runs[server.label].append({metric.unit: round(speed, 1), **details})
            log(f"  {server.label}: {speed:,.1f} {metric.unit}")
    for label, results in runs.items():
        metric.values[label] = statistics.median(float(result[metric.unit]) for result in results)
        metric.details[label] = {"runs": results}


# -- request rates ---------------------------------------------------------------------------


def parse_wrk(output: str) -> tuple[float, int, Details]:
    """Requests/s, the number of requests, and latency percentiles from `wrk --latency`."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise BenchError(f"cannot read wrk output:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if bad or errors:
        raise BenchError(f"wrk saw failed requests:\n{output}")
    latency = {
        f"p{pct}_ms": to_ms(value, unit)
        for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    return float(rate.group(1)), int(total.group(1)), latency


def to_ms(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def parse_hey(output: str) -> tuple[float, int, Details]:
    """The same as parse_wrk, from hey's summary; any status but 200 fails the run."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", output))
    if rate is None or not statuses:
        raise BenchError(f"cannot read hey output:\n{output}")
    if set(statuses) != {"200"} or "Error distribution" in output:
        raise BenchError(f"hey saw failed requests:\n{output}")
    latency = {
        f"p{pct}_ms": round(float(secs) * 1000, 3)
        for pct, secs in re.findall(r"^\s+(50|99)% in ([\d.]+) secs", output, re.M)
    }
    return float(rate.group(1)), int(statuses["200"]), latency


def load_test(
    bench: Bench,
    path: str,
    method: str,
    server: Server,
    details: Details,
    *,
    headers: dict[str, str] | None = None,
) -> float:
    """Requests per second at 32 connections: wrk for GET, hey for HEAD (see ensure_tools);
    the median of `repetitions` runs, with `headers` instead of the pull token when given.

    A short warm-up run first lets both servers fill caches and start their workers' code paths.
    """
    settings = bench.settings
    url = f"{server.url}{path}"
    if headers is None:
        headers = {"Accept": MANIFEST_ACCEPT, **pull_headers(bench, server)}
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    if method == "HEAD":
        base = ["hey", "-m", "HEAD", "-c", str(settings.load_connections), *header_args]
        warmup = [*base, "-z", f"{settings.warmup_seconds}s", url]
        measured, parse = [*base, "-z", f"{settings.load_seconds}s", url], parse_hey
    else:
        base = ["wrk", f"-t{settings.load_threads}", f"-c{settings.load_connections}"]
        base += ["--timeout", "30s"]  # wrk counts an answer after 2 s as an error
        warmup = [*base, *header_args, f"-d{settings.warmup_seconds}s", url]
        measured = [*base, *header_args, "--latency", f"-d{settings.load_seconds}s", url]
        parse = parse_wrk
    run_tool(warmup)
    runs: list[Details] = []
    for _ in range(settings.repetitions):
        before = server.cpu_seconds()
        rate, requests, latency = parse(run_tool(measured))
        spent = server.cpu_seconds() - before
        runs.append(
            {
                "rate": rate,
                **latency,
                "requests": requests,
                "server_cpu_seconds": round(spent, 3),
                "server_cpu_ms_per_request": round(spent * 1000 / requests, 3),
            }
        )
    middle = sorted(runs, key=lambda run: float(run["rate"]))[len(runs) // 2]  # type: ignore[arg-type]
    details.update(middle, repetitions=[run["rate"] for run in runs])
    return float(middle["rate"])  # type: ignore[arg-type]


# -- small pushes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SmallPush:
    repo: str
    tag: str
    layer: bytes
    config: bytes
    manifest: bytes


def make_pushes(settings: Settings, label: str) -> list[SmallPush]:
    """Fresh random layers (1–4 KiB) and distinct configs, made before the clock starts."""
    pushes = []
    for index in range(settings.pushes):
        layer = os.urandom(random.randint(1024, 4096))
        config = image_config([layer], f"{label}-{index}-{secrets.token_hex(8)}")
        repo = f"{REGISTRY}/push{index % settings.push_concurrency}"
        manifest = image_manifest(config, [layer])
        pushes.append(SmallPush(repo, f"t{index:04d}", layer, config, manifest))
    return pushes


async def push_one(session: aiohttp.ClientSession, push: SmallPush, form: str) -> None:
    for blob in (push.layer, push.config):
        digest = sha256_digest(blob)
        start = f"/v2/{push.repo}/blobs/uploads/"
        headers = {"Content-Type": OCTET_STREAM}
        if form == FORM_POST:
            async with session.post(
                start, params={"digest": digest}, data=blob, headers=headers
            ) as response:
                await answered(response, 201, "POST ?digest=")
        else:
            async with session.post(start) as response:
                await answered(response, 202, "POST upload")
                target = with_query(response.headers["location"], digest=digest)
            async with session.put(target, data=blob, headers=headers) as response:
                await answered(response, 201, "PUT ?digest=")
    async with session.put(
        f"/v2/{push.repo}/manifests/{push.tag}",
        data=push.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    ) as response:
        await answered(response, 201, "PUT manifest")


async def answered(response: aiohttp.ClientResponse, status: int, what: str) -> None:
    """Read the answer whole (the connection is kept for the next request) and check it."""
    body = await response.read()
    if response.status != status:
        text = body[:500].decode(errors="replace")
        raise BenchError(f"{what}: expected {status}, got {response.status} {text}")


@contextlib.asynccontextmanager
async def connection(
    server: Server, headers: dict[str, str]
) -> AsyncIterator[aiohttp.ClientSession]:
    """A worker's one kept-alive connection to `server`, made (GET /v2/) before any clock
    starts."""
    async with aiohttp.ClientSession(
        base_url=server.url,
        headers=headers,
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=300.0, connect=10.0),
    ) as session:
        async with session.get("/v2/") as response:
            await answered(response, 200, "GET /v2/")
        yield session


async def run_workers(
    server: Server,
    headers: dict[str, str],
    items: Iterable[T],
    concurrency: int,
    handle: Callable[[aiohttp.ClientSession, T], Awaitable[None]],
    on_connected: Callable[[], object] = lambda: None,
) -> float:
    """Workers, each with one kept-alive connection, take items off a shared queue and
    `handle` them; the seconds they took.

    The clock starts once every worker has connected (`on_connected` runs then, to start
    other meters), so it times the work, not TCP handshakes.

    The workers are aiohttp clients, not httpx: the writes measured here are small, so the
    client's own cost per request counts, and it runs on the same two cores as the server.
    httpx took 6 ms of CPU per small push (five requests), more than either server (ours
    4.6 ms, Distribution v3 7.2 ms): its one process ran at 100 % of a core and set the pace
    for both, squeezing their ratio towards 1. aiohttp (C parser) takes 1.3 ms.
    """
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    connected = asyncio.Barrier(concurrency + 1)

    async def worker() -> None:
        async with connection(server, headers) as session:
            await connected.wait()
            while not queue.empty():
                await handle(session, queue.get_nowait())

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await connected.wait()
    on_connected()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


async def push_all(server: Server, pushes: list[SmallPush], concurrency: int, form: str) -> float:
    """Each push by one of `concurrency` workers with a connection each; the seconds taken."""
    headers = auth_headers(server, sorted({push.repo for push in pushes}))
    return await run_workers(server, headers, pushes, concurrency, partial(push_one, form=form))


def small_pushes(bench: Bench, metric: Metric) -> None:
    """`push_rounds` rounds of pushes, the servers alternating who goes first; each server's
    median seconds, and the median of the rounds' paired ratios (the two runs of a round are
    seconds apart, so a machine whose speed drifts over minutes moves both alike)."""
    settings = bench.settings
    runs: dict[str, list[Details]] = {server.label: [] for server in bench.servers}
    for turn in range(settings.push_rounds):
        for server in bench.ordered(turn):
            log(f"{metric.title}: {server.label}, round {turn + 1}/{settings.push_rounds}")
            details: Details = {}
            seconds = push_round(bench, server, details, f"{server.label}{turn}")
            runs[server.label].append({"seconds": round(seconds, 3), **details})
            log(f"  {server.label}: {seconds:,.2f} s")
    for label, results in runs.items():
        metric.values[label] = statistics.median(float(run["seconds"]) for run in results)
        metric.details[label] = {
            "runs": results,
            **{
                key: statistics.median(float(run[key]) for run in results)  # type: ignore[arg-type]
                for key in ("server_cpu_ms_per_push", "client_cpu_ms_per_push")
            },
        }
    if len(runs) == 2:
        paired = [
            float(theirs["seconds"]) / float(ours["seconds"])  # type: ignore[arg-type]
            for ours, theirs in zip(runs["ours"], runs["theirs"], strict=True)
        ]
        metric.details["ours"]["paired_ratios"] = [round(ratio, 3) for ratio in paired]
        metric.details["ours"]["paired_ratio_median"] = round(statistics.median(paired), 3)


def push_round(bench: Bench, server: Server, details: Details, label: str) -> float:
    """One round: `pushes` fresh images, `push_concurrency` at a time; the seconds taken."""
    settings = bench.settings
    pushes = make_pushes(settings, label)
    # The big uploads before leave dirty pages behind; flush them now, or whichever server
    # goes first pays for the write-back in its fsyncs.
    os.sync()
    client_started = time.process_time()
    with server_cpu(server, details, per="push", count=len(pushes)):
        seconds = asyncio.run(
            push_all(server, pushes, settings.push_concurrency, settings.upload_form)
        )
    # The client's share of the two cores, to show it is not what sets the pace.
    client_ms = (time.process_time() - client_started) * 1000 / len(pushes)
    details["client_cpu_ms_per_push"] = round(client_ms, 3)
    return seconds


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_measurements(bench: Bench) -> list[Metric]:
    """Every row of the report, in order; each one measured on both servers before the next."""
    settings = bench.settings
    conns = settings.load_connections
    blob = f"{settings.blob_mib} MiB"
    manifest = f"/v2/{APP_REPO}/manifests/{SEED_TAG}"
    tags_list = f"/v2/{APP_REPO}/tags/list"
    tags = len(bench.seed.tags)
    metrics: list[Metric] = []

    by_digest = f"/v2/{APP_REPO}/manifests/{bench.seed.manifest_digest}"
    load_tests = [
        ("v2_base", f"GET /v2/, {conns} conns (wrk)", "/v2/", "GET"),
        ("manifest_get", f"manifest GET by tag, {conns} conns (wrk)", manifest, "GET"),
        ("manifest_head", f"manifest HEAD by tag, {conns} conns (hey)", manifest, "HEAD"),
        (
            "manifest_head_digest",
            f"manifest HEAD by digest, {conns} conns (hey)",
            by_digest,
            "HEAD",
        ),
        ("tags_list", f"GET tags/list, {tags} tags, {conns} conns (wrk)", tags_list, "GET"),
    ]
    for turn, (key, title, path, method) in enumerate(load_tests):
        metric = Metric(key, title, "req/s", higher_is_better=True, target=1.5)
        bench.measure(metric, turn, partial(load_test, bench, path, method))
        metrics.append(metric)

    # Distribution has no token endpoint of its own (ours is its realm): ours alone.
    ours = [server for server in bench.servers if isinstance(server, OurServer)]
    if ours:
        query = urllib.parse.urlencode(
            {"service": TOKEN_ISSUER, "scope": f"repository:{APP_REPO}:pull"}
        )
        title = f"GET /auth/token (Basic, pull scope), {conns} conns (wrk), ours only"
        token = Metric("token", title, "req/s", higher_is_better=True, target=1.5)
        token_bench = Bench(ours, settings, bench.seed, bench.workdir)
        token_bench.measure(
            token,
            0,
            lambda server, details: load_test(
                bench, f"/auth/token?{query}", "GET", server, details, headers=token_headers(server)
            ),
        )
        metrics.append(token)

    download = Metric("blob_get", f"blob GET {blob}, 1 stream (curl)", "MB/s", True, 0.5)
    bench.measure(download, 1, partial(blob_download, bench))
    metrics.append(download)

    streams = settings.download_streams
    title = f"blob GET {blob}, {streams} streams at once (curl)"
    parallel = Metric("blob_get_parallel", title, "MB/s", True, 1.0)
    bench.measure(parallel, 0, partial(parallel_download, bench))
    metrics.append(parallel)

    mono = Metric("upload_monolithic", f"monolithic upload {blob} (curl)", "MB/s", True, 1.0)
    median_of_runs(bench, mono, monolithic_upload)
    metrics.append(mono)

    title = f"chunked upload {blob}, {settings.chunk_mib} MiB PATCHes (httpx)"
    chunked = Metric("upload_chunked", title, "MB/s", True, 1.0)
    median_of_runs(bench, chunked, chunked_upload)
    metrics.append(chunked)

    title = f"{settings.pushes} small image pushes, concurrency {settings.push_concurrency}"
    pushes = Metric("small_pushes", title, "seconds", higher_is_better=False, target=1.0)
    small_pushes(bench, pushes)
    metrics.append(pushes)
    return metrics
