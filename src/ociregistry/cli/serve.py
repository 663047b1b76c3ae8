"""`ociregistry serve`: prepare the data folder and database, then run the workers."""

from __future__ import annotations

import argparse
import logging.config
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ociregistry import __version__
from ociregistry.blobstore.factory import create_driver
from ociregistry.cli.base import prepare, settings_of
from ociregistry.config import ConfigError, Settings
from ociregistry.ops import metrics
from ociregistry.ops.logs import log_config
from ociregistry.ops.worker import uvicorn_config


def command_path() -> str:
    """The exact `ociregistry` to type for administration: the one next to this Python (in
    `.venv/bin` after `scripts/serve`), which is rarely on PATH."""
    beside = Path(sys.executable).parent / "ociregistry"
    if beside.is_file():
        on_path = shutil.which("ociregistry")
        return "ociregistry" if on_path and Path(on_path) == beside else str(beside)
    return "ociregistry"


def data_message(settings: Settings) -> str:
    """The first log line: which data folder, database and storage this server uses, so that
    a server started from the wrong folder is noticed at once."""
    if settings.database_url:
        try:
            database = make_url(settings.database_url).render_as_string(hide_password=True)
        except ArgumentError:
            database = "(database_url is not a valid URL)"
    else:
        database = str(settings.data_path / "registry.db")
    return (
        f"ociregistry: data folder {settings.data_path}; database {database}; "
        f"storage {settings.storage_path}"
    )


def start_message(settings: Settings) -> str:
    address = settings.public_address or f"{settings.host}:{settings.port}"
    if settings.host in ("0.0.0.0", "::") and not settings.public_address:
        address = f"localhost:{settings.port}"
    database = settings.database_url or str(settings.data_path / "registry.db")
    storage = settings.storage if settings.s3_bucket_and_prefix else settings.storage_path
    return (
        f"ociregistry {__version__} listening on http://{settings.host}:{settings.port} "
        f"with {settings.workers} workers\n"
        f"  data:     {storage}\n"
        f"  database: {database}\n"
        "Push a first image (a one-file image built here, no internet needed):\n"
        f"  {command_path()} registry create team-a --data-dir {settings.data_path}\n"
        "  printf 'hello from ociregistry\\n' >hello.txt && tar -cf hello.tar hello.txt\n"
        f"  docker import hello.tar {address}/team-a/hello:1.0\n"
        f"  docker login {address} -u admin\n"
        f"  docker push {address}/team-a/hello:1.0\n"
    )


def check_storage(settings: Settings) -> None:
    """Object storage that cannot be reached stops `serve` here, with one line, rather than
    failing every request later."""
    if settings.s3_bucket_and_prefix is None:
        return
    from ociregistry.blobstore.driver import StorageError
    from ociregistry.blobstore.s3 import check_s3_storage

    try:
        check_s3_storage(settings)
    except StorageError as error:
        raise ConfigError(str(error)) from None


def serve(args: argparse.Namespace) -> int:
    settings = settings_of(
        args, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
    )
    logging_config = log_config(settings.log_format, settings.log_level)
    logging.config.dictConfig(logging_config)
    # In JSON, every line is a JSON object: the start message too.
    say = print if settings.log_format == "text" else logging.getLogger("ociregistry").info
    say(data_message(settings))
    settings.storage_path.mkdir(parents=True, exist_ok=True)
    create_driver(settings.storage, settings.storage_path)  # a wrong `storage` stops us here
    check_storage(settings)  # and so does a bucket we cannot use
    generated = prepare(settings)
    os.environ.update(settings.to_environment())
    metrics_dir = metrics.prepare_multiprocess_dir()  # before any worker starts
    say(start_message(settings))
    if generated:
        say(
            f"Created the admin account. Its password, shown this once: {generated}\n"
            "  (set OCIREGISTRY_ADMIN_PASSWORD before the first start to choose it)\n"
        )
    sys.stdout.flush()
    listener = uvicorn_config(settings).bind_socket()  # a port in use stops us here
    os.set_inheritable(listener.fileno(), True)
    supervisor = [
        sys.executable, "-m", "ociregistry.ops.supervisor",
        "--listener-fd", str(listener.fileno()),
        "--workers", str(settings.workers),
        "--shutdown-delay", str(settings.shutdown_delay_seconds),
        "--log-format", settings.log_format,
        "--log-level", settings.log_level,
    ]  # fmt: skip
    if metrics_dir is not None:
        supervisor += ["--metrics-dir", str(metrics_dir)]
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the supervisor: same process, none of the application's memory (it needs none).
    try:
        os.execv(sys.executable, supervisor)
    finally:  # reached only if the exec failed
        metrics.remove_multiprocess_dir(metrics_dir)


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("serve", parents=[common], help="run the registry")
    add_server_flags(parser)
    parser.set_defaults(handler=serve)


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `serve` (also taken by `config show`, which shows what `serve` would run
    with on the same command line)."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 5000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: cores)")
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log every request (default on)",
    )
