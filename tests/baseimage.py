"""A base image for the Dockerfile, made from Debian packages: no image can be pulled here.

`debootstrap --variant=minbase` installs a minimal Debian bookworm with Debian's python3 (3.11,
the Python the wheels are built with) and `passwd` (useradd, which the Dockerfile calls) from the
machine's own Debian mirror; the tree is then `docker import`ed as `BASE_IMAGE`.

Debootstrap takes minutes, so its result is kept twice, both under a content key (a hash of the
recipe: suite, variant, packages, mirror): as a label on the imported image, which is reused
while the daemon has it, and as a tar in the user's cache folder, which is imported again when
the daemon lost the image (a pruned or fresh data root).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

BASE_IMAGE = "ociregistry-test-base:bookworm"
KEY_LABEL = "org.ociregistry.test-base-key"
SUITE = "bookworm"
PACKAGES = ("python3", "passwd")
RECIPE_VERSION = 1  # raise when the recipe below changes in a way the key cannot see
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_TIMEOUT_SECONDS = 1200
MIRROR_ENV = "OCIREGISTRY_DEBIAN_MIRROR"
CACHE_ENV = "OCIREGISTRY_TEST_CACHE"


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (not its security archive), or the default."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file() or source.suffix not in ("", ".list", ".sources"):
            continue
        text = source.read_text(errors="replace")
        # deb822 (`URIs: http://...`) and one-line (`deb [opts] http://... suite`) formats.
        candidates = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        for uri in candidates:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def recipe_key(mirror: str) -> str:
    recipe = {
        "suite": SUITE,
        "variant": "minbase",
        "packages": PACKAGES,
        "mirror": mirror,
        "version": RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ociregistry-tests"


def debootstrap_tar(tar: Path, mirror: str) -> None:
    """Install the minimal system into a temp folder and tar it (as root: debootstrap chroots)."""
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=tar.parent) as work:
        root = Path(work) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                mirror,
            ],
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
        )
        # Package caches and documentation are no part of an image (a smaller base is also a
        # faster build on the vfs storage driver); /dev, /proc and /sys are the runtime's.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        for docs in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
            shutil.rmtree(root / docs, ignore_errors=True)
        partial = tar.with_suffix(".partial")
        subprocess.run(
            [
                "tar",
                "-C",
                str(root),
                "--numeric-owner",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-cf",
                str(partial),
                ".",
            ],
            check=True,
        )
        partial.rename(tar)  # whole or absent: an interrupted run never leaves half a tar


def ensure_base_image(docker: Callable[..., subprocess.CompletedProcess[str]]) -> str:
    """`BASE_IMAGE` in the daemon, made or reused by content key; returns its key.

    `docker(*args)` runs the docker CLI and returns the completed process (check=False).
    """
    mirror = debian_mirror()
    key = recipe_key(mirror)
    found = docker(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}', BASE_IMAGE
    )
    if found.returncode == 0 and found.stdout.strip() == key:
        return key
    tar = cache_dir() / f"base-{SUITE}-{key}.tar"
    if not tar.exists():
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
        debootstrap_tar(tar, mirror)
    imported = docker(
        "import",
        "--change",
        f"LABEL {KEY_LABEL}={key}",
        "--change",
        'CMD ["python3"]',
        str(tar),
        BASE_IMAGE,
    )
    if imported.returncode != 0:
        raise RuntimeError(f"docker import {tar} failed:\n{imported.stdout}{imported.stderr}")
    return key
