"""Three `ociregistry serve` instances on one PostgreSQL and one S3 bucket, behind a real nginx
(Debian's) with the shipped deploy/nginx-ociregistry.conf, for the cluster tests.

The nginx configuration is the documented example itself: only its upstream `server` lines and
its `listen` port are replaced (by the instances' free ports and a free port on 127.0.0.1), and
`shipped_directives` lets a test check that nothing else differs. nginx logs which instance
answered each request (`$upstream_addr`), so tests can tell where requests landed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support.pgcluster import URL_ENV, PostgresCluster
from support.s3gateway import S3Gateway
from support.server import RunningServer, free_port

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx-ociregistry.conf"
INSTANCES = 3
_UPSTREAM_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+;.*$", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen \d+;", re.MULTILINE)

_MAIN = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$remote_addr "$request" $status $upstream_addr';
    access_log {root}/access.log upstream;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/ociregistry.conf;
}}
"""


def directives(text: str) -> list[str]:
    """The directives of an nginx configuration, one per entry, without comments."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def render(upstream_ports: list[int], listen_port: int) -> str:
    """The shipped example with our instances' ports and a listen address on loopback."""
    text = SHIPPED.read_text()
    servers = "\n".join(f"    server 127.0.0.1:{port};" for port in upstream_ports)
    text = _UPSTREAM_SERVER.sub("", text)
    text = text.replace("upstream ociregistry {\n", f"upstream ociregistry {{\n{servers}\n", 1)
    return _LISTEN.sub(rf"\1listen 127.0.0.1:{listen_port};", text)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


class Nginx:
    """Debian's nginx as a child process, in a folder of its own."""

    def __init__(self, root: Path, upstream_ports: list[int]) -> None:
        self.root = root
        self.port = free_port()
        self.upstream_ports = upstream_ports
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = nginx_binary()
        assert binary is not None
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "tmp", 0o777)  # nginx's workers run as an unprivileged user
        (self.root / "ociregistry.conf").write_text(render(self.upstream_ports, self.port))
        (self.root / "nginx.conf").write_text(_MAIN.format(root=self.root))
        self.process = subprocess.Popen(
            [binary, "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, (self.root / "stderr.log").read_text()
            try:
                httpx.get(f"{self.url}/v2/", timeout=1.0)
                return self
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def upstreams(self) -> list[str]:
        """For each request so far, in order: `METHOD path status instance-address`."""
        log = self.root / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        found = []
        for line in lines:
            match = re.match(r'\S+ "(\S+) (\S+) [^"]*" (\d+) (.*)$', line)
            if match:
                found.append(" ".join(match.groups()))
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Cluster:
    """The whole set-up; `url`, `address` and `admin` are those of nginx, as clients see it."""

    def __init__(
        self, root: Path, postgres: PostgresCluster, gateway: S3Gateway, *, workers: int = 1
    ) -> None:
        self.root = root
        self.postgres = postgres
        self.gateway = gateway
        bucket = gateway.create_bucket(f"cluster-{os.getpid()}-{int(time.time())}")
        shared = {
            URL_ENV: postgres.create_database(f"cluster{os.getpid()}"),
            "OCIREGISTRY_STORAGE": f"s3://{bucket}/registry",
            **gateway.environment(),
        }
        self.instances = [
            RunningServer(root / f"instance-{n}" / "data", workers=workers, env=shared)
            for n in range(INSTANCES)
        ]
        self.nginx = Nginx(root / "nginx", [instance.port for instance in self.instances])

    def start(self) -> Cluster:
        for instance in self.instances:  # the first creates the schema, key and admin
            instance.start()
        self.nginx.start()
        return self

    def stop(self) -> None:
        self.nginx.stop()
        for instance in self.instances:
            instance.kill()

    @property
    def address(self) -> str:
        return self.nginx.address

    @property
    def url(self) -> str:
        return self.nginx.url

    # What the tests of the shared server use of a RunningServer, so the cluster can be that
    # server (OCIREGISTRY_TEST_SERVER=cluster) and those tests run through nginx unchanged.

    @property
    def port(self) -> int:
        return self.nginx.port

    @property
    def data_dir(self) -> Path:
        """The first instance's data folder: with PostgreSQL and S3 it holds no registry data,
        only what the command line needs to find the shared database and bucket."""
        return self.instances[0].data_dir

    @property
    def env(self) -> dict[str, str]:
        """The environment every instance runs with: the test run's, the shared database URL,
        the bucket and the S3 credentials."""
        return self.instances[0].env

    def cli(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`ociregistry <args>` on the shared database and bucket (any instance's would do)."""
        return self.instances[0].cli(*args, check=check, stdin=stdin)

    def log(self) -> str:
        """Every instance's log, one after the other: a request may have landed on any."""
        return "\n".join(instance.log() for instance in self.instances)

    @property
    def admin(self) -> tuple[str, str]:
        return self.instances[0].admin

    def client(self, base_url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=base_url or self.url, auth=self.admin, timeout=120.0)

    def create_registry(self, name: str, *, public: bool = True) -> None:
        self.instances[0].create_registry(name, public=public)

    def running(self) -> list[RunningServer]:
        return [i for i in self.instances if i.process is not None and i.process.poll() is None]

    def ensure_all_running(self) -> None:
        """Start again any instance a test killed, on its old port (nginx knows that one)."""
        for instance in self.instances:
            if instance.process is None or instance.process.poll() is not None:
                instance.start()


def require_nginx() -> None:
    if nginx_binary() is None:
        if os.environ.get("OCIREGISTRY_REQUIRE_CLIENTS") == "1":
            pytest.fail("nginx is not installed (apt-get install nginx-light)", pytrace=False)
        pytest.skip("nginx is not installed")
