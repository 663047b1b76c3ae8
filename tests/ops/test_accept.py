"""The workers of `serve` share the connections (ops/accept.py, ops/connections.py): a burst
of keep-alive connections no longer lands on the one worker that woke first, and a stuck
worker strands no client.

A real server with two workers; which worker holds a connection is read from /proc (the
sockets in each worker's file table, against the established connections to the port).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociregistry.ops.connections import UNUSED, ConnectionTable
from support.server import RunningServer
from support.waiting import wait_for

CONNECTIONS = 8
REQUEST = b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n"
ESTABLISHED = "01"  # the `st` column of /proc/net/tcp
ALL_BUT_LISTEN = (*(f"{state:02X}" for state in range(1, 10)), "0B")  # 0A: LISTEN


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("accept") / "data", workers=2).start()
    # Until a worker has started, its slot says it takes nothing: the other takes everything.
    wait_for(lambda: server.log().count("Application startup complete") == 2, "both workers", 60)
    yield server
    server.stop()


def _workers(server: RunningServer) -> list[int]:
    assert server.process is not None
    found = []
    for pid in server.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"ociregistry.ops.worker" in cmdline:
            found.append(pid)
    assert len(found) == 2
    return found


def _held(server: RunningServer, states: tuple[str, ...] = (ESTABLISHED,)) -> dict[int, int]:
    """Connections to the server's port in one of `states`, per worker."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == server.port and fields[3] in states:
            inodes.add(fields[9])
    held = {}
    for pid in _workers(server):
        sockets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        held[pid] = sum(1 for link in sockets if link[8:-1] in inodes and "socket:" in link)
    return held


def _whole_log(server: RunningServer) -> str:
    return server.log_path.read_text(errors="replace")  # `log()` is its tail


def _answered(connection: socket.socket) -> bytes:
    connection.settimeout(30)
    return connection.recv(65536)


def test_a_burst_of_connections_is_shared_by_the_workers(two_workers: RunningServer) -> None:
    """Eight connections opened at once, each asking once and kept: uvicorn's own accepting
    gave all eight to one worker here; shared, neither holds more than five."""
    connections = [socket.create_connection(("127.0.0.1", two_workers.port)) for _ in range(8)]
    try:
        for connection in connections:
            connection.sendall(REQUEST)
        for connection in connections:
            assert _answered(connection).startswith(b"HTTP/1.1 401")
        held = _held(two_workers)
        assert sum(held.values()) == CONNECTIONS
        assert max(held.values()) <= 5, held
    finally:
        for connection in connections:
            connection.close()


def test_a_stuck_worker_strands_no_connection(two_workers: RunningServer) -> None:
    """A worker that cannot take its share (stopped here, its count low) leaves each new
    connection to the other, which waits a moment for it and then serves the connection
    itself: of four, at least two are taken so."""
    stuck, serving = _workers(two_workers)
    for _ in range(2):  # both workers wake to these and write their counts, now 0 or 1
        with socket.create_connection(("127.0.0.1", two_workers.port)) as connection:
            connection.sendall(REQUEST)
            assert _answered(connection).startswith(b"HTTP/1.1 401")
        time.sleep(0.2)
    os.kill(stuck, signal.SIGSTOP)
    connections = []
    try:
        for _ in range(4):
            connection = socket.create_connection(("127.0.0.1", two_workers.port))
            connections.append(connection)
            connection.sendall(REQUEST)
            assert _answered(connection).startswith(b"HTTP/1.1 401")
        held = _held(two_workers)
        assert held[serving] >= 4 and held[stuck] == 0
    finally:
        os.kill(stuck, signal.SIGCONT)
        for connection in connections:
            connection.close()


def test_out_of_file_descriptors_the_connection_waits_without_a_busy_loop(
    two_workers: RunningServer,
) -> None:
    """When no worker can accept (each at its limit of open files), the connection waits in
    the queue: each worker says so in its log now and then and tries again shortly, rather
    than failing the accept in a loop (thousands of lines a second), and serves the
    connection once descriptors are free again."""
    workers = _workers(two_workers)
    # The earlier tests' connections closed: each worker's descriptors are its own again.
    wait_for(lambda: not any(_held(two_workers, ALL_BUT_LISTEN).values()), "closed sockets", 60)
    limits = {pid: resource.prlimit(pid, resource.RLIMIT_NOFILE) for pid in workers}
    logged = _whole_log(two_workers).count("Too many open files")
    for pid in workers:  # a new descriptor takes the lowest free number: none below it now
        in_use = {int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        lowest_free = next(number for number in range(len(in_use) + 1) if number not in in_use)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, limits[pid][1]))
    connection = socket.create_connection(("127.0.0.1", two_workers.port))
    try:
        connection.sendall(REQUEST)
        time.sleep(1)  # both workers find the connection and fail to take it meanwhile
        failures = _whole_log(two_workers).count("Too many open files") - logged
        assert 1 <= failures <= 60  # about ten a second each, not a loop
    finally:
        for pid, limit in limits.items():
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
    try:
        assert _answered(connection).startswith(b"HTTP/1.1 401")
    finally:
        connection.close()


def test_the_table_keeps_a_count_per_worker() -> None:
    """Unused slots (no worker, or one that stopped) never look like the least busy."""
    table = ConnectionTable.create(4)
    try:
        assert table.fewest_elsewhere(0) == UNUSED
        table.publish(0, 3)
        table.publish(1, 5)
        assert table.fewest_elsewhere(0) == 5
        assert table.fewest_elsewhere(1) == 3
        other = ConnectionTable(table.fd, 4)  # as a worker maps it
        other.publish(2, 1)
        assert table.fewest_elsewhere(0) == 1
        table.release(2)
        assert other.count(2) == UNUSED and table.fewest_elsewhere(0) == 5
    finally:
        os.close(table.fd)
