"""Storage drivers are chosen by configuration, here and nowhere else.

`storage` is `filesystem` (under the data folder, the default), `memory`, or
`s3://BUCKET[/PREFIX]` (with the `s3_*` settings); every driver
comes back wrapped in `CheckedDriver`, which checks paths, turns I/O failures into
`StorageError`s and calls the observer (metrics) after each operation.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ociregistry.blobstore.base import CheckedDriver, Observer
from ociregistry.blobstore.driver import StorageDriver
from ociregistry.blobstore.filesystem import FilesystemDriver
from ociregistry.blobstore.memory import MemoryDriver
from ociregistry.config import ConfigError

if TYPE_CHECKING:
    from ociregistry.config import Settings

STORAGE_KINDS = ("filesystem", "memory", "s3://BUCKET[/PREFIX]")


class StorageConfigError(ConfigError):
    """The `storage` setting names no driver we have (`serve` stops with this one line)."""


def create_driver(
    storage: str,
    storage_path: Path,
    *,
    observer: Observer | None = None,
    settings: Settings | None = None,
) -> CheckedDriver:
    """The configured driver, wrapped. `storage_path` is the filesystem driver's root;
    `settings` gives the S3 driver its `s3_*` settings (their defaults when None)."""
    driver: StorageDriver
    if storage in ("", "filesystem"):
        driver = FilesystemDriver(storage_path)
    elif storage == "memory":
        driver = MemoryDriver()
    elif storage.startswith("s3://"):
        from ociregistry.blobstore.s3 import S3Driver  # aiobotocore only when it is used
        from ociregistry.config import Settings

        chosen = replace(settings, storage=storage) if settings else Settings(storage=storage)
        driver = S3Driver.from_settings(chosen)
    else:
        raise StorageConfigError(
            f"setting storage has an invalid value {storage!r}: use one of "
            f"{', '.join(STORAGE_KINDS)}"
        )
    return CheckedDriver(driver, observer)


async def close_driver(driver: StorageDriver) -> None:
    """Release what a driver holds open (the S3 driver's connection pool) at shutdown."""
    inner = driver.driver if isinstance(driver, CheckedDriver) else driver
    close = getattr(inner, "close", None)
    if close is not None:
        await close()


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
