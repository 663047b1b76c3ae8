"""A graceful stop on SIGTERM, for the supervisor and for each worker process.

In a worker, SIGTERM first turns readiness to 503 (`/readyz`), then, after
`shutdown_delay_seconds` (0 by default: at once), hands over to uvicorn, which stops taking
connections, lets requests in flight finish within `shutdown_timeout_seconds` and then runs the
app's lifespan shutdown (pull counts written, background jobs stopped at a safe point).

The supervisor owns a copy of the listening socket; as long as it is open the kernel keeps
completing handshakes nobody will ever answer. `Supervisor` passes SIGTERM on to the workers,
waits out the same delay (traffic drains while probes say 503), then closes its copy, so new
connections are refused while the requests in flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from uvicorn.supervisors.multiprocess import Multiprocess

log = logging.getLogger("ociregistry.shutdown")


def on_terminate(begin: Callable[[], None], delay_seconds: float) -> bool:
    """In a uvicorn worker: on SIGTERM call `begin()` at once, and uvicorn's own handler after
    `delay_seconds`. Returns False (and does nothing) outside a uvicorn server, for example in
    an in-process test app."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return False
    loop = asyncio.get_running_loop()
    started = False

    def handler(sig: int, frame: FrameType | None) -> None:
        nonlocal started
        if started:
            return  # the supervisor passes the signal on too; one stop is enough
        started = True
        begin()
        if delay_seconds > 0:
            loop.call_soon_threadsafe(loop.call_later, delay_seconds, previous, sig, None)
        else:
            previous(sig, frame)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return False
    return True


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, with the stop order described above."""

    def __init__(self, *args: Any, delay_seconds: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_seconds = delay_seconds

    def terminate_all(self) -> None:
        for process in self.processes:
            process.terminate()
        if self.delay_seconds > 0:
            log.info("draining for %s s before closing the listener", self.delay_seconds)
            time.sleep(self.delay_seconds)
        for sock in self.sockets:
            sock.close()
