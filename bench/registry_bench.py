#!/usr/bin/env python3
"""Benchmark ociregistry against CNCF Distribution (Debian's `docker-registry`, or any other
Distribution binary given with `--reference`, such as a v3.0.0 built by hand) on this machine.

Both servers run side by side on 127.0.0.1 with their own temporary data folders, get the same
data, and face the same load generators in the same run, so the ratios do not depend on the
machine of the day. Run `python bench/registry_bench.py --help`; bench/README.md explains what
each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "latest.json"

MIB = 1024 * 1024
MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes), as curl and dd do
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
HTTP_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
NOISY_SHARE = 0.05  # other processes above 5% of the CPUs make the figures unreliable

REGISTRY = "bench"  # our server wants every repository as {registry}/{image}
BENCH_USER = "benchuser"  # an ordinary user who owns REGISTRY on our server, not an admin
APP_REPO = f"{REGISTRY}/app"
TOKEN_ISSUER = "ociregistry"  # the `iss` of our tokens, which Distribution must be told
SEED_TAG = "latest"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
# What docker, containerd and podman send when they pull by tag.
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
OCTET_STREAM = "application/octet-stream"

# The two ways to upload a blob whole. Distribution 2.8.2 answers 202 to `POST ?digest=` and
# ignores the body, so the start-up probe settles on POST + PUT whenever it takes part.
FORM_POST = "POST ?digest="
FORM_POST_PUT = "POST, then PUT ?digest= with the whole body"


Details = dict[str, object]  # what a measurement learns besides its headline figure


class BenchError(RuntimeError):
    """A server misbehaved or a tool failed: the run stops, since its figures would lie."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Every knob of a run; printed at the top and stored in the JSON, so runs can be compared."""

    blob_mib: int
    chunk_mib: int
    load_seconds: int
    warmup_seconds: int
    load_threads: int
    load_connections: int
    transfer_runs: int
    download_runs: int
    pushes: int
    push_concurrency: int
    extra_tags: int
    ours_workers: int
    theirs_cache: str
    pull_auth: str
    reference: str
    repetitions: int
    download_streams: int
    upload_form: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = args.quick
        return cls(
            blob_mib=args.blob_mib or (32 if quick else 256),
            chunk_mib=8,
            load_seconds=args.load_seconds or (3 if quick else 10),
            warmup_seconds=1 if quick else 2,
            load_threads=2,
            load_connections=32,
            transfer_runs=args.runs or (1 if quick else 3),
            download_runs=args.runs or (3 if quick else 7),  # ~0.1 s each: cheap, and noisy
            pushes=args.pushes or (40 if quick else 200),
            push_concurrency=8,
            extra_tags=args.tags - 1,
            ours_workers=args.workers,
            theirs_cache=args.theirs_cache,
            pull_auth=args.pull_auth,
            reference=args.reference,
            repetitions=args.repetitions or (1 if quick else 3),
            download_streams=8,
        )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run_tool(argv: list[str], *, timeout: float = 900.0) -> str:
    """Run a command-line tool and return its stdout; a failure stops the run."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def first_line(argv: list[str]) -> str:
    """A tool's version banner; wrk prints its own to stdout and exits 1, hence no check."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def git(*args: str) -> str:
    """Output of a git command in this checkout, empty if it fails (e.g. no commit yet)."""
    argv = ["git", "-C", str(REPO_ROOT), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def dpkg_version(package: str) -> str:
    try:
        return run_tool(["dpkg-query", "-W", "-f", "${Version}", package]).strip()
    except (BenchError, OSError):
        return "unknown"


def with_query(url: str, **params: str) -> str:
    """Add query parameters to an upload Location, which may already carry some (`_state=`)."""
    separator = "&" if "?" in url else "?"
    return url + separator + urllib.parse.urlencode(params, safe=":")


def write_random_file(path: Path, size: int) -> str:
    """Fill `path` with fresh random bytes and return their digest.

    The file is fsynced so that writing it back to disk does not compete with the server under
    test; it then sits in the page cache, where both servers' clients read it from.
    """
    hasher = hashlib.sha256()
    chunk = 8 * MIB
    with path.open("wb") as out:
        remaining = size
        while remaining:
            block = os.urandom(min(chunk, remaining))
            hasher.update(block)
            out.write(block)
            remaining -= len(block)
        out.flush()
        os.fsync(out.fileno())
    return "sha256:" + hasher.hexdigest()


def ensure_tools() -> None:
    """Install the reference server and the load generators from Debian when they are missing.

    wrk 4.1 cannot measure HEAD (it waits for a body that never comes, wg/wrk#198), so HEAD goes
    through `hey`, which Debian also packages.
    """
    wanted = {"docker-registry": "docker-registry", "wrk": "wrk", "hey": "hey", "curl": "curl"}
    missing = [package for tool, package in wanted.items() if shutil.which(tool) is None]
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"apt-get install {' '.join(missing)} failed: {done.stderr[-2000:]}")


