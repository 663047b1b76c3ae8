"""`/api/v1/audit-log`: the audit log, newest first, paged and filtered. Platform admins see
every event; a registry's owners see the events of their registries (the policy's
`administered`); anyone else an empty list."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.api.common import (
    caller,
    encode_cursor,
    keyset_params,
    listing,
    rfc3339,
    services,
)
from ociregistry.auth.policy import is_platform_admin
from ociregistry.catalog.audit import AuditRecord
from ociregistry.errors import InvalidArgument

FILTERS = ("actor", "action", "registry", "outcome")
MAX_FILTER_LENGTH = 255


def event_json(event: AuditRecord) -> dict:
    return {
        "id": event.id,
        "at": rfc3339(event.at),
        "actor": event.actor,
        "client": event.client,
        "request_id": event.request_id,
        "action": event.action,
        "method": event.method,
        "target": event.target,
        "registry": event.registry,
        "status": event.status,
        "outcome": event.outcome,
        "detail": event.detail,
    }


async def list_events(request: Request) -> JSONResponse:
    principal = await caller(request)
    page, q, sort = keyset_params(request, "audit")
    filters = {}
    for name in FILTERS:
        value = request.query_params.get(name)
        if value:
            if len(value) > MAX_FILTER_LENGTH:
                raise InvalidArgument(f"{name} is too long", detail={"field": name})
            filters[name] = value
    parts = services(request)
    registries = None  # platform admins see every event, others their registries'
    if not is_platform_admin(principal):
        registries = parts.policy.administered(principal)
    events, total, following = await parts.audit.page(
        registries=registries, filters=filters, q=q, sort=sort, page=page
    )
    return listing(
        [event_json(event) for event in events],
        total,
        page,
        following=encode_cursor("audit", sort, q, following),
    )
