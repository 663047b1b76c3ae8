"""Registry tokens: short-lived JWTs signed with a key pair every instance shares.

They follow the Docker token authentication spec (`kid` in libtrust format), so another
registry, such as CNCF Distribution, can use this one as its token server: 2.x trusts the
certificates `signing_certificates` makes (`ociregistry signing-cert`); 3.x, and any other JWT
verifier, looks the token's `kid` up in the JWKS `signing_jwks` makes (`ociregistry
signing-cert --jwks`, or `GET /auth/jwks.json`).

Verification pins our own keys and ES256 only: `alg: none`, HMAC tricks with the public key,
keys carried in the header (`jwk`, `x5c`, `jku`) and foreign `kid`s are all refused, and
`iss`, `aud`, `exp`, `nbf` and `iat` are required and checked.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm
from sqlalchemy import select

from ociregistry.auth.models import SigningKey
from ociregistry.db.database import Database
from ociregistry.db.sql import insert_ignore

ALGORITHM = "ES256"
ISSUER = "ociregistry"
DEFAULT_TOKEN_TTL_SECONDS = 300
ACCESS_TOKEN = "access"  # a registry token from /auth/token
SESSION_TOKEN = "session"  # a web console sign-in, carried in a cookie
LEEWAY_SECONDS = 5
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5c", "x5u", "crit")
_VERIFIED_CACHE_SIZE = 4096
CERTIFICATE_VALIDITY_DAYS = 3650  # verifiers of our tokens read only the key from it


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
    """The key's ID in libtrust format, as the Docker token spec has it for `kid`.

    CNCF Distribution (and other registries built on docker/libtrust) trusts the keys of the
    certificates in its `auth.token.rootcertbundle` by exactly this ID and looks a token's
    `kid` up by it: SHA-256 of the DER SubjectPublicKeyInfo, its first 240 bits in base32
    without padding, in twelve groups of four joined by ':'. The same key gives the same `kid`
    everywhere.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


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


def _load_private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a token-signing key is not an EC key")
    return key


async def _stored_keys(db: Database) -> list[tuple[str, str]]:
    """Every signing key as (stored kid, private key PEM), the current one first."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(SigningKey.kid, SigningKey.private_key_pem).order_by(
                    SigningKey.created_at.desc()
                )
            )
        ).all()
    return [(kid, pem) for kid, pem in rows]


def _self_signed_certificate(private_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ISSUER),
            x509.NameAttribute(NameOID.COMMON_NAME, _kid(private_key.public_key())),
        ]
    )
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=CERTIFICATE_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(private_key, hashes.SHA256())
    )


async def signing_certificates(db: Database) -> str:
    """A PEM bundle of self-signed X.509 certificates, one per token-signing key, the current
    key first: what a service that verifies our tokens trusts, e.g. Distribution's
    `auth.token.rootcertbundle`. Such services take only the public key (and its libtrust
    ID, our `kid`) from a certificate, so these are made fresh on each call."""
    pems = []
    for _, pem in await _stored_keys(db):
        certificate = _self_signed_certificate(_load_private_key(pem))
        pems.append(certificate.public_bytes(serialization.Encoding.PEM).decode())
    return "".join(pems)


def _jwk(kid: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """One public key as an RFC 7517 JWK, under the `kid` our tokens carry."""
    jwk = dict(ECAlgorithm.to_jwk(public_key, as_dict=True))
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return jwk


def jwk_set(public_keys: list[ec.EllipticCurvePublicKey]) -> dict[str, Any]:
    """An RFC 7517 JWK Set of `public_keys`, each under its libtrust ID: the `kid` of our
    tokens, which is how Distribution 3 (`auth.token.jwks`) and JWT libraries find the key."""
    return {"keys": [_jwk(_kid(key), key) for key in public_keys]}


async def signing_jwks(db: Database) -> dict[str, Any]:
    """The token-signing keys as a JWK Set, the current key first (see `jwk_set`)."""
    return jwk_set([_load_private_key(pem).public_key() for _, pem in await _stored_keys(db)])


class TokenSigner:
    """Issues and verifies tokens for one service name (the JWT audience)."""

    def __init__(self, keys: list[tuple[str, str]], *, service: str, ttl_seconds: int) -> None:
        if not keys:
            raise ValueError("no token-signing key: run migrations and ensure_signing_key first")
        self.service = service
        self.ttl_seconds = ttl_seconds
        # Tokens name a key by its libtrust ID, computed here rather than read from the
        # database: a key created before `kid`s were libtrust IDs is stored under its RFC 7638
        # thumbprint, and that ID stays accepted (alongside the new one) for the tokens and
        # console sessions issued under it. No migration is needed: stored kids are just names.
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._public: dict[str, ec.EllipticCurvePublicKey] = {}
        for stored_kid, pem in keys:
            key = _load_private_key(pem)
            kid = _kid(key.public_key())
            self._private.setdefault(kid, key)
            self._public.setdefault(kid, key.public_key())
            self._public.setdefault(stored_kid, key.public_key())
        self._current_kid = next(iter(self._private))  # keys come newest first
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    def jwks(self) -> dict[str, Any]:
        """The public half of every signing key this signer holds, as a JWK Set."""
        return jwk_set([key.public_key() for key in self._private.values()])

    @classmethod
    async def load(cls, db: Database, *, service: str, ttl_seconds: int) -> TokenSigner:
        return cls(await _stored_keys(db), service=service, ttl_seconds=ttl_seconds)

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
