"""Helpers shared by the tests of the management API (/api/v1)."""

from __future__ import annotations

from typing import Any

# Moved by the server's schedule (SPEC §3: registry pull counts are recomputed every few
# minutes), so no request under test may be blamed for them changing.
SCHEDULED_REGISTRY_FIELDS = ("pull_count", "pull_count_refreshed_at")


def without_scheduled_fields(registry: dict[str, Any]) -> dict[str, Any]:
    """A registry as the API shows it, minus the fields that change on a schedule: what a
    refused request must leave exactly as it was."""
    return {k: v for k, v in registry.items() if k not in SCHEDULED_REGISTRY_FIELDS}
