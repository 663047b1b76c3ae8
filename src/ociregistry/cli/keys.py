"""`ociregistry signing-cert`: the certificates of the token-signing keys, for other services."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ociregistry.auth.tokens import ISSUER, signing_certificates
from ociregistry.cli.base import run, say, settings_of


def signing_cert(args: argparse.Namespace) -> int:
    # Only the server creates the key (once, at its first start), so that this command can
    # never race it into making a second one.
    bundle = run(settings_of(args), signing_certificates)
    if not bundle:
        print(
            "ociregistry: no token-signing key yet: start the server once, then run this again",
            file=sys.stderr,
        )
        return 2
    say(args, bundle.rstrip("\n"), pem=bundle)
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    description = (
        "Print a PEM bundle of self-signed X.509 certificates, one per token-signing key (the "
        "current key first), for services that verify this registry's tokens. For CNCF "
        "Distribution, save it as the file of `auth.token.rootcertbundle`, with `issuer: "
        f"{ISSUER}`, `service:` the token_service setting (default `ociregistry`), and "
        "`realm:` this registry's `/auth/token` URL."
    )
    command = commands.add_parser(
        "signing-cert",
        parents=[common],
        help="print the token-signing certificates, for services that verify our tokens",
        description=description,
    )
    command.set_defaults(handler=signing_cert)
