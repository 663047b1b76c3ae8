"""`/auth/token`: the Docker token service.

`GET` takes Basic credentials (or none, for anonymous pulls) and `scope` parameters; `POST`
speaks OAuth2 with the `password` and `refresh_token` grants, which is how `docker login`
obtains an identity token. Either answers a registry token whose `access` claim is what was
asked for, narrowed to what the access policy allows.

`/auth/jwks.json` publishes the public keys that sign those tokens (a JWK Set, public, no
authentication), so another registry or any JWT library can verify them by their `kid`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.auth.accounts import Authenticated
from ociregistry.auth.policy import ANONYMOUS
from ociregistry.auth.scopes import parse_scopes
from ociregistry.authapi.credentials import check_password, parse_basic, principal_of
from ociregistry.errors import GrantInvalid, GrantRefused, TokenRequestTooLarge, Unauthorized
from ociregistry.services import Services

MAX_FORM_BYTES = 64 * 1024
JWKS_MAX_AGE_SECONDS = 300  # verifiers may cache the key set this long; keys rarely change


def _issue(
    services: Services, found: Authenticated | None, access: list[dict[str, Any]]
) -> tuple[str, int]:
    return services.signer.issue(
        found.user.username if found else "",
        access,
        token_id=found.token_id if found else None,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def get_token(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    scopes = parse_scopes(request.query_params.getlist("scope"))
    found = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise Unauthorized("the token endpoint takes Basic credentials or none")
        found = await check_password(services, request, *parse_basic(value))
    principal = principal_of(found) if found else ANONYMOUS
    access = await services.policy.grant(principal, scopes)
    token, ttl = _issue(services, found, access)
    body: dict[str, Any] = {
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": _now(),
    }
    if found and request.query_params.get("offline_token") == "true":
        body["refresh_token"] = await services.accounts.issue_refresh_token(found)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _read_form(request: Request) -> FormData:
    """The `application/x-www-form-urlencoded` body OAuth2 prescribes (RFC 6749 §4.3), parsed
    here: Starlette's `request.form()` needs python-multipart, which is not a dependency."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return FormData()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise TokenRequestTooLarge("the token request is too large", "invalid_request")
    try:
        text = body.decode("utf-8")
        return FormData(parse_qsl(text, keep_blank_values=True, max_num_fields=100))
    except (UnicodeDecodeError, ValueError):
        raise GrantInvalid("the token request is not a valid form", "invalid_request") from None


async def post_token(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise TokenRequestTooLarge("the token request is too large", "invalid_request")
    form = await _read_form(request)
    grant_type = form.get("grant_type")
    refresh_token = None
    if grant_type == "password":
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise GrantInvalid("the password grant needs username and password", "invalid_request")
        found = await check_password(services, request, username, password)
        refresh_token = await services.accounts.issue_refresh_token(found)
    elif grant_type == "refresh_token":
        value = form.get("refresh_token")
        found = (
            await services.accounts.redeem_refresh_token(value) if isinstance(value, str) else None
        )
        if found is None:
            raise GrantRefused("the refresh token is invalid, expired or revoked", "invalid_grant")
        refresh_token = value
    else:
        raise GrantInvalid("grant_type must be password or refresh_token", "unsupported_grant_type")
    scope_values = [value for value in form.getlist("scope") if isinstance(value, str)]
    access = await services.policy.grant(principal_of(found), parse_scopes(scope_values))
    token, ttl = _issue(services, found, access)
    granted = " ".join(
        f"{entry['type']}:{entry['name']}:{','.join(entry['actions'])}" for entry in access
    )
    return JSONResponse(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "issued_at": _now(),
            "scope": granted,
            "refresh_token": refresh_token,
        },
        headers={"Cache-Control": "no-store"},
    )


async def get_jwks(request: Request) -> JSONResponse:
    """The token-signing keys as a JWK Set (RFC 7517): public keys only, for anyone."""
    services: Services = request.app.state.services
    return JSONResponse(
        services.signer.jwks(),
        media_type="application/jwk-set+json",
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"},
    )