# --------------------------------------------------------------------------------------------
# The two servers
# --------------------------------------------------------------------------------------------


class Server:
    """One registry process tree on 127.0.0.1, in its own session so Ctrl-C does not reach it
    before we stop it ourselves, and so that one signal to the group stops all its workers."""

    label = ""
    description = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / self.label
        self.data_dir = self.workdir / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.credentials: tuple[str, str] | None = None
        self.env = dict(os.environ)

    def command(self) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def prepare_namespace(self) -> None:
        """Whatever must exist before `bench/...` accepts pushes."""

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as server_log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=server_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self._wait_ready()
        self.prepare_namespace()

    def _wait_ready(self) -> None:
        """Ready once `/v2/` answers below 500 (401 counts: auth is up, so is the server)."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BenchError(f"{self.label} server exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code < 500:
                    return
            time.sleep(0.1)
        raise BenchError(f"{self.label} server did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left of it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray workers, or a hung leader
        self.process.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU of every process in the server's group, from /proc.

        Shows how much CPU each server burns for the same work, which the wall-clock figures
        hide when the load generator and the server share two cores.
        """
        if self.process is None:
            return 0.0
        ticks = 0
        for stat_path in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat_path.read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[2]) == self.process.pid:  # field 5 of stat: the process group
                ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""


class OurServer(Server):
    """`python -m ociregistry serve` from this checkout, run as the README says."""

    label = "ours"

    def __init__(self, workdir: Path, workers: int) -> None:
        super().__init__(workdir)
        self.workers = workers
        self.description = f"{workers} uvicorn workers, no access log"
        # Set, so the server does not print a generated admin password; never used here.
        self.env["OCIREGISTRY_ADMIN_PASSWORD"] = secrets.token_urlsafe(18)

    def command(self) -> list[str]:
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        options = ["--workers", str(self.workers), "--data-dir", str(self.data_dir)]
        return [sys.executable, "-m", "ociregistry", "serve", *listen, *options, "--no-access-log"]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )

    def prepare_namespace(self) -> None:
        """Create an ordinary user and a public registry `bench` that the user owns.

        The benchmark pushes as that user, through the token flow, as `docker login` would: an
        admin might skip permission checks that real pushes pay for.
        """
        password = secrets.token_urlsafe(18)
        added = self.cli("user", "add", BENCH_USER, "--password-stdin", stdin=password + "\n")
        if added.returncode != 0:
            raise BenchError(f"`ociregistry user add {BENCH_USER}` failed: {added.stderr}")
        self.credentials = (BENCH_USER, password)
        created = self.cli("registry", "create", REGISTRY, "--public", "--owner", BENCH_USER)
        if created.returncode != 0:
            raise BenchError(f"`ociregistry registry create {REGISTRY}` failed: {created.stderr}")

    def token_realm(self) -> tuple[str, str]:
        """The realm and service of our Bearer challenge, for Distribution's `auth.token`."""
        challenge = httpx.get(f"{self.url}/v2/", timeout=10.0)
        scheme, params = parse_challenge(challenge.headers.get("www-authenticate", ""))
        if challenge.status_code != 401 or scheme != "bearer" or "realm" not in params:
            raise BenchError(f"ours: /v2/ gave no Bearer challenge: {challenge.headers!r}")
        return urllib.parse.urljoin(self.url, params["realm"]), params.get("service", "")

    def signing_jwks(self) -> str:
        """`ociregistry signing-cert --jwks`: what Distribution 3 trusts (`auth.token.jwks`)."""
        done = self.cli("signing-cert", "--jwks")
        if done.returncode != 0 or '"keys"' not in done.stdout:
            raise BenchError(f"`ociregistry signing-cert --jwks` failed: {done.stderr}")
        return done.stdout

    def signing_certificates(self) -> str:
        """`ociregistry signing-cert`: what Distribution trusts to verify our tokens."""
        done = self.cli("signing-cert")
        if done.returncode != 0 or "BEGIN CERTIFICATE" not in done.stdout:
            raise BenchError(f"`ociregistry signing-cert` failed: {done.stderr}")
        return done.stdout

    def version(self) -> str:
        try:
            version = importlib.metadata.version("ociregistry")
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        where = git("rev-parse", "--short", "HEAD") or "no commit"
        if git("status", "--porcelain", "--", "src"):
            where += ", src modified"
        uvicorn = importlib.metadata.version("uvicorn")
        python = platform.python_version()
        return f"ociregistry {version} ({where}), uvicorn {uvicorn}, Python {python}"


