"""`/v2/<name>/tags/list` and `/v2/_catalog`: paginated with `n` and `last`, and a `Link`
header pointing at the next page."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.auth.policy import Action
from ociregistry.errors import PaginationInvalid
from ociregistry.v2.common import Access, principal, requires, services

MAX_PAGE = 10_000  # a larger `n` gets a page of this size and a Link to the next


def _page_size(request: Request) -> int:
    value = request.query_params.get("n")
    if value is None or value == "":
        return MAX_PAGE
    if not (value.isascii() and value.isdigit()):  # str.isdigit() also takes '²' and '١'
        raise PaginationInvalid(
            f"n must be a non-negative integer, not {value[:50]!r}", detail={"n": value[:50]}
        )
    digits = value.lstrip("0")  # never int() a huge string; leading zeros do not count
    return MAX_PAGE if len(digits) > len(str(MAX_PAGE)) else min(int(digits or "0"), MAX_PAGE)


def _paginated(
    request: Request, key: str, items: list[str], limit: int, extra: dict[str, str]
) -> JSONResponse:
    headers = {}
    if len(items) > limit:
        items = items[:limit]
        query = urlencode({"n": limit, "last": items[-1]})
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return JSONResponse({**extra, key: items}, headers=headers)


@requires(Action.PULL)
async def list_tags(request: Request, access: Access) -> JSONResponse:
    repo = access.repo
    parts = services(request)
    limit = _page_size(request)
    last = request.query_params.get("last") or None
    await parts.images.require_image(repo)
    tags = [] if limit == 0 else await parts.images.tags(repo, limit=limit + 1, last=last)
    return _paginated(request, "tags", tags, limit, {"name": repo.full})


async def list_repositories(request: Request) -> JSONResponse:
    parts = services(request)
    limit = _page_size(request)
    last = request.query_params.get("last") or None
    caller = await principal(request)
    parts.policy.require_catalog(caller)
    names: list[str] = []
    if limit and await parts.policy.may_list_catalog(caller):
        names = await parts.images.repositories(
            limit=limit + 1, last=last, registries=parts.policy.visible(caller, Action.PULL)
        )
    return _paginated(request, "repositories", names, limit, {})
