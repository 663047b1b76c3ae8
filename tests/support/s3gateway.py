"""A real S3 server for the tests: a one-node Ceph cluster with its RADOS Gateway on loopback.

Test doubles (moto, s3rver) check no signatures and lack parts of the API the S3 driver relies on
(`UploadPartCopy`, abort by id, the 5 MiB part minimum), so they would hide real bugs. Debian's
Ceph is the one real S3 implementation installable here: one `ceph-mon`, one `ceph-osd`
(bluestore on a sparse file) and one `radosgw` (beast on 127.0.0.1), all reading one private
configuration file (`-c`), so nothing is written to /etc/ceph or /var/lib/ceph. Bootstrapping an
empty folder takes about 6 s; restarting a stopped cluster about 3 s (data kept).

    python tests/support/s3gateway.py start DIR     # prints the AWS_* variables to use it
    python tests/support/s3gateway.py stop DIR

The pytest fixture `s3_gateway` (tests/conftest.py) starts one per session, lazily, and stops
every daemon afterwards. Options that matter (measured): `paxos_propose_interval = 0.1` (bootstrap
17 s -> 6 s), `tcp_nodelay=1` on beast (45 ms -> 3 ms per kept-alive GET), bluestore on a sparse
file (memstore loses data on `kill -9`), no ceph-mgr (S3 does not need one).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

# Fixed test credentials, the same on every machine (the gateway's user is created with them).
ACCESS_KEY = "OCIREGISTRYTESTKEY01"
SECRET_KEY = "ociregistry-test-secret-key-0123456789abcdef"
REGION = "us-east-1"
USER_ID = "ociregistry"
GATEWAY_NAME = "client.rgw.test"
READY_TIMEOUT_SECONDS = 90.0
PACKAGES = ("ceph", "radosgw")  # Debian packages that provide the daemons

_CONFIG = """\
[global]
fsid = {fsid}
mon_host = v1:127.0.0.1:{mon_port}
mon_initial_members = a
ms_bind_msgr2 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_port_min = 6800
ms_bind_port_max = 7300
keyring = {root}/admin.keyring
run_dir = {root}/run
pid_file = {root}/run/$name.pid
admin_socket = {root}/run/$name.asok
log_file = {root}/log/$name.log
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
mon_data_avail_crit = 1
mon_data_avail_warn = 2
mon_warn_on_pool_no_redundancy = false

[mon]
mon_data = {root}/mon-$id
paxos_propose_interval = 0.1
mon_memory_target = 268435456

[osd]
osd_data = {root}/osd-$id
keyring = {root}/osd-$id/keyring
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = 10737418240
bluestore_cache_autotune = false
bluestore_cache_size = 67108864
osd_memory_target = 939524096
osd_op_num_shards = 2

[{gateway}]
keyring = {root}/rgw.keyring
rgw_data = {root}/rgw
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw_thread_pool_size = 64
rgw_gc_obj_min_wait = 60
rgw_gc_processor_period = 60
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def installed() -> bool:
    """Whether the Ceph daemons this needs are on the machine."""
    return all(shutil.which(tool) for tool in ("ceph-mon", "ceph-osd", "radosgw"))


