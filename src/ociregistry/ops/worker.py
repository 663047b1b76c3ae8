"""One worker process of `ociregistry serve`: a fresh interpreter started by the supervisor
(`ops/supervisor.py`) that serves the registry app with uvicorn (uvloop, httptools) on the
listening socket it inherited. The settings come from the environment `serve` exported. With
other workers beside it, it takes its share of the connections (`ops/accept.py`)."""

from __future__ import annotations

import argparse
import socket

import uvicorn

from ociregistry.config import Settings
from ociregistry.db import write_lock
from ociregistry.ops.accept import SharingServer
from ociregistry.ops.allocator import keep_upload_buffers
from ociregistry.ops.connections import ConnectionTable
from ociregistry.ops.logs import log_config

APP_FACTORY = "ociregistry.app:create_app_from_environment"


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """How every worker runs the app; `serve` binds the listening socket with it too."""
    return uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,  # ours: one line per request, see ops/access.py
        log_config=log_config(settings.log_format, settings.log_level),
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ociregistry serve (worker)")
    parser.add_argument("--listener-fd", type=int, required=True)
    parser.add_argument("--connections-fd", type=int, help="the workers' shared table")
    parser.add_argument("--slots", type=int, default=0, help="the table's size")
    parser.add_argument("--slot", type=int, default=0, help="this worker's slot in it")
    parser.add_argument("--write-lock-fd", type=int, help="the workers' shared eventfd")
    args = parser.parse_args(argv)
    keep_upload_buffers()  # before the first upload's buffers are allocated
    if args.write_lock_fd is not None:  # before the app makes its database
        write_lock.share(write_lock.WriteLockSignal(args.write_lock_fd))
    config = uvicorn_config(Settings.load())
    listener = socket.socket(fileno=args.listener_fd)
    if args.connections_fd is None:  # the only worker: nobody to share connections with
        uvicorn.Server(config).run(sockets=[listener])
        return
    table = ConnectionTable(args.connections_fd, args.slots)
    SharingServer(config, listener, table, args.slot).run()


if __name__ == "__main__":
    main()
