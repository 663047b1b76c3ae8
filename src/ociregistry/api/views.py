"""The read-only views everyone has: `/api/v1/shared/registries` (every public user
registry, whoever owns it) and `/api/v1/platform/images` (every platform image)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.api.common import (
    Unauthenticated,
    caller,
    image_json,
    list_params,
    listing,
    public_host,
    registry_json,
    services,
)


async def _may_browse(request: Request) -> None:
    principal = await caller(request, required=False)
    if principal.anonymous and not services(request).settings.anonymous_access:
        raise Unauthenticated("sign in to browse; anonymous access is switched off")


async def shared_registries(request: Request) -> JSONResponse:
    await _may_browse(request)
    page, q, sort = list_params(request)
    views, total = await services(request).console.list_registries(
        scope="shared",
        q=q,
        sort=sort,
        page=page,
        label=None,
        project_group=request.query_params.get("project_group") or None,
    )
    host = public_host(request)
    return listing([registry_json(view, host) for view in views], total, page)


async def platform_registries(request: Request) -> JSONResponse:
    await _may_browse(request)
    page, q, sort = list_params(request)
    views, total = await services(request).console.list_registries(
        scope="platform", q=q, sort=sort, page=page
    )
    host = public_host(request)
    return listing([registry_json(view, host) for view in views], total, page)


async def platform_images(request: Request) -> JSONResponse:
    await _may_browse(request)
    page, q, sort = list_params(request)
    console = services(request).console
    names = await console.registry_names(kind="platform")
    views, total = await console.list_images(names, q=q, sort=sort, page=page, match_full_name=True)
    host = public_host(request)
    return listing([image_json(view, host) for view in views], total, page)
