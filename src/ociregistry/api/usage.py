"""`/api/v1/platform/usage`: the platform's storage, for platform admins. Each figure is kept
apart: bytes the registries reference (each blob once, however many registries share it),
bytes garbage collection is yet to reclaim, and bytes in unfinished uploads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.api.common import caller, platform_admin, services
from ociregistry.catalog.usage import platform_usage as read_platform_usage


async def platform_usage(request: Request) -> JSONResponse:
    platform_admin(await caller(request), "see the platform's storage")
    registry = services(request)
    await registry.listings.usage.settle()
    async with registry.db.read(offload=True) as conn:
        usage = await conn.run_sync(read_platform_usage)
    upload_count, upload_bytes = await registry.uploads.usage()
    return JSONResponse(
        {
            "referenced_bytes": usage.referenced_bytes,
            "referenced_blobs": usage.referenced_blobs,
            "awaiting_gc_bytes": usage.awaiting_gc_bytes,
            "awaiting_gc_blobs": usage.awaiting_gc_blobs,
            "upload_bytes": upload_bytes,
            "upload_count": upload_count,
        }
    )