class S3Gateway:
    """One Ceph cluster with one S3 gateway, all of it under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.conf = self.root / "ceph.conf"
        self.state = self.root / "gateway.json"  # ports, written once at bootstrap

    # --- addresses and credentials -------------------------------------------------------

    @property
    def port(self) -> int:
        return int(json.loads(self.state.read_text())["rgw_port"])

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point any S3 client (and the registry) here.

        This machine also sets `AWS_CA_BUNDLE`: botocore ignores it for a plain-HTTP endpoint,
        but Go's SDK (CNCF Distribution's S3 driver) panics at start with it set, so a test
        that runs Distribution against this gateway must drop it from that process's
        environment."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_REGION": REGION,
        }

    def client(self) -> Any:
        """A plain (blocking) botocore S3 client of the test user, for test set-up."""
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=botocore.config.Config(
                signature_version="s3v4", s3={"addressing_style": "path"}
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> S3Gateway:
        """Bootstrap an empty folder, or start the daemons of a cluster stopped before."""
        if not self.state.exists():
            self._bootstrap()
        else:
            self._start_monitor()
            self._start_osd()
            self.start_gateway()
        return self

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL) and wait until each is gone."""
        for name in (GATEWAY_NAME, "osd.0", "mon.a"):
            self._stop_daemon(name)

    def kill_gateway(self) -> None:
        """SIGKILL the S3 gateway only: S3 becomes unreachable, the cluster's data stays."""
        self._stop_daemon(GATEWAY_NAME, sig=signal.SIGKILL)

    def start_gateway(self) -> None:
        if self._running(GATEWAY_NAME) is None:
            self._run("radosgw", "-n", GATEWAY_NAME)
        self._wait_gateway()

    # --- bootstrap -----------------------------------------------------------------------

    def _bootstrap(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for folder in ("run", "log", "rgw", "osd-0", "mon-a"):
            (self.root / folder).mkdir(parents=True)
        ports = {"mon_port": _free_port(), "rgw_port": _free_port()}
        self.conf.write_text(
            _CONFIG.format(fsid=uuid.uuid4(), root=self.root, gateway=GATEWAY_NAME, **ports)
        )
        fsid = self._conf_value("fsid")
        mon_keyring = self.root / "mon.keyring"
        admin_keyring = self.root / "admin.keyring"
        self._tool(
            "ceph-authtool",
            "--create-keyring",
            str(mon_keyring),
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        )
        self._tool(
            "ceph-authtool",
            "--create-keyring",
            str(admin_keyring),
            "--gen-key",
            "-n",
            "client.admin",
            "--cap",
            "mon",
            "allow *",
            "--cap",
            "osd",
            "allow *",
            "--cap",
            "mgr",
            "allow *",
        )
        self._tool("ceph-authtool", str(mon_keyring), "--import-keyring", str(admin_keyring))
        monmap = self.root / "monmap"
        self._tool(
            "monmaptool",
            "--create",
            "--addv",
            "a",
            f"[v1:127.0.0.1:{ports['mon_port']}]",
            "--fsid",
            fsid,
            str(monmap),
        )
        self._run(
            "ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(mon_keyring)
        )
        self._start_monitor()
        # The OSD's key must be known to the monitor before mkfs: mkfs asks it for the config.
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise RuntimeError(f"expected OSD id 0, got {osd_id!r}")
        self._run(
            "ceph",
            "auth",
            "get-or-create",
            "osd.0",
            "mon",
            "allow profile osd",
            "mgr",
            "allow profile osd",
            "osd",
            "allow *",
            "-o",
            str(self.root / "osd-0/keyring"),
        )
        self._run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._start_osd()
        self._run(
            "ceph",
            "auth",
            "get-or-create",
            GATEWAY_NAME,
            "mon",
            "allow rw",
            "osd",
            "allow rwx",
            "-o",
            str(self.root / "rgw.keyring"),
        )
        self.state.write_text(json.dumps(ports))
        self.start_gateway()
        self._run(
            "radosgw-admin",
            "user",
            "create",
            f"--uid={USER_ID}",
            "--display-name=ociregistry",
            f"--access-key={ACCESS_KEY}",
            f"--secret-key={SECRET_KEY}",
        )

    def _start_monitor(self) -> None:
        if self._running("mon.a") is None:
            self._run("ceph-mon", "-i", "a")
        self._wait(lambda: self._ceph_ok("mon", "stat"), "the monitor")

    def _start_osd(self) -> None:
        if self._running("osd.0") is None:
            self._run("ceph-osd", "-i", "0")

        def up() -> bool:
            try:
                dump = json.loads(self._run("ceph", "osd", "dump", "-f", "json", timeout=10))
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError):
                return False
            return any(osd["osd"] == 0 and osd["up"] == 1 for osd in dump["osds"])

        self._wait(up, "the OSD")

    def _wait_gateway(self) -> None:
        """radosgw listens only once its pools exist: wait for an answer to `GET /`."""

        def answers() -> bool:
            try:
                response = httpx.get(self.endpoint_url + "/", timeout=2.0)
            except httpx.HTTPError:
                return False
            return "ListAllMyBucketsResult" in response.text

        self._wait(answers, "the S3 gateway")

    # --- processes -----------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def _running(self, name: str) -> int | None:
        """The daemon's pid if it runs. A killed daemon may linger as a zombie (nobody reaps a
        daemonized process here), so `kill -0` is not enough: the state must not be Z and the
        command line must name our configuration."""
        try:
            pid = int(self._pid_file(name).read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return None
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X") or str(self.conf) not in cmdline:
            return None
        return pid

    def _stop_daemon(self, name: str, sig: int = signal.SIGTERM) -> None:
        pid = self._running(name)
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while self._running(name) is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 20
            time.sleep(0.05)

    def _run(self, *command: str, timeout: float = 120) -> str:
        """Run a Ceph tool against our configuration; the daemons fork into the background."""
        return self._tool(command[0], "-c", str(self.conf), *command[1:], timeout=timeout)

    def _tool(self, *command: str, timeout: float = 120) -> str:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
            )
        return result.stdout

    def _ceph_ok(self, *args: str) -> bool:
        try:
            self._run("ceph", "--connect-timeout", "5", *args, timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def _conf_value(self, key: str) -> str:
        for line in self.conf.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == key:
                return value.strip()
        raise KeyError(key)

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.1)
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted((self.root / "log").glob("*.log"))
        )
        raise RuntimeError(f"{what} did not come up within {READY_TIMEOUT_SECONDS:.0f} s\n{logs}")


