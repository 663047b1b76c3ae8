"""`/api/v1/registries…`: the caller's user registries, and creating, changing and deleting
registries, one at a time or in batches (SPEC §4, §5)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ociregistry.api.common import (
    batch_results,
    caller,
    encode_cursor,
    item_error,
    json_body,
    keyset_params,
    listing,
    no_content,
    platform_admin,
    public_host,
    registry_json,
    registry_view,
    require_right,
    services,
    string_list,
    writer,
)
from ociregistry.auth.policy import ADMIN, VIEW, Principal, caller_role
from ociregistry.catalog.immutable import check_patterns
from ociregistry.catalog.usage import check_quota
from ociregistry.errors import (
    InvalidArgument,
    NameInvalid,
    NotFound,
    PermissionDenied,
    RegistryDeleting,
    RegistryError,
)
from ociregistry.names import check_labels, check_registry_name, check_remark
from ociregistry.ops.audit import note


def _label_filter(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    key, colon, label_value = value.partition(":")
    if not colon or not key:
        raise InvalidArgument("label must be key:value", detail={"field": "label"})
    return key, label_value


async def list_registries(request: Request) -> JSONResponse:
    principal = await caller(request)
    page, q, sort = keyset_params(request, "registries")
    policy = services(request).policy
    views, total, following = await services(request).listings.list_registries(
        scope="user",
        where=policy.member_of(principal),
        role=caller_role(principal),
        q=q,
        project_group=request.query_params.get("project_group") or None,
        label=_label_filter(request.query_params.get("label")),
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


async def create_registry(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    body = await json_body(
        request,
        {
            "name": str,
            "remark": str,
            "public": bool,
            "project_group": str,
            "labels": dict,
            "kind": str,
        },
        required=("name",),
    )
    try:
        check_registry_name(body["name"])
    except NameInvalid as error:  # name the field, as every other 400 here does
        raise InvalidArgument(error.message, detail={"field": "name"}) from None
    parts = services(request)
    kind = body.get("kind", "user")
    if kind not in ("user", "platform"):
        raise InvalidArgument("kind must be user or platform", detail={"field": "kind"})
    group = body.get("project_group")
    if kind == "platform":
        if not parts.policy.may_create_platform_registry(principal):
            raise PermissionDenied("only platform admins create platform registries")
        if group is not None:
            raise InvalidArgument(
                "platform registries belong to no project group", detail={"field": "project_group"}
            )
    elif group is not None:
        group_id = await parts.groups.group_id(group)
        if group_id is None:
            raise NotFound(
                f"project group {group!r} does not exist", detail={"field": "project_group"}
            )
        if not await parts.policy.may_create_in_group(principal, group_id):
            raise PermissionDenied(
                f"creating registries in {group!r} takes the owner or developer role there"
            )
    note(request, registry=body["name"])
    created = await parts.registries.create(
        body["name"],
        public=body.get("public", False),
        kind=kind,
        remark=check_remark(body.get("remark", "")),
        owner=principal.username,
        group=group,
        labels=check_labels(body.get("labels", {})),
    )
    return JSONResponse(await registry_view(request, principal, created.name), status_code=201)


async def get_registry(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    name = request.path_params["registry"]
    await require_right(request, principal, name, VIEW)
    return JSONResponse(await registry_view(request, principal, name))


async def update_registry(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    name = request.path_params["registry"]
    await require_right(request, principal, name, ADMIN)
    body = await json_body(
        request, {"public": bool, "remark": str, "quota_bytes": int, "immutable_tags": list}
    )
    if "remark" in body:
        check_remark(body["remark"])
    if "quota_bytes" in body:
        platform_admin(principal, "set storage quotas")
        body["quota_bytes"] = check_quota(body["quota_bytes"])
    if "immutable_tags" in body:
        body["immutable_tags"] = check_patterns(body["immutable_tags"])
    note(request, detail=body)  # what changed, for the audit log
    await services(request).listings.update_registry(name, **body)
    return JSONResponse(await registry_view(request, principal, name))


async def replace_labels(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    name = request.path_params["registry"]
    await require_right(request, principal, name, ADMIN)
    body = await json_body(request, {"labels": dict}, required=("labels",))
    await services(request).listings.update_registry(name, labels=check_labels(body["labels"]))
    return JSONResponse(await registry_view(request, principal, name))


def _delete_images_flag(value: Any) -> bool:
    if value in (None, "", "false", False):
        return False
    if value in ("true", True):
        return True
    raise InvalidArgument("delete_images must be true or false", detail={"field": "delete_images"})


async def _delete_one(
    request: Request, principal: Principal, name: str, delete_images: bool
) -> bool:
    """Delete a registry; True when it is gone, False while its images are being deleted."""
    parts = services(request)
    rights = await parts.policy.registry_rights(principal, name)
    if not rights:
        raise NotFound(f"registry {name!r} does not exist", detail={"name": name})
    if ADMIN not in rights:
        if (await parts.listings.get_registry(name)).status == "deleting":
            raise RegistryDeleting(
                f"registry {name!r} is already being deleted", detail={"name": name}
            )
        raise PermissionDenied(
            f"{principal.username or 'anonymous'} may not administer registry {name!r}",
            detail={"name": name},
        )
    return await parts.registries.delete(name, delete_images=delete_images)


async def delete_registry(request: Request) -> Response:
    principal = writer(await caller(request))
    name = request.path_params["registry"]
    delete_images = _delete_images_flag(request.query_params.get("delete_images"))
    if await _delete_one(request, principal, name, delete_images):
        return no_content()
    try:
        return JSONResponse(await registry_view(request, principal, name), status_code=202)
    except NotFound:  # its images went meanwhile
        return no_content()


async def batch_delete_registries(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    body = await json_body(request, {"names": list, "delete_images": bool}, required=("names",))
    names = string_list(body, "names")
    delete_images = body.get("delete_images", False)
    results: list[dict[str, Any]] = []
    for name in names:  # each item is authorised and carried out on its own
        try:
            gone = await _delete_one(request, principal, name, delete_images)
        except RegistryError as error:
            results.append({"name": name, "ok": False, "error": item_error(error)})
        else:
            results.append({"name": name, "ok": True, "status": "deleted" if gone else "deleting"})
    return batch_results(results)
