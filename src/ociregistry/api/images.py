"""`/api/v1/registries/{reg}/images…`: images and tags of any registry the caller may view,
with pull counts and pull commands; deleting them one at a time or in batches."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ociregistry.api.common import (
    batch_results,
    caller,
    encode_cursor,
    image_json,
    item_error,
    json_body,
    keyset_params,
    listing,
    no_content,
    public_host,
    require_right,
    services,
    string_list,
    tag_json,
    writer,
)
from ociregistry.auth.policy import DELETE, VIEW
from ociregistry.errors import RegistryError


async def list_images(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, VIEW)
    page, q, sort = keyset_params(request, "images")
    views, total, following = await services(request).listings.list_images(
        registry, q=q, sort=sort, page=page
    )
    host = public_host(request)
    return listing(
        [image_json(view, host) for view in views],
        total,
        page,
        following=encode_cursor("images", sort, q, following),
    )


async def get_image(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    registry, image = request.path_params["registry"], request.path_params["image"]
    await require_right(request, principal, registry, VIEW)
    view = await services(request).listings.get_image(registry, image)
    return JSONResponse(image_json(view, public_host(request)))


async def delete_image(request: Request) -> Response:
    principal = writer(await caller(request))
    registry, image = request.path_params["registry"], request.path_params["image"]
    await require_right(request, principal, registry, DELETE)
    immutable_too = await services(request).policy.may_delete_immutable(principal, registry)
    await services(request).listings.delete_image(registry, image, immutable_too=immutable_too)
    return no_content()


async def batch_delete_images(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    registry = request.path_params["registry"]
    body = await json_body(request, {"images": list}, required=("images",))
    results: list[dict[str, Any]] = []
    for image in string_list(body, "images"):
        try:
            await require_right(request, principal, registry, DELETE)
            immutable_too = await services(request).policy.may_delete_immutable(principal, registry)
            await services(request).listings.delete_image(
                registry, image, immutable_too=immutable_too
            )
        except RegistryError as error:
            results.append({"name": image, "ok": False, "error": item_error(error)})
        else:
            results.append({"name": image, "ok": True})
    return batch_results(results)


async def list_tags(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    registry, image = request.path_params["registry"], request.path_params["image"]
    await require_right(request, principal, registry, VIEW)
    page, q, sort = keyset_params(request, "tags")
    views, total, following = await services(request).listings.list_tags(
        registry, image, q=q, sort=sort, page=page
    )
    host = public_host(request)
    return listing(
        [tag_json(view, host, registry, image) for view in views],
        total,
        page,
        following=encode_cursor("tags", sort, q, following),
    )


async def delete_tag(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    registry, image = request.path_params["registry"], request.path_params["image"]
    await require_right(request, principal, registry, DELETE)
    immutable_too = await services(request).policy.may_delete_immutable(principal, registry)
    last = await services(request).listings.delete_tag(
        registry, image, request.path_params["tag"], immutable_too=immutable_too
    )
    return JSONResponse({"name": request.path_params["tag"], "image_deleted": last})


async def batch_delete_tags(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    registry, image = request.path_params["registry"], request.path_params["image"]
    body = await json_body(request, {"tags": list}, required=("tags",))
    results: list[dict[str, Any]] = []
    for tag in string_list(body, "tags"):
        try:
            await require_right(request, principal, registry, DELETE)
            immutable_too = await services(request).policy.may_delete_immutable(principal, registry)
            last = await services(request).listings.delete_tag(
                registry, image, tag, immutable_too=immutable_too
            )
        except RegistryError as error:
            results.append({"name": tag, "ok": False, "error": item_error(error)})
        else:
            results.append({"name": tag, "ok": True, "image_deleted": last})
    return batch_results(results)