class CountingProxy:
    """A TCP relay in front of the gateway that counts the bytes each way, so a test can
    prove what the registry sent to and read back from S3 (no HTTP parsing: every byte
    counts, headers included)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0  # registry -> S3
        self.received = 0  # S3 -> registry
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.sent, self.received

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink, up in ((downstream, upstream, True), (upstream, downstream, False)):
                threading.Thread(target=self._pump, args=(source, sink, up), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                with self._lock:
                    if up:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class ThrottlingProxy:
    """An HTTP relay in front of the gateway that answers `503 SlowDown` (S3's throttling) to
    the next `throttle(n)` requests, or to every request until `throttle(0)`, and passes the
    rest on byte for byte (the Host header too, so SigV4 signatures stay valid). `refused`
    counts the SlowDown answers, so a test can see the registry's retries."""

    ALWAYS = -1

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refused = 0
        self._refuse = 0
        self._lock = threading.Lock()
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self._body()
                if relay._take_refusal():
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", relay.target_port, timeout=120)
                try:
                    upstream.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in self.headers.items():
                        if name.lower() != "transfer-encoding":
                            upstream.putheader(name, value)
                    if "content-length" not in self.headers and body:
                        upstream.putheader("Content-Length", str(len(body)))
                    upstream.endheaders(body or None)
                    answer = upstream.getresponse()
                    payload = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def throttle(self, requests: int) -> None:
        """Answer SlowDown to the next `requests` requests (`ALWAYS`: to all; 0: to none)."""
        with self._lock:
            self._refuse = requests

    def _take_refusal(self) -> bool:
        with self._lock:
            if self._refuse == 0:
                return False
            if self._refuse > 0:
                self._refuse -= 1
            self.refused += 1
            return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: s3gateway.py start|stop DIR", file=sys.stderr)
        return 2
    gateway = S3Gateway(Path(argv[1]))
    if argv[0] == "stop":
        gateway.stop()
        return 0
    gateway.start()
    for key, value in gateway.environment().items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
