"""The two servers side by side: settings, constants, tools, and the process harness of our
server and CNCF Distribution (with how to talk to them: challenges, tokens)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.metadata
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parents[1]
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
    push_rounds: int
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
            push_rounds=args.push_rounds or (1 if quick else 7),
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


# Indexes into the fields of /proc/PID/stat that follow the command name (`proc(5)` numbers them
# from 1 with the pid and the command first: these are its fields 5, 10, 14 to 17).
STAT_PPID = 1
STAT_PGRP = 2
STAT_MINFLT = 7
STAT_CPU = slice(11, 15)  # utime stime cutime cstime, in clock ticks


def process_stats() -> Iterator[tuple[int, list[str]]]:
    """Each running process's pid and the fields of its /proc/PID/stat after the command name
    (which may hold spaces), skipping processes that end while they are read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        yield int(entry), text.rpartition(")")[2].split()


def group_stats(leader: int) -> Iterator[tuple[int, list[str]]]:
    """`process_stats` of the processes of `leader`'s process group: a server started with
    `start_new_session` and every worker it forks."""
    for pid, fields in process_stats():
        if int(fields[STAT_PGRP]) == leader:
            yield pid, fields


def group_pids(leader: int) -> list[int]:
    """Every process of `leader`'s process group (a supervisor and its workers), in pid order."""
    return sorted(pid for pid, _ in group_stats(leader))


def cpu_ticks(fields: list[str]) -> int:
    """User and system CPU of a process and of its children that it waited for."""
    return sum(int(value) for value in fields[STAT_CPU])


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
        ticks = sum(cpu_ticks(fields) for _, fields in group_stats(self.process.pid))
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
