"""`/api/v1/openapi.json`: the OpenAPI 3.1 document of the management API."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("ociregistry.api").joinpath("openapi.json").read_text()
    return json.loads(text)


async def document(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())
