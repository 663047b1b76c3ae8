"""What every /api/v1 handler shares: the caller, the error envelope, request bodies, list
parameters and the JSON shapes of SPEC §5."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ociregistry.auth.policy import (
    Principal,
    caller_role,
    is_platform_admin,
    may_change,
    ordered,
)
from ociregistry.authapi.credentials import authenticate
from ociregistry.catalog.listings import (
    MAX_PAGE_SIZE,
    ImageView,
    Key,
    Page,
    RegistryView,
    TagView,
    Total,
)
from ociregistry.errors import (
    Denied,
    EndpointUnknown,
    InvalidArgument,
    MethodNotAllowed,
    NameInvalid,
    NameUnknown,
    NotFound,
    PermissionDenied,
    RegistryError,
    SizeInvalid,
    TagInvalid,
    TooLarge,
    TooManyAttempts,
    Unauthenticated,
    Unauthorized,
    Unsupported,
)
from ociregistry.services import Services

MAX_BODY_BYTES = 256 * 1024
MAX_BATCH_ITEMS = 100
MAX_QUERY_LENGTH = 255
# A page by number starts within the first this many items of its list: a deeper page costs
# the rows before it. Further on, the catalog lists hand out cursors (GitHub's search API
# likewise serves the first 1,000 results by page number).
MAX_PAGED_ITEMS = 1000
MAX_CURSOR_LENGTH = 2048

# The distribution errors the management API shares with /v2, under its own codes (SPEC §5);
# the most specific class of an error's ancestry decides.
_API_CODES: dict[type[RegistryError], tuple[str, int]] = {
    NameUnknown: ("NOT_FOUND", 404),
    NameInvalid: ("INVALID_ARGUMENT", 400),
    TagInvalid: ("INVALID_ARGUMENT", 400),
    Unauthorized: ("UNAUTHENTICATED", 401),
    Denied: ("PERMISSION_DENIED", 403),
    SizeInvalid: ("INVALID_ARGUMENT", 400),
    TooLarge: ("INVALID_ARGUMENT", 413),
    Unsupported: ("INVALID_ARGUMENT", 400),
    TooManyAttempts: ("TOO_MANY_REQUESTS", 429),
    EndpointUnknown: ("NOT_FOUND", 404),
    MethodNotAllowed: ("METHOD_NOT_ALLOWED", 405),
}


def services(request: Request) -> Services:
    return request.app.state.services


def api_error(error: RegistryError) -> JSONResponse:
    """An error in the management API's envelope, `{"error": {"code", "message", "detail"}}`."""
    code, status = next(
        (_API_CODES[kind] for kind in type(error).__mro__ if kind in _API_CODES),
        (error.code, error.status),
    )
    body: dict[str, Any] = {"code": code, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def caller(request: Request, *, required: bool = True) -> Principal:
    principal = await authenticate(request)
    if required and principal.anonymous:
        raise Unauthenticated(
            "sign in: Basic credentials, a token from /auth/token, or a personal access token"
        )
    return principal


_VERBS = {"pull": "pull from", "push": "push to", "delete": "delete in", "admin": "administer"}


async def require_right(request: Request, principal: Principal, registry: str, right: str) -> None:
    """NOT_FOUND when the caller may not see the registry, PERMISSION_DENIED when they see it
    but may not do this (`right` is one of the policy's management rights)."""
    rights = await services(request).policy.registry_rights(principal, registry)
    if not rights:
        raise NotFound(f"registry {registry!r} does not exist", detail={"name": registry})
    if right not in rights:
        raise PermissionDenied(
            f"{principal.username or 'anonymous'} may not {_VERBS.get(right, right)} "
            f"registry {registry!r}",
            detail={"name": registry},
        )


def writer(principal: Principal) -> Principal:
    """A caller that may change things: not a read-only personal access token."""
    if not may_change(principal):
        raise PermissionDenied("a read-only access token cannot change anything")
    return principal


def platform_admin(principal: Principal, action: str) -> Principal:
    """PERMISSION_DENIED unless the caller is a platform admin; `action` says what for."""
    if not is_platform_admin(principal):
        raise PermissionDenied(f"only platform admins {action}")
    return principal


async def registry_view(request: Request, principal: Principal, name: str) -> dict[str, Any]:
    """One registry as JSON, with the caller's rights on it."""
    view = await services(request).listings.get_registry(name, role=caller_role(principal))
    return registry_json(view, public_host(request), request, principal)


async def json_body(
    request: Request, fields: dict[str, type | tuple[type, ...]], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The request's JSON object, with only `fields`, each of its type; 400 naming the field
    otherwise (unknown fields included: a typo must not pass silently)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InvalidArgument(f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidArgument(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgument(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    for name, value in body.items():
        if name not in fields:
            raise InvalidArgument(
                f"unknown field {str(name)[:50]!r}; known fields: {', '.join(sorted(fields))}",
                detail={"field": str(name)[:50]},
            )
        expected = fields[name]
        wrong_bool = isinstance(value, bool) and bool not in (
            expected if isinstance(expected, tuple) else (expected,)
        )
        if not isinstance(value, expected) or wrong_bool:
            names = expected if isinstance(expected, tuple) else (expected,)
            kinds = " or ".join(_json_type(kind) for kind in names)
            raise InvalidArgument(f"field {name!r} must be {kinds}", detail={"field": name})
    for name in required:
        if name not in body:
            raise InvalidArgument(f"field {name!r} is required", detail={"field": name})
    return body


def _json_type(kind: type) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        dict: "an object",
        list: "an array",
        type(None): "null",
    }.get(kind, kind.__name__)


def string_list(body: dict[str, Any], field: str) -> list[str]:
    """A batch's names: 1 to MAX_BATCH_ITEMS distinct strings."""
    values = body.get(field)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidArgument(
            f"field {field!r} must be an array of strings", detail={"field": field}
        )
    if not 1 <= len(values) <= MAX_BATCH_ITEMS:
        raise InvalidArgument(
            f"field {field!r} must hold 1 to {MAX_BATCH_ITEMS} items, not {len(values)}",
            detail={"field": field},
        )
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise InvalidArgument(
            f"field {field!r} repeats {duplicates[0]!r}",
            detail={"field": field, "duplicates": duplicates[:10]},
        )
    return values


def _number(params: Any, name: str, default: int, high: int | None) -> int:
    value = params.get(name)
    if value is None:
        return default
    # ASCII digits only ('²'.isdigit() is true), and few enough for the database.
    digits = value.isascii() and value.isdigit() and len(value) <= 10
    if not digits or not 1 <= int(value) <= (high or 10**9):
        limit = f"1 to {high}" if high else "at least 1"
        raise InvalidArgument(f"{name} must be an integer, {limit}", detail={"field": name})
    return int(value)


def list_params(request: Request) -> tuple[Page, str | None, str | None]:
    """`page`, `page_size` (1-100), `q` and `sort` of a list request."""
    params = request.query_params
    q = params.get("q")
    if q is not None and len(q) > MAX_QUERY_LENGTH:
        raise InvalidArgument("q is too long", detail={"field": "q"})
    page = Page(_number(params, "page", 1, None), _number(params, "page_size", 20, MAX_PAGE_SIZE))
    return page, q or None, params.get("sort")


def keyset_params(request: Request, kind: str) -> tuple[Page, str | None, str | None]:
    """`list_params` of a list that pages by number only within its first MAX_PAGED_ITEMS
    items and by `cursor` at any depth (`kind` names the list: registries, images, tags,
    users, groups, members, tokens, audit): the `next` of the answer before, which carries
    the list's sort and search (a request may repeat them, not change them)."""
    page, q, sort = list_params(request)
    text = request.query_params.get("cursor")
    if text is None:
        if page.offset >= MAX_PAGED_ITEMS:
            deepest = (MAX_PAGED_ITEMS - 1) // page.size + 1
            raise InvalidArgument(
                f"page {page.number} of {page.size} items starts past item {MAX_PAGED_ITEMS}, "
                f"as deep as page numbers reach (page {deepest} at this size); follow each "
                "answer's `next` cursor (?cursor=) to read further",
                detail={"field": "page", "max_page": deepest},
            )
        return page, q, sort
    if "page" in request.query_params:
        raise InvalidArgument(
            "give page or cursor, not both (a cursor says where its page starts)",
            detail={"field": "cursor"},
        )
    cursor = _decode_cursor(text)
    if cursor.get("l") != kind:
        raise InvalidArgument(
            f"cursor is not one of this list's; use the `next` of a {kind} list",
            detail={"field": "cursor"},
        )
    for name, given in (("sort", sort), ("q", q)):
        if given is not None and given != cursor.get(name[0]):
            raise InvalidArgument(
                f"{name} differs from the cursor's; a cursor continues its list as it was "
                f"asked for (start again without the cursor to change {name})",
                detail={"field": name},
            )
    return Page(1, page.size, after=tuple(cursor["k"])), cursor.get("q"), cursor.get("s")


def _decode_cursor(text: str) -> dict[str, Any]:
    try:
        if len(text) > MAX_CURSOR_LENGTH:
            raise ValueError(text)
        cursor = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(cursor, dict) or not isinstance(cursor.get("k"), list):
            raise ValueError(text)
        if not all(isinstance(cursor.get(name), str | None) for name in ("l", "s", "q")):
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            "cursor is not valid; use the `next` of a list answer as it is",
            detail={"field": "cursor"},
        ) from None
    return cursor


def encode_cursor(kind: str, sort: str | None, q: str | None, key: Key | None) -> str | None:
    """The opaque cursor of the page after `key` (None: no page follows)."""
    if key is None:
        return None
    document = json.dumps({"l": kind, "s": sort, "q": q, "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def listing(
    items: list[dict[str, Any]],
    total: int | Total,
    page: Page,
    *,
    following: str | bool | None = False,
) -> JSONResponse:
    """A page of a list (SPEC §5). A search that stopped counting says so: `total_exact`
    false, and `total` is then a lower bound (see catalog/listings.py). A list paged by
    cursor (`following` not False) carries `next`, the cursor of the page after this one or null;
    a page found by cursor has no number."""
    body: dict[str, Any] = {"items": items, "total": total}
    if page.after is None:
        body["page"] = page.number
    body["page_size"] = page.size
    if isinstance(total, Total):
        body["total"] = total.count
        if not total.exact:
            body["total_exact"] = False
    if following is not False:
        body["next"] = following
    return JSONResponse(body)


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public_host(request: Request) -> str:
    """`{host}` of SPEC §5: the configured public address, else the request's Host."""
    return services(request).settings.public_address or request.headers.get("host", "localhost")


def registry_json(
    view: RegistryView, host: str, request: Request, principal: Principal
) -> dict[str, Any]:
    """SPEC §5's registry, and `rights`: what the caller may do with it, by the policy (the
    console shows only what these allow). `view.caller_role` must be the caller's role."""
    rights = services(request).policy.rights_of(
        principal, view.kind, view.public, view.status, view.caller_role
    )
    return {
        "id": view.resource_id,
        "name": view.name,
        "kind": view.kind,
        "remark": view.remark,
        "public": view.public,
        "status": view.status,
        "project_group": view.project_group,
        "labels": view.labels or {},
        "owner": view.owner,
        "image_count": view.image_count,
        "pull_count": view.pull_count,
        "size_bytes": view.size_bytes,
        "unique_bytes": view.unique_bytes,
        "quota_bytes": view.quota_bytes,
        "immutable_tags": view.immutable_tags or [],
        "pull_count_refreshed_at": rfc3339(view.pull_count_refreshed_at),
        "address": f"{host}/{view.name}",
        "created_at": rfc3339(view.created_at),
        "updated_at": rfc3339(view.updated_at),
        "rights": ordered(rights),
    }


def image_json(view: ImageView, host: str) -> dict[str, Any]:
    full_name = f"{view.registry}/{view.name}"
    return {
        "name": view.name,
        "registry": view.registry,
        "full_name": full_name,
        "latest_tag": view.latest_tag,
        "tag_count": view.tag_count,
        "pull_count": view.pull_count,
        "pull_command": f"docker pull {host}/{full_name}:{view.latest_tag}",
        "size_bytes": view.size_bytes,
        "created_at": rfc3339(view.created_at),
        "updated_at": rfc3339(view.updated_at),
    }


def tag_json(view: TagView, host: str, registry: str, image: str) -> dict[str, Any]:
    return {
        "name": view.name,
        "digest": view.digest,
        "media_type": view.media_type,
        "size_bytes": view.size_bytes,
        "pull_count": view.pull_count,
        "pull_command": f"docker pull {host}/{registry}/{image}:{view.name}",
        "created_at": rfc3339(view.created_at),
        "platforms": view.platforms,
    }


def batch_results(results: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"results": results})


def item_error(error: RegistryError) -> dict[str, Any]:
    code, _ = _API_CODES.get(error.code, (error.code, error.status))
    entry: dict[str, Any] = {"code": code, "message": error.message}
    if error.detail is not None:
        entry["detail"] = error.detail
    return entry


def no_content() -> Response:
    return Response(status_code=204)
