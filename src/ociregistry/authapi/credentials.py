"""Who is asking: the `Authorization` header of a request, turned into a `Principal`.

`Bearer` carries a registry token from our token endpoint; `Basic` carries a username with a
password or a personal access token (checked with throttling). No header is anonymous.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from starlette.requests import Request

from ociregistry.auth.accounts import PAT_PREFIX, Authenticated
from ociregistry.auth.generation import current_generation
from ociregistry.auth.policy import ANONYMOUS, Principal
from ociregistry.auth.throttle import account_key, address_key
from ociregistry.auth.tokens import SESSION_TOKEN, InvalidToken
from ociregistry.errors import AuthenticationRequired, CsrfFailed, TooManyAttempts, Unauthorized
from ociregistry.services import Services

log = logging.getLogger("ociregistry.auth")

SESSION_COOKIE = "ociregistry_session"
CSRF_HEADER = "x-csrf-token"
SESSION_PATHS = ("/api/", "/console/")  # the cookie means nothing to /v2 or /auth
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def wait_words(seconds: int) -> str:
    """`45 seconds`, `5 minutes`, `2 hours`: how long to wait, rounded up, for a message."""
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 7200:
        return f"{-(-seconds // 60)} minutes"
    return f"{-(-seconds // 3600)} hours"


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def parse_basic(value: str) -> tuple[str, str]:
    """`username:secret` from a Basic credential; 401 when it is not base64 or has no colon."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("the Basic credentials are not valid base64") from None
    username, colon, secret = decoded.partition(":")
    if not colon or not username:
        raise Unauthorized("the Basic credentials must be username:password")
    return username, secret


async def check_password(
    services: Services, request: Request, username: str, secret: str
) -> Authenticated:
    """Verify a username and password (or personal access token), throttling failures per
    account and per address. Failures for existing and missing accounts look alike."""
    account, address = account_key(username), address_key(client_address(request))
    verdict = await services.throttle.check(account, address)
    if verdict.retry_after is not None:
        log.warning("sign-in refused (throttled) user=%r %s", username[:100], address)
        raise TooManyAttempts(
            f"too many failed sign-ins; try again in {wait_words(verdict.retry_after)} "
            "(an admin can lift the block with `ociregistry user unlock NAME`)",
            retry_after=verdict.retry_after,
        )
    await services.throttle.wait(verdict)
    found = await services.accounts.authenticate(username, secret)
    if found is None:
        await services.throttle.failed(account, address)
        log.warning("sign-in failed user=%r %s", username[:100], address)
        raise Unauthorized("invalid username or password")
    if verdict.failures:  # a success clears the account's record (never the address's)
        await services.throttle.succeeded(account)
    return found


def principal_of(found: Authenticated, **extra: object) -> Principal:
    return Principal(
        username=found.user.username,
        user_id=found.user.id,
        is_admin=found.user.is_admin,
        read_only=found.read_only,
        presented_credentials=True,
        **extra,  # type: ignore[arg-type]
    )


async def authenticate(request: Request) -> Principal:
    """The request's principal, computed once per request."""
    cached = request.scope.get("ociregistry.principal")
    if cached is not None:
        return cached
    services: Services = request.app.state.services
    header = request.headers.get("authorization")
    principal = ANONYMOUS
    if not header:  # the cookie is read only when it can matter
        session = request.cookies.get(SESSION_COOKIE)
        if session and request.url.path.startswith(SESSION_PATHS):
            principal = await _session(services, request, session)
    else:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            principal = await _bearer(services, value.strip())
        elif scheme == "basic":
            username, secret = parse_basic(value)
            principal = principal_of(await check_password(services, request, username, secret))
        else:
            raise Unauthorized(f"unsupported authorization scheme {scheme[:20]!r}")
    request.scope["ociregistry.principal"] = principal
    return principal


async def _session(services: Services, request: Request, token: str) -> Principal:
    """A console session: the cookie proves who it is; for anything but a read, the
    `X-CSRF-Token` header must also carry the session's CSRF token, which a page on another
    site cannot know."""
    try:
        claims = services.signer.verify(token, SESSION_TOKEN)
    except InvalidToken:
        return ANONYMOUS  # an expired session is simply signed out
    found = await services.accounts.active_user(claims.subject, None)
    if found is None or await services.accounts.session_revoked(str(claims.claims["jti"])):
        return ANONYMOUS
    csrf = str(claims.claims.get("csrf", ""))
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), csrf
    ):
        raise CsrfFailed("the X-CSRF-Token header is missing or wrong; reload the page")
    return principal_of(found, csrf_token=csrf)


async def _bearer(services: Services, token: str) -> Principal:
    if token.startswith(PAT_PREFIX):  # a personal access token used as a bearer token
        found = await services.accounts.authenticate_token(token)
        if found is None:
            log.warning("personal access token refused")
            raise Unauthorized("the access token is invalid, expired or revoked")
        return principal_of(found)
    try:
        claims = services.signer.verify(token)
    except InvalidToken as error:
        log.warning("registry token refused: %s", error)
        raise AuthenticationRequired(f"invalid token: {error}", "", error="invalid_token") from None
    generation = await current_generation(services.db)  # first: see auth/generation.py
    if not claims.subject:
        return Principal(token=claims, presented_credentials=True, generation=generation)
    found = await services.accounts.active_user(claims.subject, claims.token_id, generation)
    if found is None:
        log.warning("registry token of a disabled user or revoked token refused")
        raise AuthenticationRequired(
            "the token's user is disabled or its access token was revoked",
            "",
            error="invalid_token",
        )
    return principal_of(found, token=claims, generation=generation)
