"""What every /v2 handler needs: its services, the repository name, the caller, errors."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ociregistry.auth.policy import AuthenticationRequired, Principal
from ociregistry.authapi.credentials import authenticate
from ociregistry.errors import RegistryError, TooLarge, Unauthorized
from ociregistry.names import RepositoryName
from ociregistry.services import Services

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


def services(request: Request) -> Services:
    return request.app.state.services


def repository(request: Request) -> RepositoryName:
    return RepositoryName.parse(request.path_params["name"])


async def principal(request: Request) -> Principal:
    return await authenticate(request)


def challenge(request: Request, error: Unauthorized) -> str:
    """The `WWW-Authenticate` value that sends a client to our token endpoint."""
    settings = services(request).settings
    host = request.headers.get("host") or settings.public_address or "localhost"
    realm = f"{request.url.scheme}://{host}/auth/token"
    value = f'Bearer realm="{realm}",service="{settings.token_service}"'
    if isinstance(error, AuthenticationRequired):
        if error.scope:
            value += f',scope="{error.scope}"'
        if error.error:
            value += f',error="{error.error}"'
    return value


def error_response(error: RegistryError) -> Response:
    return Response(
        json.dumps(error.to_json()),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


async def registry_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, RegistryError)
    response = error_response(error)
    if isinstance(error, Unauthorized) and request.url.path.startswith("/v2"):
        response.headers["WWW-Authenticate"] = challenge(request, error)
    return response


class _RouteError(RegistryError):
    code = "UNSUPPORTED"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]


async def http_error_handler(request: Request, error: Exception) -> Response:
    """404 and 405 from routing, in the OCI error format."""
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        message = f"{request.method} is not supported on {request.url.path}"
    elif error.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    else:
        message = str(error.detail)
    response = error_response(_RouteError(error.status_code, message))
    response.headers.update(error.headers or {})
    return response


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(
            f"the body is {declared} bytes; the limit is {limit}",
            detail={"limit": limit},
        )
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise TooLarge(f"the body exceeds the limit of {limit} bytes", detail={"limit": limit})
    return bytes(chunks)


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


class ApiVersionHeader:
    """Adds `Docker-Distribution-API-Version` to every /v2 response, without buffering it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), API_VERSION_HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)
