"""Settings of a conformance run, read from the environment variables of the official suite.

The official OCI conformance binary is configured only through `OCI_*` variables; reading the
same ones lets one CI job (or one shell) drive either suite against the same registry.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

#: pytest marker of each workflow category, and the variable that enables it in the official suite.
CATEGORIES: dict[str, str] = {
    "pull": "OCI_TEST_PULL",
    "push": "OCI_TEST_PUSH",
    "content_discovery": "OCI_TEST_CONTENT_DISCOVERY",
    "content_management": "OCI_TEST_CONTENT_MANAGEMENT",
}

_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off", ""}


def parse_bool(value: str | None) -> bool | None:
    """Parse a flag the way Go's strconv.ParseBool does (plus yes/no); None when unset or junk."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about the registry under test."""

    root_url: str
    namespace: str
    crossmount_namespace: str
    username: str | None = None
    password: str | None = None
    auth_scope: str | None = None
    debug: bool = False
    #: Require the optional parts of the spec too (JSON error bodies, Range, filters, deletes...).
    strict: bool = False
    #: OCI_AUTOMATIC_CROSSMOUNT: None = do not test mounting without `from`.
    automatic_crossmount: bool | None = None
    categories: frozenset[str] = frozenset(CATEGORIES)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read OCI_* variables. OCI_ROOT_URL and OCI_NAMESPACE are required (ValueError)."""
        env = os.environ if env is None else env
        root_url = env.get("OCI_ROOT_URL", "").strip().rstrip("/")
        namespace = env.get("OCI_NAMESPACE", "").strip().strip("/")
        missing = [
            name
            for name, value in (("OCI_ROOT_URL", root_url), ("OCI_NAMESPACE", namespace))
            if not value
        ]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} not set: point the suite at a registry, e.g. "
                "OCI_ROOT_URL=http://127.0.0.1:5000 OCI_NAMESPACE=conformance/repo"
            )
        # Like the official suite, a missing cross-mount namespace gets a unique name; ours is a
        # sibling of the namespace so that it lives in the same registry (tenant) of ours.
        crossmount = env.get("OCI_CROSSMOUNT_NAMESPACE", "").strip().strip("/") or (
            f"{namespace}-crossmount-{secrets.token_hex(4)}"
        )
        return cls(
            root_url=root_url,
            namespace=namespace,
            crossmount_namespace=crossmount,
            username=env.get("OCI_USERNAME") or None,
            password=env.get("OCI_PASSWORD") or None,
            auth_scope=env.get("OCI_AUTH_SCOPE") or None,
            debug=bool(parse_bool(env.get("OCI_DEBUG"))),
            strict=bool(parse_bool(env.get("OCI_STRICT"))),
            automatic_crossmount=parse_bool(env.get("OCI_AUTOMATIC_CROSSMOUNT")),
            categories=enabled_categories(env),
        )


def enabled_categories(env: Mapping[str, str]) -> frozenset[str]:
    """All categories when no OCI_TEST_* variable is set; otherwise only those set to true."""
    flags = {marker: parse_bool(env.get(variable)) for marker, variable in CATEGORIES.items()}
    if all(flag is None for flag in flags.values()):
        return frozenset(CATEGORIES)
    return frozenset(marker for marker, flag in flags.items() if flag)
