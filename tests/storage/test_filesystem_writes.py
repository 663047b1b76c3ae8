"""The filesystem driver writes an upload's bytes around the page cache (O_DIRECT through a
bounce buffer, `blobstore/filesystem.py`): counted as the pages of the blob left in the cache
(`fincore`), which a buffered write leaves there, every one of them."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ociregistry.blobstore.filesystem import FilesystemDriver

MIB = 1 << 20
PIECE_BYTES = 256 * 1024 + 13  # as a socket read might cut them: never page-aligned


def _direct_supported(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644))
    except OSError as error:
        if error.errno == errno.EINVAL:
            return False
        raise
    finally:
        probe.unlink(missing_ok=True)
    return True


def _cached_bytes(path: Path) -> int:
    """How much of `path` is in the page cache now."""
    done = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), PIECE_BYTES):
        yield data[start : start + PIECE_BYTES]


@pytest.fixture
def driver(tmp_path: Path) -> FilesystemDriver:
    if not _direct_supported(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    return FilesystemDriver(tmp_path / "storage")


async def test_a_stream_bypasses_the_page_cache(driver: FilesystemDriver) -> None:
    data = os.urandom(32 * MIB + 5)
    assert await driver.put_stream("blobs/whole", _pieces(data)) == len(data)
    path = driver.root / "blobs" / "whole"
    cached = _cached_bytes(path)  # before the read below brings it in
    assert path.read_bytes() == data
    assert cached <= 2 * 4096, f"{cached} bytes of a 32 MiB blob left in the page cache"


async def test_parts_at_unaligned_offsets_bypass_the_page_cache(
    driver: FilesystemDriver,
) -> None:
    """Parts start wherever the one before ended; only each part's unaligned head and tail go
    through the cache, and the composed blob is every byte in order."""
    parts = [os.urandom(5_000), os.urandom(16 * MIB + 1), os.urandom(8 * MIB), os.urandom(3)]
    state = await driver.begin_upload("uploads/u1")
    for number, part in enumerate(parts, 1):
        state = await driver.write_part(state, number, _pieces(part))
    cached = _cached_bytes(driver.root / "uploads" / "u1" / "data")
    assert cached <= 4 * 2 * 4096, f"{cached} bytes of a 24 MiB upload left in the page cache"
    await driver.compose(state, "blobs/composed")
    assert (driver.root / "blobs" / "composed").read_bytes() == b"".join(parts)
