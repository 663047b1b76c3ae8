"""The read-only views everyone has: `/api/v1/shared/registries` (every public user
registry, whoever owns it) and `/api/v1/platform/images` (every platform image)."""

from __future__ import annotations

from sqlalchemy import and_
from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.api.common import (
    caller,
    encode_cursor,
    image_json,
    keyset_params,
    listing,
    public_host,
    registry_json,
    services,
)
from ociregistry.auth.policy import PULL, Principal, caller_role
from ociregistry.db.models import Registry
from ociregistry.errors import Unauthenticated


async def _browser(request: Request) -> Principal:
    """The caller; anonymous ones only when the policy lets them read public registries."""
    principal = await caller(request, required=False)
    if not services(request).policy.may_browse(principal):
        raise Unauthenticated("sign in to browse; anonymous access is switched off")
    return principal


async def shared_registries(request: Request) -> JSONResponse:
    principal = await _browser(request)
    page, q, sort = keyset_params(request, "registries")
    views, total, following = await services(request).listings.list_registries(
        scope="shared",
        where=services(request).policy.visible(principal),
        role=caller_role(principal),
        q=q,
        sort=sort,
        page=page,
        label=None,
        project_group=request.query_params.get("project_group") or None,
    )
    host = public_host(request)
    return listing(
        [registry_json(view, host, request, principal) for view in views],
        total,
        page,
        following=encode_cursor("registries", sort, q, following),
    )


async def platform_registries(request: Request) -> JSONResponse:
    principal = await _browser(request)
    page, q, sort = keyset_params(request, "registries")
    views, total, following = await services(request).listings.list_registries(
        scope="platform",
        where=services(request).policy.visible(principal),
        role=caller_role(principal),
        q=q,
        sort=sort,
        page=page,
    )
    host = public_host(request)
    return listing(
        [registry_json(view, host, request, principal) for view in views],
        total,
        page,
        following=encode_cursor("registries", sort, q, following),
    )


async def platform_images(request: Request) -> JSONResponse:
    principal = await _browser(request)
    page, q, sort = keyset_params(request, "images")
    pullable = and_(Registry.kind == "platform", services(request).policy.visible(principal, PULL))
    views, total, following = await services(request).listings.list_images(
        pullable, q=q, sort=sort, page=page, match_full_name=True
    )
    host = public_host(request)
    return listing(
        [image_json(view, host) for view in views],
        total,
        page,
        following=encode_cursor("images", sort, q, following),
    )
