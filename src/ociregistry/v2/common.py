"""What every /v2 handler needs: its services, the repository name, the caller, errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ociregistry.auth.policy import Action, Principal
from ociregistry.authapi.credentials import authenticate
from ociregistry.errors import (
    AuthenticationRequired,
    Denied,
    EndpointUnknown,
    MethodNotAllowed,
    NameInvalid,
    NameUnknown,
    RangeInvalid,
    RangeNotSatisfiable,
    RegistryError,
    TooLarge,
    Unauthorized,
)
from ociregistry.names import RepositoryName
from ociregistry.services import Services

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


def services(request: Request) -> Services:
    return request.app.state.services


def repository(request: Request) -> RepositoryName:
    """The repository of a /v2 URL. A one-level name (`docker push host/busybox`) is refused
    with DENIED, not NAME_INVALID: docker retries NAME_INVALID for about a minute before it
    shows the message, while it gives up on DENIED at once (moby `distribution/errors.go`,
    `retryOnError`: UNAUTHORIZED, UNSUPPORTED and DENIED are `xfer.DoNotRetry`)."""
    name = request.path_params["name"]
    try:
        return RepositoryName.parse(name)
    except NameInvalid as error:
        if "/" in name or not name:
            raise
        host = services(request).settings.public_address or request.headers.get("host")
        host = host or "localhost"
        raise Denied(
            f"repository name {name[:100]!r} names no registry: an image reference here is "
            f"{{host}}/{{registry}}/{{image}}, e.g. {host}/team-a/{name[:100]}",
            detail=error.detail,
        ) from None


async def principal(request: Request) -> Principal:
    return await authenticate(request)


@dataclass(frozen=True, slots=True)
class Access:
    """What a handler behind `requires` is given: the repository, already checked, and who
    asks."""

    repo: RepositoryName
    caller: Principal


Handler = Callable[[Request, Access], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
ExtraScopes = Callable[[Request], list[str]]


def requires(
    action: Action, *, extra_scopes: ExtraScopes | None = None
) -> Callable[[Handler], Endpoint]:
    """Declare the action a /v2 route needs, once, as Distribution's method -> action table:
    the endpoint parses the repository name, asks the policy (auth/policy.py, the only place
    the decision is made) and only then runs the handler.

    `extra_scopes` names further scopes a 401 challenge must ask for (a mount's source
    repository), so that a token client gets everything the request needs in one token."""

    def decorate(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            access = await authorize(request, action, extra_scopes)
            return await handler(request, access)

        endpoint.action = action  # type: ignore[attr-defined]
        return endpoint

    return decorate


async def authorize(
    request: Request, action: Action, extra_scopes: ExtraScopes | None = None
) -> Access:
    repo = repository(request)
    caller = await principal(request)
    policy = services(request).policy
    try:
        await policy.require(caller, repo, action)
    except AuthenticationRequired as error:
        if extra_scopes is not None:
            error.scope = " ".join(dict.fromkeys([error.scope, *extra_scopes(request)]))
        raise
    except NameUnknown as error:
        if action is Action.PUSH and await policy.may_learn_registry_is_missing(
            caller, repo.registry
        ):
            raise NameUnknown(
                missing_registry_message(request, repo.registry), detail=error.detail
            ) from None
        raise
    return Access(repo, caller)


def missing_registry_message(request: Request, registry: str) -> str:
    """What a caller who could create `registry` is told when pushing into it: registries are
    never created by a push (SPEC §1), so say how to create one."""
    settings = services(request).settings
    host = settings.public_address or request.headers.get("host") or "localhost"
    base = f"{request.url.scheme}://{host}"
    return (
        f"registry {registry!r} does not exist: create it first, then push again "
        f"(console: {base}/console/; API: POST {base}/api/v1/registries with "
        f'{{"name": "{registry}"}}; CLI on the server: ociregistry registry create {registry})'
    )


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


def upload_range(size: int) -> str:
    """The `Range` header value for `size` bytes received (`0-0` when none, as Distribution)."""
    return f"0-{max(size - 1, 0)}"


def upload_headers(request: Request, repository: str, upload_id: str, size: int) -> dict[str, str]:
    """Where an upload is and how much it holds: the headers of every upload answer."""
    headers = {
        "Location": f"/v2/{repository}/blobs/uploads/{upload_id}",
        "Range": upload_range(size),
        "Docker-Upload-UUID": upload_id,
    }
    min_length = services(request).uploads.min_chunk_length
    if min_length:
        headers["OCI-Chunk-Min-Length"] = str(min_length)
    return headers


def error_headers(request: Request, error: RegistryError) -> dict[str, str]:
    """The headers an error's fields call for; the errors themselves know nothing of HTTP."""
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, RangeInvalid) and error.received is not None:
        headers.update(upload_headers(request, error.repository, error.upload_id, error.received))
    if isinstance(error, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{error.size}"
    if isinstance(error, Unauthorized) and request.url.path.startswith("/v2"):
        headers["WWW-Authenticate"] = challenge(request, error)
    return headers


def error_response(request: Request, error: RegistryError) -> Response:
    """An error as the distribution spec renders it: `{"errors": [...]}` and its headers."""
    return Response(
        json.dumps(error.to_json()),
        status_code=error.status,
        media_type="application/json",
        headers=error_headers(request, error),
    )


async def registry_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, RegistryError)
    return error_response(request, error)


def route_error(request: Request, error: HTTPException) -> RegistryError | None:
    """404 and 405 from routing as the errors they are; None for any other HTTP error."""
    if error.status_code == 405:
        return MethodNotAllowed(f"{request.method} is not supported on {request.url.path}")
    if error.status_code == 404:
        return EndpointUnknown(f"no such endpoint: {request.method} {request.url.path}")
    return None


async def http_error_handler(request: Request, error: Exception) -> Response:
    """Starlette's HTTP errors (routing's 404 and 405), in the OCI error format."""
    assert isinstance(error, HTTPException)
    known = route_error(request, error)
    if known is not None:
        response = error_response(request, known)
    else:
        body = {"errors": [{"code": "UNSUPPORTED", "message": str(error.detail)}]}
        response = Response(
            json.dumps(body), status_code=error.status_code, media_type="application/json"
        )
    response.headers.update(error.headers or {})  # `Allow` on a 405
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
