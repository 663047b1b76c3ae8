"""`GET /v2/`: the API version check every client starts with."""

from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.errors import AuthenticationRequired
from ociregistry.v2.common import principal


async def api_version_check(request: Request) -> JSONResponse:
    """200 for any caller with credentials (a token, even an anonymous one); 401 with the
    token endpoint's address otherwise, which is how clients discover where to log in."""
    caller = await principal(request)
    if caller.anonymous and not caller.presented_credentials:
        raise AuthenticationRequired("authentication required", "")
    return JSONResponse({})
