"""Assertions shared by the tests, with messages that show the whole HTTP exchange.

A conformance failure is only useful when it says what was sent and what came back, so every
check here fails with `describe(response)` attached.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ociregistry.conformance.client import describe

#: The error codes of distribution-spec (v1.0 table plus the older ones the official suite knows).
SPEC_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "MANIFEST_UNVERIFIED",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "TAG_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)


def expect_status(response: httpx.Response, *expected: int) -> None:
    assert response.status_code in expected, (
        f"expected HTTP {' or '.join(map(str, expected))}, got {response.status_code}\n"
        f"{describe(response)}"
    )


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError) as error:
        raise AssertionError(f"body is not JSON ({error})\n{describe(response)}") from error


def error_codes(response: httpx.Response, *, required: bool) -> list[str]:
    """The `code`s of an error body, after checking its shape.

    The spec lets a 4xx body be in any format, but a JSON one MUST be `{"errors": [{"code",
    "message", "detail"}]}`. With `required` (strict runs), a JSON body must be there.
    """
    if not response.content:
        assert not required, f"error response has no body\n{describe(response)}"
        return []
    try:
        body = response.json()
    except ValueError:
        assert not required, f"error body is not JSON\n{describe(response)}"
        return []
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), (
        f'error body is JSON but not {{"errors": [...]}}\n{describe(response)}'
    )
    assert body["errors"], f"error body has an empty errors list\n{describe(response)}"
    codes = []
    for entry in body["errors"]:
        assert isinstance(entry, dict) and isinstance(entry.get("code"), str), (
            f"error entry without a string code: {entry!r}\n{describe(response)}"
        )
        if "message" in entry:
            assert isinstance(entry["message"], str), (
                f"message is not a string\n{describe(response)}"
            )
        codes.append(entry["code"])
    return codes


def expect_error(
    response: httpx.Response, status: int | tuple[int, ...], *codes: str, strict: bool
) -> list[str]:
    """The response is an error with that status and, if it has a JSON body, one of `codes`."""
    expect_status(response, *((status,) if isinstance(status, int) else status))
    found = error_codes(response, required=strict)
    if found:
        allowed = set(codes) or SPEC_ERROR_CODES
        assert found[0] in allowed, (
            f"error code {found[0]} is not one of {sorted(allowed)}\n{describe(response)}"
        )
    return found


def expect_digest_header(response: httpx.Response, digest: str, *, strict: bool) -> None:
    """Docker-Content-Digest SHOULD be sent; if it is, it MUST be the content's digest. After
    a redirect (a blob served from object storage) the registry's own answer carries it."""
    header = response.headers.get("Docker-Content-Digest")
    if header is None and response.history:
        header = response.history[0].headers.get("Docker-Content-Digest")
    if header is None:
        assert not strict, f"no Docker-Content-Digest header\n{describe(response)}"
        return
    assert header == digest, f"Docker-Content-Digest is {header}, expected {digest}\n" + describe(
        response
    )


def expect_location(response: httpx.Response) -> str:
    location = response.headers.get("Location", "")
    assert location, f"response has no Location header\n{describe(response)}"
    return location


def optional_feature(
    supported: bool, feature: str, response: httpx.Response, *, strict: bool
) -> None:
    """Skip (lenient run) or fail (strict run) when the registry lacks an optional feature."""
    if supported:
        return
    message = f"registry does not support {feature}"
    if strict:
        pytest.fail(f"{message} (strict run)\n{describe(response)}")
    pytest.skip(message)
