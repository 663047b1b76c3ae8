"""The progress `ociregistry fsck` and `ociregistry storage copy` show while they walk a store
(issue 12 points 5 and 6), on a real data folder, run as the real command.

Off a terminal (a log, a pipe) each prints plain lines on stderr: fsck one for every thousand
objects it has checked, the copy one for each blob with what it did with it. On a terminal each
draws a tqdm bar that counts the bytes instead, and prints none of those lines. The result
stays on stdout either way.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tqdm import tqdm

from support.inprocess import InProcessRegistry
from support.oci import digest_of
from support.s3gateway import S3Gateway

MIB = 1 << 20
FSCK_BLOBS = 2_100  # past two of fsck's progress lines, one every 1,000 objects
COPY_BLOBS = 40
LINE_EVERY = 1_000  # cli/storage.py
TERMINAL_COLUMNS = 160
STRAY = "blobs/sha256/notes.txt"
COPY_LINE = re.compile(r"(copied|skipped) (blobs/sha256/[0-9a-f]{2}/[0-9a-f]{64}) \((\d+) bytes\)")


@dataclass
class DataFolder:
    """A registry's data folder holding `blobs` (the bytes of each blob by its store path)."""

    path: Path
    blobs: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.blobs.values())


def pushed_data_folder(folder: Path, count: int) -> DataFolder:
    """`count` small blobs and one of 2 MiB, pushed through the registry app (so the database
    knows each), into a fresh data folder; the app is closed before the commands run."""
    blobs: dict[str, int] = {}
    contents = [f"progress blob {n}\n".encode() * (1 + n % 7) for n in range(count)]
    contents.append(os.urandom(2 * MIB))
    with InProcessRegistry(folder) as registry:
        registry.run(registry.services.registries.create("progress", public=True))

        async def push_all() -> None:
            for data in contents:
                digest = digest_of(data)
                answer = await registry.client.post(
                    "/v2/progress/app/blobs/uploads/",
                    params={"digest": digest},
                    content=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
                assert answer.status_code == 201, answer.text
                hex_ = digest.removeprefix("sha256:")
                blobs[f"blobs/sha256/{hex_[:2]}/{hex_}"] = len(data)

        registry.run(push_all())
    return DataFolder(folder, blobs)


def ociregistry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command, its stderr a pipe (not a terminal), as in a log or CI."""
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def ociregistry_on_a_terminal(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The command with its stderr on a pseudo-terminal (what a person at a terminal sees) and
    its stdout a pipe: its exit status, stdout, and every byte written to the terminal."""
    controller, terminal = pty.openpty()
    # A terminal has a size (a fresh pseudo-terminal's is 0 x 0, on which tqdm draws nothing).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, TERMINAL_COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "ociregistry", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the last writer of the terminal is gone
            break
        if not data:
            break
        shown += data
    os.close(controller)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=600), stdout, shown.decode(errors="replace")


def last_bar(shown: str) -> str:
    """The bar as it was left: the last of the states tqdm drew over each other with `\\r`."""
    states = [state.strip() for state in re.split(r"[\r\n]", shown) if state.strip()]
    assert states, f"nothing was drawn on the terminal: {shown!r}"
    return states[-1]


@pytest.fixture(scope="module")
def fsck_folder(tmp_path_factory: pytest.TempPathFactory) -> DataFolder:
    return pushed_data_folder(tmp_path_factory.mktemp("fsck-progress") / "data", FSCK_BLOBS)


@pytest.mark.parametrize("verify", [False, True], ids=["check", "verify"])
def test_fsck_off_a_terminal_says_every_thousand_objects_how_far_it_is(
    fsck_folder: DataFolder, verify: bool
) -> None:
    args = ["fsck", "--data-dir", str(fsck_folder.path), "--json"]
    done = ociregistry(*args, *(["--verify"] if verify else []))

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["objects"] == len(fsck_folder.blobs) == FSCK_BLOBS + 1
    assert report["bytes"] == fsck_folder.total_bytes
    lines = done.stderr.splitlines()
    steps = range(LINE_EVERY, report["objects"] + 1, LINE_EVERY)
    assert lines == [f"checked {n} objects" for n in steps], done.stderr
    assert len(lines) == 2


