"""Drivers are chosen by the `storage` setting through one factory, and always come wrapped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ociregistry.blobstore import (
    CheckedDriver,
    FilesystemDriver,
    MemoryDriver,
    PathNotFound,
    create_driver,
)
from ociregistry.config import ConfigError


@pytest.mark.parametrize(
    ("storage", "kind"),
    [("filesystem", FilesystemDriver), ("", FilesystemDriver), ("memory", MemoryDriver)],
)
def test_storage_setting_chooses_the_driver(tmp_path: Path, storage: str, kind: type) -> None:
    driver = create_driver(storage, tmp_path / "storage")
    assert isinstance(driver, CheckedDriver) and isinstance(driver.driver, kind)


def test_unknown_storage_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="setting storage has an invalid value 'nope'"):
        create_driver("nope", tmp_path)


def test_serve_stops_at_once_on_an_unknown_storage(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ociregistry", "serve", "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "OCIREGISTRY_STORAGE": "nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "ociregistry: setting storage has an invalid value 'nope': use one of filesystem, "
        "memory, s3://BUCKET[/PREFIX]"
    ]


async def test_observer_sees_every_operation(tmp_path: Path) -> None:
    """The hook metrics plug into: one call per operation, with its error if any."""
    seen: list[tuple[str, str, bool]] = []
    driver = create_driver(
        "memory",
        tmp_path,
        observer=lambda op, path, _s, error: seen.append((op, path, bool(error))),
    )
    await driver.put_content("a/b", b"x")
    assert await driver.stat("a/b") is not None
    with pytest.raises(PathNotFound):
        await driver.get_content("a/missing")
    assert seen == [
        ("put_content", "a/b", False),
        ("stat", "a/b", False),
        ("get_content", "a/missing", True),
    ]
