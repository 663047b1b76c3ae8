"""Storage drivers are chosen by configuration, here and nowhere else.

`storage` is `filesystem` (under the data folder, the default) or `memory`; every driver
comes back wrapped in `CheckedDriver`, which checks paths, turns I/O failures into
`StorageError`s and calls the observer (metrics) after each operation.
"""

from __future__ import annotations

import os
from pathlib import Path

from ociregistry.blobstore.base import CheckedDriver, Observer
from ociregistry.blobstore.driver import StorageDriver
from ociregistry.blobstore.filesystem import FilesystemDriver
from ociregistry.blobstore.memory import MemoryDriver

STORAGE_KINDS = ("filesystem", "memory")


class StorageConfigError(ValueError):
    """The `storage` setting names no driver we have."""


def create_driver(
    storage: str, storage_path: Path, *, observer: Observer | None = None
) -> CheckedDriver:
    """The configured driver, wrapped. `storage_path` is the filesystem driver's root."""
    driver: StorageDriver
    if storage in ("", "filesystem"):
        driver = FilesystemDriver(storage_path)
    elif storage == "memory":
        driver = MemoryDriver()
    else:
        raise StorageConfigError(
            f"storage = {storage!r} is not a storage driver; use one of {', '.join(STORAGE_KINDS)}"
        )
    return CheckedDriver(driver, observer)


TRACE_ENV = "OCIREGISTRY_STORAGE_TRACE"


def observer_from_environment() -> Observer | None:
    """For tests only: with `OCIREGISTRY_STORAGE_TRACE=FILE`, every driver operation of every
    worker is appended to FILE as `pid operation path`, so a test can see which requests read
    bytes back. Not a setting: it writes on the event loop."""
    trace = os.environ.get(TRACE_ENV)
    if not trace:
        return None

    def observe(operation: str, path: str, seconds: float, error: BaseException | None) -> None:
        line = f"{os.getpid()} {operation} {path}\n".encode()
        fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    return observe
