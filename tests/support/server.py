"""A real `ociregistry serve` process for tests, on 127.0.0.1 and a free port.

Tests talk to the registry exactly as clients do: over HTTP to a separate process, with the
same command line the README gives. Nothing here reaches into the server's memory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

READY_TIMEOUT_SECONDS = 60.0
ADMIN_USER = "admin"
ADMIN_PASSWORD = "test-admin-password"  # the first start creates `admin` with it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    """One registry server process with its own data folder."""

    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 2,
        port: int | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "OCIREGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
            # Tests that fail sign-ins on purpose must not lock every other test out of the
            # shared server (all come from 127.0.0.1); brute-force tests set their own limit.
            "OCIREGISTRY_LOGIN_MAX_FAILURES": "100000",
            **(env or {}),
        }
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"

    @property
    def address(self) -> str:
        """`host:port`, as it appears in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def admin(self) -> tuple[str, str]:
        """Credentials of the platform admin, for clients that must sign in to push."""
        return ADMIN_USER, ADMIN_PASSWORD

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> RunningServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ociregistry",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}/v2/", timeout=1.0)
                if response.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def _signal_group(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator or a service manager does it."""
        self._signal_group(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL to every process of the server at once: the crash case."""
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def restart(self) -> RunningServer:
        self.stop()
        return self.start()

    def cli(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `ociregistry <args>` against this server's data folder, with `stdin` to read
        (`--password-stdin`)."""
        return subprocess.run(
            [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(self.data_dir)],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=check,
        )

    def create_registry(self, name: str, *, public: bool = True) -> None:
        args = ["registry", "create", name]
        if public:
            args.append("--public")
        self.cli(*args)

    def pids(self) -> list[int]:
        """The server's processes (supervisor and workers)."""
        if self.process is None:
            return []
        out = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]
