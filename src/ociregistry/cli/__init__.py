"""The `ociregistry` command: `serve`, administration commands matching the management API
(registries, images, tags, users, groups, tokens), and `signing-cert` for services that verify
the registry's tokens. The administration commands work on the same data folder and database
as the server, while it runs too; they print tables for people and JSON (`--json`) for
scripts."""

from __future__ import annotations

import argparse
import os
import sys

from sqlalchemy.exc import OperationalError

from ociregistry import __version__
from ociregistry.cli import accounts, configuration, keys, registries, retention, serve, storage
from ociregistry.cli.base import prepare
from ociregistry.config import ConfigError
from ociregistry.errors import RegistryError

__all__ = ["main", "prepare"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data folder (default ./data; OCIREGISTRY_DATA_DIR)")
    common.add_argument("--config", help="TOML config file; environment variables override it")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="ociregistry", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (serve, registries, retention, accounts, keys, configuration, storage):
        module.add_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected failures end in one line on stderr and exit status 2 (1 for
    an interruption), never in a traceback."""
    args = _parser().parse_args(argv)
    try:
        status = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except (ConfigError, RegistryError) as error:
        print(f"ociregistry: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        print(f"ociregistry: the database refused: {error.orig}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("ociregistry: interrupted", file=sys.stderr)
        return 130