def test_fsck_on_a_terminal_draws_a_bar_of_the_bytes_it_walked(fsck_folder: DataFolder) -> None:
    status, stdout, shown = ociregistry_on_a_terminal(
        "fsck", "--data-dir", str(fsck_folder.path), "--verify", "--json"
    )

    assert status == 0, stdout + shown
    assert json.loads(stdout)["verified"] == FSCK_BLOBS + 1
    assert "checked 1000 objects" not in shown  # the lines are for logs and pipes only
    bar = last_bar(shown)
    assert bar.startswith("verifying: "), shown
    assert f"{tqdm.format_sizeof(fsck_folder.total_bytes)}B " in bar, bar


@pytest.fixture(scope="module")
def copy_folder(tmp_path_factory: pytest.TempPathFactory) -> DataFolder:
    """The blobs, and beside them an object that is no blob (left by hand, or by another tool),
    which the copy ignores: neither a line nor a byte of the bar is about it."""
    folder = pushed_data_folder(tmp_path_factory.mktemp("copy-progress") / "data", COPY_BLOBS)
    (folder.path / "storage" / STRAY).write_bytes(b"not a blob\n" * 1000)
    return folder


@pytest.fixture(scope="module")
def progress_bucket(s3_gateway: S3Gateway) -> str:
    return s3_gateway.create_bucket(f"storage-progress-{os.getpid()}")


@pytest.fixture
def copy_env(s3_gateway: S3Gateway) -> Iterator[dict[str, str]]:
    yield {**os.environ, **s3_gateway.environment()}


def copied_lines(stderr: str) -> dict[str, tuple[str, int]]:
    """Each progress line of a copy, by the blob it names: what was done, and its size."""
    seen: dict[str, tuple[str, int]] = {}
    for line in stderr.splitlines():
        match = COPY_LINE.fullmatch(line)
        assert match, f"not a progress line: {line!r}"
        outcome, path, size = match.groups()
        assert path not in seen, f"{path} named twice"
        seen[path] = (outcome, int(size))
    return seen


@pytest.mark.s3
def test_storage_copy_off_a_terminal_says_what_it_did_with_each_blob(
    copy_folder: DataFolder, progress_bucket: str, copy_env: dict[str, str]
) -> None:
    target = f"s3://{progress_bucket}/lines"
    args = ["storage", "copy", "--to", target, "--data-dir", str(copy_folder.path), "--json"]

    first = ociregistry(*args, env=copy_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert copied_lines(first.stderr) == {
        path: ("copied", size) for path, size in copy_folder.blobs.items()
    }
    assert json.loads(first.stdout)["copied"] == COPY_BLOBS + 1
    assert json.loads(first.stdout)["ignored"] == [STRAY]

    again = ociregistry(*args, env=copy_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert copied_lines(again.stderr) == {
        path: ("skipped", size) for path, size in copy_folder.blobs.items()
    }


@pytest.mark.s3
def test_storage_copy_on_a_terminal_draws_a_bar_that_reaches_every_byte(
    copy_folder: DataFolder, progress_bucket: str, copy_env: dict[str, str]
) -> None:
    target = f"s3://{progress_bucket}/bar"
    status, stdout, shown = ociregistry_on_a_terminal(
        "storage", "copy", "--to", target, "--data-dir", str(copy_folder.path), "--json",
        env=copy_env,
    )  # fmt: skip

    assert status == 0, stdout + shown
    assert json.loads(stdout)["copied"] == COPY_BLOBS + 1
    assert not COPY_LINE.search(shown)  # no line per blob on a terminal
    bar = last_bar(shown)
    size = tqdm.format_sizeof(copy_folder.total_bytes)  # tqdm writes the unit after the rate
    assert bar.startswith(f"copying to {target}: 100%"), bar
    assert f"| {size}/{size} [" in bar, bar
