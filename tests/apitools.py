"""Helpers shared by the tests of the management API (/api/v1)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

# Moved by the server's schedule (SPEC §3: registry pull counts are recomputed every few
# minutes), so no request under test may be blamed for them changing.
SCHEDULED_REGISTRY_FIELDS = ("pull_count", "pull_count_refreshed_at")


def without_scheduled_fields(registry: dict[str, Any]) -> dict[str, Any]:
    """A registry as the API shows it, minus the fields that change on a schedule: what a
    refused request must leave exactly as it was."""
    return {k: v for k, v in registry.items() if k not in SCHEDULED_REGISTRY_FIELDS}


def unique(prefix: str) -> str:
    """A name no other test (or earlier run on the shared server) uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have `status` (None for an empty body); the
    assertion names the request and shows the answer."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status}, got "
        f"{response.status_code} {response.text}"
    )
    return response.json() if response.content else None
