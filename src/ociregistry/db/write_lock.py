"""A signal the workers of one `serve` share: SQLite's write lock was just released.

A worker whose `BEGIN` finds the write lock held by another worker tries again later
(`sqlite_writes`), and uvloop's timers count whole milliseconds, so it tried again one to
two milliseconds later, while a transaction holds the lock for well under one: the lock
stood free most of that time, and a push's five transactions each waited so. Measured with
two workers on two cores (small pushes, 8 at a time, 7 alternating rounds): trying again at
once on every turn of the loop took 14 % more pushes a second, but burnt the processor the
other worker needed (manifest PUTs 2 % fewer). Here the worker that ends a transaction
writes to an eventfd that every worker inherited from the supervisor, and a waiting worker's
loop wakes on it at once; the timer stays, for writers that signal nothing (the CLI).

An eventfd, not a pipe: writes add to one counter, so a flood of commits never fills a
buffer nor blocks, and reading it empties it. Any worker may read it first; the others,
woken too, find the lock taken or not and wait again: nothing depends on who is woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os


class WriteLockSignal:
    """The shared eventfd `fd` (non-blocking), made by the supervisor (`ops/supervisor.py`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def released(self) -> None:
        """This process ended a write transaction (committed or rolled back). A system call
        of a microsecond or two; safe from any thread."""
        with contextlib.suppress(BlockingIOError):  # the counter is full: readable all the same
            os.eventfd_write(self.fd, 1)

    async def wait(self, timeout: float) -> bool:
        """Until another process releases the lock (True) or `timeout` seconds pass."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[bool] = loop.create_future()

        def wake(signalled: bool) -> None:
            if not woken.done():
                woken.set_result(signalled)

        loop.add_reader(self.fd, wake, True)
        timer = loop.call_later(timeout, wake, False)
        try:
            signalled = await woken
        finally:
            loop.remove_reader(self.fd)
            timer.cancel()
        if signalled:
            # empty it, so that it wakes no one again for this (another worker may have)
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self.fd)
        return signalled


_shared: WriteLockSignal | None = None


def share(signal: WriteLockSignal | None) -> None:
    """This process is one of several workers, which signal each other through `signal`
    (set by `ops/worker.py` before the app, and its database, start)."""
    global _shared
    _shared = signal


def shared() -> WriteLockSignal | None:
    """The signal this process's SQLite writes use, if it has other workers beside it."""
    return _shared
