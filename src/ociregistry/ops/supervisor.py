"""The process `ociregistry serve` becomes once the data folder, the database and the
listening socket are ready: it starts the workers, restarts one that dies, and stops them all
in order on SIGTERM or SIGINT.

It needs none of the application, so it imports none of it: `serve` does the preparation
(settings, startup checks, migrations), then replaces itself with this module (`exec`, same
process id, so signals and service managers see no change), and each worker is a fresh
interpreter (`ociregistry.ops.worker`) that imports the app for itself. The supervisor thus
stays a standard-library process of a few MiB instead of a copy of the application that never
serves a request. Only the standard library, `ops.logs` (for the same log lines as the
workers) and `ops.connections` (the table by which the workers share the connections) may be
imported here; `tests/ops/test_process_model.py` checks it.

The stop order (see `ops/shutdown.py` for the worker's half): SIGTERM goes on to every worker
at once, the supervisor waits out `shutdown_delay_seconds` (the workers' `/readyz` says 503
meanwhile), then closes its copy of the listening socket (otherwise the kernel keeps
completing handshakes nobody will ever answer), and waits for the workers to finish the
requests in flight. SIGHUP replaces every worker, the new ones first.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import select
import shutil
import signal
import subprocess
import sys
import time

from ociregistry.ops.connections import ConnectionTable
from ociregistry.ops.logs import log_config

log = logging.getLogger("ociregistry.supervisor")

WORKER_MODULE = "ociregistry.ops.worker"
STARTUP_FAILURE = 3  # uvicorn's exit status when the app's lifespan startup failed
POLL_SECONDS = 0.5  # how often worker exits are looked for between signals
RESTART_PAUSE_SECONDS = 2.0  # before replacing a worker that failed its start
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    """`workers` worker processes sharing the listening socket `listener_fd`."""

    def __init__(self, listener_fd: int, workers: int, delay_seconds: float = 0.0) -> None:
        self.listener_fd = listener_fd
        self.count = max(1, workers)
        self.delay_seconds = delay_seconds
        self.workers: list[subprocess.Popen[bytes]] = []
        self.retiring: list[subprocess.Popen[bytes]] = []
        self.received: list[int] = []
        self.retry_at: dict[int, float] = {}  # pid of a worker that failed its start -> when
        # Several workers share the connections by a table of their counts (`ops/accept.py`),
        # a slot each: twice as many slots as workers, for a SIGHUP's old and new ones.
        self.table = ConnectionTable.create(2 * self.count) if self.count > 1 else None
        self.slots: dict[int, int] = {}  # worker pid -> its slot
        # ... and wake each other when one releases SQLite's write lock: an eventfd
        # (`db/write_lock.py`, which the workers import; made here with the standard library).
        self.write_lock_fd: int | None = None
        if self.count > 1:
            self.write_lock_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", WORKER_MODULE, "--listener-fd", str(self.listener_fd)]
        fds = [self.listener_fd]
        if self.write_lock_fd is not None:
            command += ["--write-lock-fd", str(self.write_lock_fd)]
            fds.append(self.write_lock_fd)
        if self.table is None:
            return subprocess.Popen(command, pass_fds=fds)
        taken = set(self.slots.values())
        slot = next((slot for slot in range(self.table.slots) if slot not in taken), None)
        if slot is None:  # SIGHUPs faster than old workers finish: this one accepts as uvicorn
            return subprocess.Popen(command, pass_fds=fds)
        command += ["--connections-fd", str(self.table.fd), "--slots", str(self.table.slots)]
        worker = subprocess.Popen([*command, "--slot", str(slot)], pass_fds=[*fds, self.table.fd])
        self.slots[worker.pid] = slot
        return worker

    def forget(self, worker: subprocess.Popen[bytes]) -> None:
        """A worker exited: its slot, if it had one, is free for the next."""
        slot = self.slots.pop(worker.pid, None)
        if slot is not None and self.table is not None:
            self.table.release(slot)

    def run(self) -> int:
        """Supervise until a stop signal; the exit status for the process."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)  # a signal ends the wait below at once
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            signal.signal(sig, lambda sig, _frame: self.received.append(sig))
        self.workers = [self.spawn() for _ in range(self.count)]
        log.info(
            "supervisor [%d] started workers %s",
            os.getpid(),
            ", ".join(str(worker.pid) for worker in self.workers),
        )
        status = 0
        while True:
            select.select([wake_read], [], [], POLL_SECONDS)
            while True:
                try:
                    if not os.read(wake_read, 512):
                        break
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
            if self._stop_requested():
                break
            failed = self._replace_dead_workers()
            if failed is not None:
                status = failed
                break
        self.stop()
        return status

    def _stop_requested(self) -> bool:
        while self.received:
            sig = self.received.pop(0)
            if sig in STOP_SIGNALS:
                log.info("received %s, stopping", signal.Signals(sig).name)
                return True
            if sig == signal.SIGHUP:
                log.info("received SIGHUP, replacing every worker")
                self.retiring += self.workers
                self.workers = [self.spawn() for _ in range(self.count)]
                for old in self.retiring:
                    _terminate(old)
        return False

    def _replace_dead_workers(self) -> int | None:
        """Start a new worker for each that exited; a status to exit with if no worker can
        start its app (every one would fail the same way on every restart).

        A worker that fails its start while another one serves is replaced after a pause,
        not taken for a broken installation: its start may have met a passing fault (the
        storage or database away for a moment) that the serving worker rides out, and
        stopping the whole server for it would turn a short outage into a long one."""
        for old in self.retiring:
            if old.poll() is not None:
                self.forget(old)
        self.retiring = [old for old in self.retiring if old.poll() is None]
        now = time.monotonic()
        for index, worker in enumerate(self.workers):
            code = worker.poll()
            if code is None:
                continue
            if code == STARTUP_FAILURE:
                if not any(other.poll() is None for other in self.workers):
                    log.error("worker [%d] failed to start the registry; stopping", worker.pid)
                    return STARTUP_FAILURE
                if worker.pid not in self.retry_at:
                    log.warning(
                        "worker [%d] failed its start while another serves; retrying in %.0f s",
                        worker.pid,
                        RESTART_PAUSE_SECONDS,
                    )
                retry_at = self.retry_at.setdefault(worker.pid, now + RESTART_PAUSE_SECONDS)
                if now < retry_at:
                    continue
                self.retry_at.pop(worker.pid, None)
            self.forget(worker)
            replacement = self.spawn()
            log.warning(
                "worker [%d] exited (status %d); started worker [%d]",
                worker.pid,
                code,
                replacement.pid,
            )
            self.workers[index] = replacement
        return None

    def stop(self) -> None:
        everyone = [*self.workers, *self.retiring]
        for worker in everyone:
            _terminate(worker)
        if self.delay_seconds > 0:
            log.info("draining for %s s before closing the listener", self.delay_seconds)
            time.sleep(self.delay_seconds)
        os.close(self.listener_fd)
        for worker in everyone:
            worker.wait()
        log.info("supervisor [%d] stopped", os.getpid())


def _terminate(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ociregistry serve (supervisor)")
    parser.add_argument("--listener-fd", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--shutdown-delay", type=float, default=0.0)
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--metrics-dir", help="a folder of ours to remove when stopped")
    args = parser.parse_args(argv)
    logging.config.dictConfig(log_config(args.log_format, args.log_level))
    try:
        return Supervisor(args.listener_fd, args.workers, args.shutdown_delay).run()
    finally:
        if args.metrics_dir:
            shutil.rmtree(args.metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
