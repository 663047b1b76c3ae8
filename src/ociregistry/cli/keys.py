"""`ociregistry signing-cert`: the certificates of the token-signing keys (or, with `--jwks`,
the keys as a JWK Set), for other services that verify our tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ociregistry.auth.tokens import ISSUER, signing_certificates, signing_jwks
from ociregistry.cli.base import run, say, settings_of


def signing_cert(args: argparse.Namespace) -> int:
    # Only the server creates the key (once, at its first start), so that this command can
    # never race it into making a second one.
    if args.jwks:
        jwks = run(settings_of(args), signing_jwks)
        if not jwks["keys"]:
            return _no_key_yet()
        print(json.dumps(jwks, indent=2))
        return 0
    bundle = run(settings_of(args), signing_certificates)
    if not bundle:
        return _no_key_yet()
    say(args, bundle.rstrip("\n"), pem=bundle)
    return 0


def _no_key_yet() -> int:
    print(
        "ociregistry: no token-signing key yet: start the server once, then run this again",
        file=sys.stderr,
    )
    return 2


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    description = (
        "Print a PEM bundle of self-signed X.509 certificates, one per token-signing key (the "
        "current key first), for services that verify this registry's tokens. For CNCF "
        "Distribution, save it as the file of `auth.token.rootcertbundle`, with `issuer: "
        f"{ISSUER}`, `service:` the token_service setting (default `ociregistry`), and "
        "`realm:` this registry's `/auth/token` URL. With --jwks, print the keys as a JWK Set "
        "instead, each under the `kid` our tokens carry: Distribution 3 reads it from the file "
        "of `auth.token.jwks`; the server also serves it at `/auth/jwks.json`."
    )
    command = commands.add_parser(
        "signing-cert",
        parents=[common],
        help="print the token-signing certificates, for services that verify our tokens",
        description=description,
    )
    command.add_argument(
        "--jwks", action="store_true", help="print a JWK Set (JSON) instead of certificates"
    )
    command.set_defaults(handler=signing_cert)
