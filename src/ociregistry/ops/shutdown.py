"""A graceful stop on SIGTERM, for the supervisor and for each worker process.

In a worker, SIGTERM first turns readiness to 503 (`/readyz`), then, after
`shutdown_delay_seconds` (0 by default: at once), hands over to uvicorn, which stops taking
connections, lets requests in flight finish within `shutdown_timeout_seconds` and then runs the
app's lifespan shutdown (pull counts written, background jobs stopped at a safe point).

The supervisor's half of the stop (SIGTERM passed on, the same delay, then its copy of the
listening socket closed) is in `ops/supervisor.py`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType


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
