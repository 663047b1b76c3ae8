"""`ociregistry fsck` (compare the store with the database) and `ociregistry storage copy`
(move a filesystem data folder's blobs into an S3 bucket). Both show a progress bar on a
terminal (tqdm, on stderr) and plain lines otherwise, so a log or a pipe stays readable; the
result goes to stdout, as a table or with `--json` as JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from ociregistry.blobstore.base import CheckedDriver
from ociregistry.blobstore.driver import FileInfo, StorageError
from ociregistry.blobstore.factory import close_driver, create_driver
from ociregistry.blobstore.filesystem import FilesystemDriver
from ociregistry.blobstore.store import digest_of_path
from ociregistry.blobstore.transfer import CopyReport, copy_blobs, source_blobs
from ociregistry.catalog.fsck import FsckReport, as_json, check_store
from ociregistry.cli.base import check_data_folder, run_services, say, settings_of
from ociregistry.config import ConfigError
from ociregistry.services import Services


class _Progress:
    """A byte-counting tqdm bar on a terminal; otherwise one plain line on stderr for each
    item `line` names (None: nothing to say about it)."""

    def __init__(self, what: str, total_bytes: int | None) -> None:
        self.bar: tqdm[Any] | None = None
        if sys.stderr.isatty():
            self.bar = tqdm(
                total=total_bytes, desc=what, unit="B", unit_scale=True, file=sys.stderr
            )

    def step(self, size: int, line: str | None) -> None:
        if self.bar is not None:
            self.bar.update(size)
        elif line is not None:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- fsck ------------------------------------------------------------------------------------


def fsck(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    check_data_folder(settings)

    async def work(parts: Services) -> FsckReport:
        progress = _Progress("checking" if not args.verify else "verifying", None)
        checked = 0

        def seen(info: FileInfo) -> None:
            nonlocal checked
            checked += 1
            progress.step(info.size, f"checked {checked} objects" if checked % 1000 == 0 else None)

        try:
            return await check_store(
                parts.db, parts.blobs.driver, verify=args.verify, progress=seen
            )
        finally:
            progress.close()

    report = _storage_errors(lambda: run_services(settings, work))
    if args.json:
        say(args, "", **as_json(report))
    else:
        for problem in report.problems:
            print(f"{problem.kind:8}  {problem.digest or problem.path}  {problem.detail}")
        text = (
            f"{report.objects} objects ({report.bytes} bytes) in the store, {report.known} "
            f"blobs in the database: {report.count('missing')} missing, "
            f"{report.count('unknown')} unknown, {report.count('size')} of the wrong size"
        )
        if args.verify:
            text += f", {report.count('digest')} of {report.verified} failing their digest"
        if report.awaiting_collection:
            text += f"; {report.awaiting_collection} unreferenced, awaiting garbage collection"
        print(text)
    return 1 if report.problems else 0


# -- storage copy ------------------------------------------------------------------------------


def storage_copy(args: argparse.Namespace) -> int:
    if not args.to.startswith("s3://"):
        raise ConfigError(f"--to {args.to!r}: give the bucket as s3://BUCKET[/PREFIX]")
    settings = settings_of(args)
    check_data_folder(settings)
    target = settings_of(args, storage=args.to)  # checks the bucket name and prefix
    if not settings.storage_path.is_dir():
        raise ConfigError(f"no blobs to copy: {settings.storage_path} does not exist")
    from ociregistry.blobstore.s3 import check_s3_storage

    _storage_errors(lambda: check_s3_storage(target))

    async def work() -> CopyReport:
        source = CheckedDriver(FilesystemDriver(settings.storage_path))
        destination = create_driver(target.storage, target.storage_path, settings=target)
        try:
            blobs = await source_blobs(source)
            # What the copy will go through: objects that are no blobs are ignored, not copied.
            total = sum(info.size for info in blobs if digest_of_path(info.path) is not None)
            progress = _Progress(f"copying to {args.to}", total)

            def done(info: FileInfo, outcome: str) -> None:
                progress.step(info.size, f"{outcome} {info.path} ({info.size} bytes)")

            try:
                return await copy_blobs(source, destination, blobs, progress=done)
            finally:
                progress.close()
        finally:
            await close_driver(destination)

    report = _storage_errors(lambda: asyncio.run(work()))
    for failure in report.failed:
        print(f"ociregistry: not copied: {failure}", file=sys.stderr)
    say(
        args,
        f"copied {report.copied} blobs ({report.bytes_copied} bytes) to {args.to}, "
        f"skipped {report.skipped} already there, {len(report.failed)} failed"
        + (f", ignored {len(report.ignored)} objects that are no blobs" if report.ignored else ""),
        copied=report.copied,
        bytes_copied=report.bytes_copied,
        skipped=report.skipped,
        failed=report.failed,
        ignored=report.ignored,
    )
    return 1 if report.failed else 0


def _storage_errors(work: Callable[[], Any]) -> Any:
    """Storage failures end the command in one line, as configuration errors do."""
    try:
        return work()
    except StorageError as error:
        raise ConfigError(f"storage failed: {error}") from None


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    check = commands.add_parser(
        "fsck",
        parents=[common],
        help="walk the store once and compare it with the database (exit 1 on problems)",
    )
    check.add_argument(
        "--verify", action="store_true", help="also hash every blob and compare with its digest"
    )
    check.set_defaults(handler=fsck)

    storage = commands.add_parser("storage", help="blob storage").add_subparsers(
        dest="storage_command", required=True
    )
    copy = storage.add_parser(
        "copy",
        parents=[common],
        help="copy the data folder's blobs into an S3 bucket (resumable, verified)",
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="s3://BUCKET[/PREFIX]",
        help="the bucket (and prefix) the `storage` setting will name; s3_* settings apply",
    )
    copy.set_defaults(handler=storage_copy)
