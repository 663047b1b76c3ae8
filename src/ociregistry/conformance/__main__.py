"""`python -m ociregistry.conformance`: run the suite against a registry URL.

Options become the OCI_* environment variables the suite reads, then pytest runs this folder
in-process. The project's own pytest configuration is ignored (`-c /dev/null`) so the suite
behaves the same from a checkout, an installed wheel or any working directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from ociregistry.conformance.settings import CATEGORIES

SUITE_DIR = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ociregistry.conformance",
        description="Run the OCI distribution-spec conformance suite against a registry.",
        epilog="Arguments after `--` go to pytest unchanged.",
    )
    env = os.environ.get
    parser.add_argument("--url", default=env("OCI_ROOT_URL"), help="registry base URL")
    parser.add_argument("--namespace", default=env("OCI_NAMESPACE"), help="repository to use")
    parser.add_argument(
        "--crossmount-namespace",
        default=env("OCI_CROSSMOUNT_NAMESPACE"),
        help="second repository, for cross-repository mounts",
    )
    parser.add_argument("--username", default=env("OCI_USERNAME"))
    parser.add_argument("--password", default=env("OCI_PASSWORD"))
    parser.add_argument("--debug", action="store_true", help="log all HTTP traffic (OCI_DEBUG)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="require the optional features too (JSON errors, Range, filters, deletion, ...)",
    )
    parser.add_argument(
        "--category",
        action="append",
        choices=sorted(CATEGORIES),
        help="run only this category (repeatable); default: all",
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("-m", dest="markexpr", help="pytest -m expression")
    parser.add_argument("--junitxml", help="write a JUnit XML report here")
    parser.add_argument("-q", "--quiet", action="store_true", help="less pytest output")
    parser.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    return parser


def configure_environment(args: argparse.Namespace) -> None:
    """Export the options as the OCI_* variables the suite (and its fixtures) read."""
    values = {
        "OCI_ROOT_URL": args.url,
        "OCI_NAMESPACE": args.namespace,
        "OCI_CROSSMOUNT_NAMESPACE": args.crossmount_namespace,
        "OCI_USERNAME": args.username,
        "OCI_PASSWORD": args.password,
    }
    for name, value in values.items():
        if value:
            os.environ[name] = value
    if args.debug:
        os.environ["OCI_DEBUG"] = "1"
    if args.strict:
        os.environ["OCI_STRICT"] = "1"
    if args.category:
        for marker, variable in CATEGORIES.items():
            os.environ[variable] = "1" if marker in args.category else "0"


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    argv = [
        str(SUITE_DIR),
        "-c",
        os.devnull,
        "--rootdir",
        str(SUITE_DIR),
        "-p",
        "no:cacheprovider",
        "-rfEs",
    ]
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.markexpr:
        argv += ["-m", args.markexpr]
    if args.junitxml:
        argv += ["--junitxml", args.junitxml]
    argv.append("-q" if args.quiet else "-v")
    return argv + list(args.pytest_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url or not args.namespace:
        parser.error("--url and --namespace are required (or OCI_ROOT_URL and OCI_NAMESPACE)")
    configure_environment(args)
    return int(pytest.main(pytest_arguments(args)))


if __name__ == "__main__":
    sys.exit(main())
