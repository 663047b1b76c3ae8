"""`ociregistry serve`: prepare the data folder and database, then run the workers."""

from __future__ import annotations

import argparse
import logging.config
import os
import sys
from typing import Any

from ociregistry import __version__
from ociregistry.cli.base import prepare, settings_of
from ociregistry.config import Settings
from ociregistry.ops import metrics
from ociregistry.ops.logs import log_config
from ociregistry.ops.shutdown import Supervisor


def start_message(settings: Settings) -> str:
    address = settings.public_address or f"{settings.host}:{settings.port}"
    if settings.host in ("0.0.0.0", "::") and not settings.public_address:
        address = f"localhost:{settings.port}"
    database = settings.database_url or str(settings.data_path / "registry.db")
    return (
        f"ociregistry {__version__} listening on http://{settings.host}:{settings.port} "
        f"with {settings.workers} workers\n"
        f"  data:     {settings.storage_path}\n"
        f"  database: {database}\n"
        "Push a first image:\n"
        f"  ociregistry registry create team-a --data-dir {settings.data_path}\n"
        f"  docker login {address} -u admin\n"
        f"  docker tag busybox {address}/team-a/busybox:1.0\n"
        f"  docker push {address}/team-a/busybox:1.0\n"
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_of(
        args, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
    )
    logging_config = log_config(settings.log_format, settings.log_level)
    logging.config.dictConfig(logging_config)
    # In JSON, every line is a JSON object: the start message too.
    say = print if settings.log_format == "text" else logging.getLogger("ociregistry").info
    settings.storage_path.mkdir(parents=True, exist_ok=True)
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
    config = uvicorn.Config(
        "ociregistry.app:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,  # ours: one line per request, see ops/access.py
        log_config=logging_config,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    try:
        Supervisor(
            config,
            sockets=[config.bind_socket()],
            delay_seconds=settings.shutdown_delay_seconds,
        ).run()
    finally:
        metrics.remove_multiprocess_dir(metrics_dir)
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("serve", parents=[common], help="run the registry")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 5000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: cores)")
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log every request (default on)",
    )
    parser.set_defaults(handler=serve)
