"""Waiting for a real server to reach a state (a worker replaced, a job run, a deletion done):
a bound on waiting, never an assertion on speed (performance belongs in bench/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, seconds: float, *, every: float = 0.1) -> T:
    """Ask `condition` every `every` seconds until it answers something true, and return that;
    fail, naming `what`, once `seconds` have passed without it."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} (after {seconds} s)")
        time.sleep(every)
    return found