class Distribution(Server):
    """CNCF Distribution (Debian's 2.8.2 by default, or the binary `--reference` names),
    configured like a plain production registry that uses our server as its token server (the
    Docker token authentication spec). 2.x trusts our keys through certificates
    (`rootcertbundle`); 3.x finds a token's `kid` in a JWK Set (`jwks`), so it gets both."""

    label = "theirs"

    def __init__(
        self, workdir: Path, cache: str, token_server: OurServer, binary: str = "docker-registry"
    ) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.cache = cache
        self.token_server = token_server
        self.config_path = self.workdir / "config.yml"
        self.bundle_path = self.workdir / "ociregistry-tokens.pem"
        self.jwks_path = self.workdir / "ociregistry-tokens.jwks"
        self.env["OTEL_TRACES_EXPORTER"] = "none"  # v3 otherwise tries to export traces
        self.description = (
            f"filesystem storage, storage.cache.blobdescriptor: {cache}, "
            "GOMAXPROCS = nproc, token auth against ours, no access log"
        )

    def command(self) -> list[str]:
        """Start once ours runs: the config names its realm, and trusts its signing keys."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bundle_path.write_text(self.token_server.signing_certificates())
        self.jwks_path.write_text(self.token_server.signing_jwks())
        self.config_path.write_text(self.config(*self.token_server.token_realm()))
        return [self.binary, "serve", str(self.config_path)]

    @property
    def is_v3(self) -> bool:
        return "/v3" in self.version() or " v3." in self.version()

    def prepare_namespace(self) -> None:
        """Nothing to create: our token server decides who may push `bench/...`, so the same
        user signs in at our realm for both servers."""
        self.credentials = self.token_server.credentials

    def config(self, realm: str, service: str) -> str:
        """Token auth from our realm; no redirects, no background upload purging, no storage
        health checks: nothing else but serving the API."""
        cache = "  cache:\n    blobdescriptor: inmemory\n" if self.cache == "inmemory" else ""
        return (
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.data_dir}\n"
            "  delete:\n    enabled: true\n"
            "  redirect:\n    disable: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"{cache}"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(16)}\n"
            "auth:\n  token:\n"
            f"    realm: {realm}\n    service: {service}\n    issuer: {TOKEN_ISSUER}\n"
            f"    rootcertbundle: {self.bundle_path}\n"
            + (f"    jwks: {self.jwks_path}\n" if self.is_v3 else "")
            + "health:\n  storagedriver:\n    enabled: false\n"
        )

    def version(self) -> str:
        return first_line([self.binary, "--version"])


# --------------------------------------------------------------------------------------------
# Talking to a registry
# --------------------------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def auth_headers(
    server: Server, repositories: list[str], actions: str = "pull,push", *, anonymous: bool = False
) -> dict[str, str]:
    """The Authorization header a client would send for `actions` on `repositories`.

    Both servers challenge (Distribution with our realm, ours with its own): do what docker
    does after `docker login`, Basic if asked, else fetch a bearer token with the server's
    credentials, or with none for an `anonymous` pull. One token serves a whole measurement.
    """
    challenge = httpx.get(f"{server.url}/v2/", timeout=10.0)
    if challenge.status_code != 401:
        return {}
    scheme, params = parse_challenge(challenge.headers.get("www-authenticate", ""))
    credentials = None if anonymous else server.credentials
    if scheme == "basic":
        if credentials is None:
            raise BenchError(f"{server.label} asks for Basic auth, with no credentials")
        token = base64.b64encode(":".join(credentials).encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if scheme != "bearer" or "realm" not in params:
        raise BenchError(f"{server.label}: unsupported challenge {challenge.headers!r}")
    query: list[tuple[str, str]] = [("service", params.get("service", ""))]
    query += [("scope", f"repository:{repo}:{actions}") for repo in repositories]
    realm = urllib.parse.urljoin(server.url, params["realm"])
    response = httpx.get(realm, params=query, auth=credentials, timeout=30.0)
    if response.status_code != 200:
        raise BenchError(f"{server.label}: token request answered {response.status_code}")
    body = response.json()
    return {"Authorization": f"Bearer {body.get('token') or body['access_token']}"}


def expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        raise BenchError(
            f"{what}: expected {status}, got {response.status_code} {response.text[:500]}"
        )
    return response


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
        with client.stream("GET", f"/v2/{APP_REPO}/blobs/{seed.big_digest}") as response:
            expect(response, 200, "GET big blob")
            for block in response.iter_bytes(MIB):
                hasher.update(block)
        if "sha256:" + hasher.hexdigest() != seed.big_digest:
            raise BenchError(f"{server.label}: the big blob came back different")


# --------------------------------------------------------------------------------------------
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
        response = expect(client.head(f"/v2/{APP_REPO}/blobs/{digest}"), 200, "HEAD new blob")
        if int(response.headers.get("content-length", -1)) != size:
            raise BenchError(f"{server.label}: the uploaded blob has the wrong size")


def monolithic_upload(bench: Bench, server: Server, run: int) -> float:
    size = bench.settings.blob_mib * MIB
    with fresh_blob(bench, server, run) as (path, digest):
        seconds = curl_upload(server, path, digest, bench.settings.upload_form)
    check_blob(server, digest, size)
    return size / seconds / MB


def chunked_upload(bench: Bench, server: Server, run: int) -> float:
    """POST, PATCH 8 MiB chunks with Content-Range, PUT ?digest=: what docker push does.

    Each PATCH needs the Location of the one before (Distribution signs the offset into it), so
    this is a loop over one kept-alive httpx connection, reading each chunk from the file.
    """
    size = bench.settings.blob_mib * MIB
    chunk = bench.settings.chunk_mib * MIB
    with (
        fresh_blob(bench, server, run) as (path, digest),
        path.open("rb") as source,
        httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client,
    ):
        client.headers.update(auth_headers(server, [APP_REPO]))
        started = time.perf_counter()
        response = expect(client.post(f"/v2/{APP_REPO}/blobs/uploads/"), 202, "POST upload")
        location = response.headers["location"]
        offset = 0
        while block := source.read(chunk):
            headers = {
                "Content-Type": OCTET_STREAM,
                "Content-Range": f"{offset}-{offset + len(block) - 1}",
            }
            response = expect(
                client.patch(location, content=block, headers=headers), 202, "PATCH chunk"
            )
            location = response.headers["location"]
            offset += len(block)
        expect(client.put(with_query(location, digest=digest)), 201, "PUT ?digest=")
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


async def push_one(client: httpx.AsyncClient, push: SmallPush, form: str) -> None:
    for blob in (push.layer, push.config):
        digest = sha256_digest(blob)
        start = f"/v2/{push.repo}/blobs/uploads/"
        headers = {"Content-Type": OCTET_STREAM}
        if form == FORM_POST:
            response = await client.post(
                start, params={"digest": digest}, content=blob, headers=headers
            )
            expect(response, 201, "POST ?digest=")
        else:
            response = expect(await client.post(start), 202, "POST upload")
            target = with_query(response.headers["location"], digest=digest)
            expect(await client.put(target, content=blob, headers=headers), 201, "PUT ?digest=")
    response = await client.put(
        f"/v2/{push.repo}/manifests/{push.tag}",
        content=push.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    expect(response, 201, "PUT manifest")


async def push_all(server: Server, pushes: list[SmallPush], concurrency: int, form: str) -> float:
    """Workers, each with one kept-alive connection, take pushes off a shared queue.

    The clock starts once every worker has connected, so it times pushes, not TCP handshakes.
    """
    queue: asyncio.Queue[SmallPush] = asyncio.Queue()
    for push in pushes:
        queue.put_nowait(push)
    headers = auth_headers(server, sorted({push.repo for push in pushes}))
    connected = asyncio.Barrier(concurrency + 1)

    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=HTTP_TIMEOUT
        ) as client:
            await client.get("/v2/")
            await connected.wait()
            while not queue.empty():
                await push_one(client, queue.get_nowait(), form)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await connected.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


def small_pushes(bench: Bench, server: Server, details: Details) -> float:
    settings = bench.settings
    pushes = make_pushes(settings, server.label)
    # The big uploads before leave dirty pages behind; flush them now, or whichever server
    # goes first pays for the write-back in its fsyncs.
    os.sync()
    with server_cpu(server, details, per="push", count=len(pushes)):
        return asyncio.run(
            push_all(server, pushes, settings.push_concurrency, settings.upload_form)
        )


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
    bench.measure(pushes, 0, partial(small_pushes, bench))
    metrics.append(pushes)
    return metrics


def machine_info() -> dict[str, object]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model,
        "memory_gib": round(memory_gib, 1),
        "kernel": platform.release(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def tool_versions(servers: list[Server]) -> dict[str, str]:
    versions = {server.label: server.version() for server in servers}
    wrk = first_line(["wrk", "-v"]).split(" [")[0]
    curl = " ".join(first_line(["curl", "--version"]).split()[:2])
    versions["tools"] = (
        f"{wrk} (GET), hey {dpkg_version('hey')} (HEAD), {curl}, httpx {httpx.__version__}"
    )
    return versions


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (steal included: capacity we lost)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(max_seconds: float, window: float = 10.0) -> None:
    """Wait, up to `max_seconds`, for a `window` in which the CPUs are almost idle.

    Called while both servers sit idle, so what it sees is other processes: on a shared
    machine, a test run in another session would otherwise end up in the figures.
    """
    deadline = time.monotonic() + max_seconds
    capacity = window * len(os.sched_getaffinity(0))
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        share = (machine_busy_seconds() - before) / capacity
        if share < NOISY_SHARE:
            return
        if time.monotonic() >= deadline:
            log(f"the machine is still {share:.0%} busy; measuring anyway")
            return
        log(f"the machine is {share:.0%} busy; waiting for it to calm down")


class CpuWatch:
    """How much CPU other processes took while we measured: the noise in the figures.

    Everything the machine spent, from /proc/stat, less what this script and its tools (wrk,
    hey, curl) and the two servers spent. The other engineers' test runs on a shared box show
    up here; CPU per request in the JSON is the figure that holds up when this is high.
    """

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        machine = machine_busy_seconds()
        mine = sum(os.times()[:4])  # this process and its reaped children (wrk, hey, curl)
        servers = sum(server.cpu_seconds() for server in self.servers)
        return time.monotonic(), machine, mine, servers

    def other_share(self) -> float:
        """Other processes' CPU as a share of the machine's capacity over the run."""
        end = self._sample()
        elapsed, machine, mine, servers = (b - a for a, b in zip(self.start, end, strict=True))
        other = max(0.0, machine - mine - servers)
        return other / (elapsed * len(os.sched_getaffinity(0)))


def print_header(
    info: dict[str, object], versions: dict[str, str], servers: list[Server], settings: Settings
) -> None:
    """What ran, where and how: printed before the measurements, flushed so it shows first."""
    print("Registry benchmark: ociregistry (ours) vs CNCF Distribution (theirs)")
    print(
        f"machine : nproc={info['nproc']}, {info['cpu']}, {info['memory_gib']} GiB RAM, "
        f"Linux {info['kernel']}, load average {info['load_average']} before measuring"
    )
    descriptions = {server.label: server.description for server in servers}
    for label, version in versions.items():
        print(f"{label:<8}: {version}")
        if label in descriptions:
            print(f"{'':<8}  {descriptions[label]}")
    print(
        f"load    : {settings.load_seconds} s per run after a {settings.warmup_seconds} s "
        f"warm-up, {settings.load_threads} threads, {settings.load_connections} connections, "
        f"median of {settings.repetitions} runs"
    )
    print(
        f"blobs   : {settings.blob_mib} MiB; median of {settings.download_runs} downloads and of "
        f"{settings.transfer_runs} uploads, each of fresh random content; "
        f"chunked uploads in {settings.chunk_mib} MiB PATCHes"
    )
    print(
        f"uploads : {settings.upload_form}, the form every server here completes; 1 MB = 10^6 bytes"
    )
    if settings.pull_auth == "token":
        reads = "pull token for reads"
    else:
        reads = "anonymous reads (theirs: with an anonymous pull token)"
    print(
        f"auth    : both: Bearer tokens from our /auth/token, signed in as {BENCH_USER}, "
        f"{reads}, push token for writes; theirs verifies them with "
        "`ociregistry signing-cert` (rootcertbundle) and, for v3, `--jwks` (jwks)"
    )
    print(
        f"pushes  : {settings.pushes} images (1–4 KiB layer, config, OCI manifest), "
        f"{settings.push_concurrency} workers with a connection each"
    )
    print(flush=True)


def print_table(metrics: list[Metric], other_share: float) -> None:
    print("ratio: ours/theirs for rates, theirs/ours for seconds: > 1 always means ours is better")
    print("cpu ratio: their server CPU / ours for the same work (> 1: ours needs less CPU)")
    header = (
        f"{'metric':<58} {'unit':>7} {'ours':>10} {'theirs':>10} {'ratio':>6} "
        f"{'target':>7} {'':<5} {'cpu ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for metric in metrics:
        ratio = metric.ratio
        verdict = ""
        if ratio is not None:
            verdict = "ok" if ratio >= metric.target else "below"
        print(
            f"{metric.title:<58} {metric.unit:>7} {fmt(metric.values.get('ours')):>10} "
            f"{fmt(metric.values.get('theirs')):>10} {fmt(ratio, 2):>6} "
            f"{'≥' + str(metric.target):>7} {verdict:<5} {fmt(metric.cpu_ratio, 2):>9}"
        )
    print()
    print(f"noise   : other processes used {other_share:.0%} of the CPUs during the run")
    if other_share > NOISY_SHARE:
        print("WARNING : the machine was busy; the figures are unreliable, run again when idle")


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def write_json(
    metrics: list[Metric],
    info: dict[str, object],
    versions: dict[str, str],
    servers: list[Server],
    settings: Settings,
    other_share: float,
) -> None:
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "other_processes_cpu_share": round(other_share, 3),
        "versions": versions,
        "servers": {server.label: server.description for server in servers},
        "settings": asdict(settings),
        "ratio_note": "ours/theirs for rates, theirs/ours for seconds; > 1 means ours is better",
        "metrics": [
            {
                "key": metric.key,
                "title": metric.title,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "ours": metric.values.get("ours"),
                "theirs": metric.values.get("theirs"),
                "ratio": metric.ratio,
                "target": metric.target,
                "cpu_ratio": metric.cpu_ratio,
                "details": metric.details,
            }
            for metric in metrics
        ],
    }
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {RESULTS_PATH}")


def choose_upload_form(servers: list[Server]) -> str:
    """Use single-request `POST ?digest=` only if every server under test completes it."""
    supported = {server.label: probe_upload_form(server) for server in servers}
    log(f"POST ?digest= completes an upload: {supported}")
    return FORM_POST if all(supported.values()) else FORM_POST_PUT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 32 MiB blobs, 3 s load, 40 pushes, fewer runs",
    )
    parser.add_argument(
        "--only",
        choices=["ours", "theirs"],
        help="measure one server alone (no ratios); with theirs, ours still runs, unmeasured, "
        "as its token server",
    )
    parser.add_argument(
        "--theirs-cache",
        choices=["inmemory", "none"],
        default="inmemory",
        help="Distribution's storage.cache.blobdescriptor (default: inmemory)",
    )
    parser.add_argument(
        "--pull-auth",
        choices=["token", "anonymous"],
        default="token",
        help="read tests on our server: with a pull token, as docker sends once /v2/ answers "
        "401 (default), or anonymous (the registry is public)",
    )
    parser.add_argument("--workers", type=int, default=2, help="our uvicorn workers (default 2)")
    parser.add_argument(
        "--reference",
        default="docker-registry",
        metavar="BINARY",
        help="the Distribution binary to compare with (default: Debian's docker-registry, "
        "2.8.2); e.g. a v3.0.0 built by hand, which verifies our tokens through our JWK Set",
    )
    parser.add_argument(
        "--repetitions", type=int, help="load and parallel-download runs per figure (median)"
    )
    parser.add_argument(
        "--tags", type=int, default=1000, help="tags in the repository tags/list reads (1000)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before measuring, wait up to this long for other processes to leave the CPUs idle",
    )
    parser.add_argument("--blob-mib", type=int, help="override the blob size")
    parser.add_argument("--load-seconds", type=int, help="override the wrk/hey duration")
    parser.add_argument("--runs", type=int, help="override the runs per download and upload")
    parser.add_argument("--pushes", type=int, help="override the number of small pushes")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (data dirs, server logs)"
    )
    return parser.parse_args(argv)


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so that the `finally` blocks stop the servers."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_termination()
    ensure_tools()
    settings = Settings.from_args(args)
    workdir = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    ours = OurServer(workdir, settings.ours_workers)
    servers: list[Server] = []
    if args.only != "theirs":
        servers.append(ours)
    if args.only != "ours":
        servers.append(
            Distribution(workdir, settings.theirs_cache, token_server=ours, binary=args.reference)
        )
    # Ours starts first, and also with `--only theirs`: it is Distribution's token server.
    running: list[Server] = [ours, *(server for server in servers if server is not ours)]
    try:
        for server in running:
            log(f"starting {server.label} on {server.url}")
            server.start()
        settings = Settings(**{**asdict(settings), "upload_form": choose_upload_form(servers)})
        seed = make_seed(workdir, settings)
        for server in servers:
            log(f"seeding {server.label}")
            seed_server(server, seed, settings.upload_form)
        if args.wait_idle:
            wait_until_idle(args.wait_idle)
        info, versions = machine_info(), tool_versions(servers)
        print_header(info, versions, servers, settings)
        watch = CpuWatch(servers)
        metrics = run_measurements(Bench(servers, settings, seed, workdir))
        other_share = watch.other_share()
        print_table(metrics, other_share)
        write_json(metrics, info, versions, servers, settings, other_share)
        return 0
    except KeyboardInterrupt:
        log("interrupted: stopping the servers")
        return 130
    except BenchError as error:
        log(f"failed: {error}")
        for server in running:
            log(f"{server.label} log ({server.log_path}):\n{server.log_tail()}")
        return 1
    finally:
        for server in running:
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
