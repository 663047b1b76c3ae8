"""Registry tokens: short-lived JWTs signed with a key pair every instance shares.

Verification pins our own keys and ES256 only: `alg: none`, HMAC tricks with the public key,
keys carried in the header (`jwk`, `x5c`, `jku`) and foreign `kid`s are all refused, and
`iss`, `aud`, `exp`, `nbf` and `iat` are required and checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from ociregistry.auth.models import SigningKey
from ociregistry.catalog.database import Database
from ociregistry.catalog.sql import insert_ignore

ALGORITHM = "ES256"
ISSUER = "ociregistry"
DEFAULT_TOKEN_TTL_SECONDS = 300
ACCESS_TOKEN = "access"  # a registry token from /auth/token
SESSION_TOKEN = "session"  # a web console sign-in, carried in a cookie
LEEWAY_SECONDS = 5
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5c", "x5u", "crit")
_VERIFIED_CACHE_SIZE = 4096


class InvalidToken(Exception):
    """A token we did not issue, or one no longer valid. The message says which check failed."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str  # the username, "" for anonymous
    access: dict[str, dict[str, frozenset[str]]]  # type -> name -> actions
    token_id: int | None  # the personal access token it was issued through
    expires_at: float
    claims: dict[str, Any]

    def actions(self, resource_type: str, name: str) -> frozenset[str]:
        return self.access.get(resource_type, {}).get(name, frozenset())


def _kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key's RFC 7638 thumbprint: the same key gives the same `kid` everywhere."""
    numbers = public_key.public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": b64(numbers.x), "y": b64(numbers.y)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return base64.urlsafe_b64encode(hashlib.sha256(jwk.encode()).digest()).rstrip(b"=").decode()


async def ensure_signing_key(db: Database) -> None:
    """Create the token-signing key pair on first start; later starts find it."""
    async with db.read() as conn:
        if await conn.scalar(select(SigningKey.kid).limit(1)) is not None:
            return
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    async with db.write() as conn:
        if await conn.scalar(select(SigningKey.kid).limit(1)) is None:
            await insert_ignore(
                conn,
                SigningKey.__table__,
                {
                    "kid": _kid(private_key.public_key()),
                    "algorithm": ALGORITHM,
                    "private_key_pem": pem,
                },
                ["kid"],
            )


class TokenSigner:
    """Issues and verifies tokens for one service name (the JWT audience)."""

    def __init__(self, keys: list[tuple[str, str]], *, service: str, ttl_seconds: int) -> None:
        if not keys:
            raise ValueError("no token-signing key: run migrations and ensure_signing_key first")
        self.service = service
        self.ttl_seconds = ttl_seconds
        self._private = {
            kid: serialization.load_pem_private_key(pem.encode(), password=None)
            for kid, pem in keys
        }
        self._public = {kid: key.public_key() for kid, key in self._private.items()}
        self._current_kid = keys[0][0]
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    @classmethod
    async def load(cls, db: Database, *, service: str, ttl_seconds: int) -> TokenSigner:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(SigningKey.kid, SigningKey.private_key_pem).order_by(
                        SigningKey.created_at.desc()
                    )
                )
            ).all()
        return cls([(kid, pem) for kid, pem in rows], service=service, ttl_seconds=ttl_seconds)

    def issue(
        self,
        subject: str,
        access: list[dict[str, Any]],
        *,
        token_id: int | None = None,
        ttl_seconds: int | None = None,
        kind: str = ACCESS_TOKEN,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A signed token and its lifetime in seconds. `kind` keeps registry tokens and
        console sessions apart: neither is accepted where the other is expected."""
        now = int(time.time())
        ttl = ttl_seconds or self.ttl_seconds
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "aud": self.service,
            "exp": now + ttl,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        if token_id is not None:
            claims["pat"] = token_id
        claims.update(extra or {})
        claims["typ"] = kind
        token = jwt.encode(
            claims,
            self._private[self._current_kid],
            algorithm=ALGORITHM,
            headers={"kid": self._current_kid},
        )
        return token, ttl

    def verify(self, token: str, kind: str = ACCESS_TOKEN) -> TokenClaims:
        claims = self._verify(token)
        if claims.claims.get("typ") != kind:
            raise InvalidToken(f"not a {kind} token")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + LEEWAY_SECONDS < time.time():
                self._verified.pop(token, None)
                raise InvalidToken("the token has expired")
            return cached
        claims = self._decode(token)
        verified = TokenClaims(
            subject=str(claims.get("sub") or ""),
            access=_access_map(claims.get("access")),
            token_id=claims.get("pat") if isinstance(claims.get("pat"), int) else None,
            expires_at=float(claims["exp"]),
            claims=claims,
        )
        self._verified[token] = verified
        while len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(f"not a JWT: {error}") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise InvalidToken("keys carried in the token header are not accepted")
        key = self._public.get(str(header.get("kid")))
        if key is None:
            raise InvalidToken("the token was signed by a key this registry does not know")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "jti", "sub", "typ"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None


def _access_map(value: Any) -> dict[str, dict[str, frozenset[str]]]:
    access: dict[str, dict[str, frozenset[str]]] = {}
    if not isinstance(value, list):
        return access
    for entry in value:
        if not isinstance(entry, dict):
            continue
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list):
            names = access.setdefault(kind, {})
            names[name] = names.get(name, frozenset()) | {str(a) for a in actions}
    return access
