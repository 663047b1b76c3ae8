"""Accepting connections so that the workers of `serve` share them: each new connection goes
to the worker that holds the fewest.

Why not uvicorn's own accepting. The workers share one listening socket, and uvloop (libuv)
accepts every pending connection at once when the socket becomes readable: a burst of
keep-alive connections lands on whichever worker woke first. Measured with two workers and
eight pushing clients, the connections split 6/2, 7/1 or 5/3 far more often than 4/4, and the
busier worker's one core set the pace while the other idled; an nginx upstream pool or a CI
runner's parallel pushes are such bursts too.

So each worker here accepts one connection per turn of its event loop, and before it does,
it writes how many connections it holds into its slot of the shared table
(`ops/connections.py`) and reads the others'. A worker holding more than the least busy other
one lets the connection wait `DEFER_SECONDS` for that worker to take it, and takes it itself
if it is still waiting then: a worker that is stuck, or busy past its share, never strands a
client.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
from collections.abc import Callable

import uvicorn

from ociregistry.ops.connections import ConnectionTable

# How long a connection may wait for a less busy worker (its handshake is done; it waits in
# the kernel's accept queue). Only a worker holding more connections than another waits.
DEFER_SECONDS = 0.005
# After an accept failed for want of a resource (file descriptors), before the next try;
# meanwhile another worker may take the connection.
PAUSE_AFTER_FAILURE_SECONDS = 0.1
BACKLOG = 2048  # uvicorn's default

log = logging.getLogger("ociregistry.accept")


class SharedListener:
    """Takes connections off `listener` one per event-loop turn, for `protocol_factory`,
    unless another worker holds fewer (see the module docstring). Closed like the
    `asyncio.Server` uvicorn would have made."""

    def __init__(
        self,
        listener: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        held: Callable[[], int],
        table: ConnectionTable,
        slot: int,
    ) -> None:
        self._listener = listener
        self._factory = protocol_factory
        self._held = held
        self._table = table
        self._slot = slot
        self._starting = 0  # accepted, but not yet connected to a protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False
        listener.setblocking(False)
        listener.listen(BACKLOG)  # `serve` bound it; uvicorn's server would listen here
        self._table.publish(slot, 0)
        self._watch()

    def _watch(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._listener.fileno(), self._readable)

    def _readable(self) -> None:
        mine = self._held() + self._starting
        self._table.publish(self._slot, mine)
        if mine > self._table.fewest_elsewhere(self._slot):
            self._loop.remove_reader(self._listener.fileno())
            self._loop.call_later(DEFER_SECONDS, self._after_deferring)
            return
        self._accept()

    def _after_deferring(self) -> None:
        """Take the connection that no other worker took meanwhile, then watch again."""
        if self._closed:
            return
        self._watch()
        waiting, _, _ = select.select([self._listener], [], [], 0)
        if waiting:
            self._accept()

    def _accept(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as error:  # out of file descriptors, say: the connection stays queued
            log.warning("cannot accept a connection (%s); trying again shortly", error)
            self._loop.remove_reader(self._listener.fileno())  # not again at once, in a loop
            self._loop.call_later(PAUSE_AFTER_FAILURE_SECONDS, self._watch)
            return
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._starting += 1
        self._table.publish(self._slot, self._held() + self._starting)
        self._loop.create_task(self._connect(connection))

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection)
        except OSError:
            connection.close()  # reset before it was served: nothing to answer
        finally:
            self._starting -= 1

    def close(self) -> None:
        """Stop taking connections; the ones taken go on (uvicorn's graceful stop)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._listener.fileno())
        self._table.release(self._slot)
        self._listener.close()  # this process's copy; the others keep theirs

    async def wait_closed(self) -> None:
        return None


class SharingServer(uvicorn.Server):
    """uvicorn's server, its connections taken by a `SharedListener` instead of the
    `asyncio.Server` uvicorn makes of a listening socket."""

    def __init__(
        self, config: uvicorn.Config, listener: socket.socket, table: ConnectionTable, slot: int
    ) -> None:
        super().__init__(config)
        self._listener = listener
        self._table = table
        self._slot = slot

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's startup; no server of uvicorn's
        if not self.started:
            return
        config = self.config

        def protocol() -> asyncio.Protocol:  # what uvicorn makes per connection
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        connections = self.server_state.connections
        listener = SharedListener(
            self._listener, protocol, lambda: len(connections), self._table, self._slot
        )
        self.servers.append(listener)  # type: ignore[arg-type]
