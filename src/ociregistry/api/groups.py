"""`/api/v1/project-groups…`: groups and their members. Any signed-in user creates groups
(and owns them); owners manage members."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ociregistry.api.common import (
    caller,
    encode_cursor,
    json_body,
    keyset_params,
    listing,
    no_content,
    rfc3339,
    services,
    writer,
)
from ociregistry.auth.groups import GroupView
from ociregistry.auth.policy import Principal, is_platform_admin
from ociregistry.errors import NotFound, PermissionDenied


async def _group_id(request: Request, principal: Principal) -> int:
    """The group in the path, if the caller belongs to it (or is an admin)."""
    name = request.path_params["group"]
    parts = services(request)
    group_id = await parts.groups.group_id(name)
    if group_id is None or not await parts.policy.may_view_group(principal, group_id):
        raise NotFound(f"project group {name!r} does not exist", detail={"name": name})
    return group_id


def _group_json(view: GroupView) -> dict[str, Any]:
    return {
        "id": view.resource_id,
        "name": view.name,
        "description": view.description,
        "member_count": view.member_count,
        "role": view.role,
        "created_at": rfc3339(view.created_at),
    }


async def list_groups(request: Request) -> JSONResponse:
    principal = await caller(request)
    page, q, sort = keyset_params(request, "groups")
    views, total, following = await services(request).groups.page(
        user_id=principal.user_id,
        everything=is_platform_admin(principal),
        q=q,
        sort=sort,
        page=page,
    )
    return listing(
        [_group_json(view) for view in views],
        total,
        page,
        following=encode_cursor("groups", sort, q, following),
    )


async def create_group(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    body = await json_body(request, {"name": str, "description": str}, required=("name",))
    assert principal.username is not None
    await services(request).groups.create(
        body["name"], principal.username, body.get("description", "")
    )
    view = await services(request).groups.view(body["name"], user_id=principal.user_id)
    assert view is not None
    return JSONResponse(_group_json(view), status_code=201)


async def list_members(request: Request) -> JSONResponse:
    principal = await caller(request)
    await _group_id(request, principal)
    page, q, sort = keyset_params(request, "members")
    members, total, following = await services(request).groups.member_page(
        request.path_params["group"], q=q, sort=sort, page=page
    )
    return listing(
        [{"username": m.username, "role": m.role} for m in members],
        total,
        page,
        following=encode_cursor("members", sort, q, following),
    )


async def _require_owner(request: Request, principal: Principal) -> None:
    group_id = await _group_id(request, principal)
    if not await services(request).policy.may_manage_group(principal, group_id):
        raise PermissionDenied("only the group's owners manage its members")


async def set_member(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    await _require_owner(request, principal)
    body = await json_body(request, {"role": str}, required=("role",))
    group, username = request.path_params["group"], request.path_params["username"]
    await services(request).groups.set_member(group, username, body["role"])
    return JSONResponse({"username": username, "role": body["role"]})


async def remove_member(request: Request) -> Response:
    principal = writer(await caller(request))
    await _require_owner(request, principal)
    await services(request).groups.remove_member(
        request.path_params["group"], request.path_params["username"]
    )
    return no_content()
