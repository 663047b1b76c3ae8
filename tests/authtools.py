"""Helpers for the access-control tests: users and tokens through the CLI, credentials in the
forms clients send them, the Docker token flow, JWT inspection, and small image pushes.

Everything goes over HTTP or through the `ociregistry` command line, as an operator and a
client would; nothing reaches into the server's memory or database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from support import oci
from support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, canonical_json, digest_of
from support.server import RunningServer

TOKEN_SERVICE = "ociregistry"


# -- the command line -----------------------------------------------------------------------


def cli(server: RunningServer, *args: str, stdin: str | None = None) -> str:
    """Run `ociregistry <args> --data-dir …` with `stdin`; fail loudly, return its stdout."""
    result = server.cli(*args, stdin=stdin, check=False)
    assert result.returncode == 0, f"ociregistry {' '.join(args)}: {result.stderr}"
    return result.stdout


def cli_all(server: RunningServer, *commands: tuple[str, ...]) -> None:
    """Run independent `ociregistry` commands at once (each is mostly start-up time), as
    several operators might; a command is a tuple of arguments, with stdin after a `<`."""
    running = []
    for command in commands:
        args, stdin = (command[:-2], command[-1]) if "<" in command else (command, None)
        process = subprocess.Popen(
            [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(server.data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=server.env,
        )
        running.append((args, process, stdin))
    failures = []
    for args, process, stdin in running:
        _, stderr = process.communicate(stdin, timeout=120)
        if process.returncode:
            failures.append(f"ociregistry {' '.join(args)}: {stderr}")
    assert not failures, "\n".join(failures)


def add_user(server: RunningServer, username: str, password: str, *, admin: bool = False) -> None:
    cli(
        server,
        "user",
        "add",
        username,
        "--password-stdin",
        *(["--admin"] * admin),
        stdin=password + "\n",
    )


def create_pat(
    server: RunningServer, username: str, name: str, *, read_only: bool = False
) -> tuple[str, str]:
    """A personal access token: its public id (for `token revoke`) and its secret."""
    out = cli(server, "token", "create", username, name, "--json", *(["--read-only"] * read_only))
    created = json.loads(out)
    return created["id"], created["token"]


# -- credentials ----------------------------------------------------------------------------


def basic(username: str, secret: str) -> str:
    """An `Authorization` value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


def bearer(token: str) -> str:
    return f"Bearer {token}"


def request_token(
    client: httpx.Client,
    credentials: tuple[str, str] | None,
    scopes: list[str],
    **params: str,
) -> httpx.Response:
    """`GET /auth/token` as docker does it: Basic credentials (or none) and `scope` params.
    `client` has the server's base URL and no credentials of its own."""
    headers = {"Authorization": basic(*credentials)} if credentials else {}
    query = [("service", TOKEN_SERVICE), *(("scope", s) for s in scopes), *params.items()]
    return client.get("/auth/token", params=query, headers=headers)


def token_for(client: httpx.Client, credentials: tuple[str, str] | None, scopes: list[str]) -> str:
    response = request_token(client, credentials, scopes)
    assert response.status_code == 200, f"token request failed: {describe(response)}"
    return response.json()["token"]


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_header(token: str) -> dict[str, Any]:
    return json.loads(_b64decode(token.split(".")[0]))


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: what the server put in it."""
    return json.loads(_b64decode(token.split(".")[1]))


def granted(token: str) -> dict[str, set[str]]:
    """The `access` claim as `{"type:name": {actions}}`."""
    return {
        f"{entry['type']}:{entry['name']}": set(entry["actions"])
        for entry in jwt_claims(token)["access"]
    }


_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(value: str | None) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` as ("bearer", {realm, service, scope, …})."""
    if not value:
        return "", {}
    scheme, _, rest = value.partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


# -- responses ------------------------------------------------------------------------------


def oci_error(response: httpx.Response) -> str | None:
    """The first OCI error code of a response, None when it has no OCI error body."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        return body["errors"][0].get("code")
    return None


def describe(response: httpx.Response) -> str:
    request = response.request
    return (
        f"{request.method} {request.url.raw_path.decode()} -> {response.status_code} "
        f"{response.content[:300]!r}"
    )


# -- content --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """An image in a repository, as pushed: its manifest bytes and digests."""

    repo: str
    tag: str | None
    manifest: bytes
    config: bytes
    layer: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)

    @property
    def layer_digest(self) -> str:
        return digest_of(self.layer)


def make_manifest(config: bytes, layer: bytes) -> bytes:
    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}

    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, layer)],
        }
    )


def push_blob(client: httpx.Client, repo: str, data: bytes) -> None:
    """`support.oci.push_blob`, asserting that the blob was stored."""
    response = oci.push_blob(client, repo, data)
    assert response.status_code == 201, describe(response)


def put_manifest(client: httpx.Client, repo: str, reference: str, manifest: bytes) -> None:
    """`support.oci.put_manifest`, asserting that the manifest was stored."""
    response = oci.put_manifest(client, repo, reference, manifest)
    assert response.status_code == 201, describe(response)


def push_image(
    client: httpx.Client,
    repo: str,
    label: str,
    *,
    tag: str | None = None,
    layer: bytes | None = None,
) -> Pushed:
    """Push a small image whose config depends on `label` (so its digest is its own); by
    `tag`, else by digest. `layer` reuses a layer already in the repository."""
    config = canonical_json({"architecture": "amd64", "os": "linux", "label": label})
    fresh_layer = layer is None
    layer = layer if layer is not None else f"layer of {label}\n".encode() * 8
    push_blob(client, repo, config)
    if fresh_layer:
        push_blob(client, repo, layer)
    manifest = make_manifest(config, layer)
    put_manifest(client, repo, tag or digest_of(manifest), manifest)
    return Pushed(repo, tag, manifest, config, layer)


def tags_of(client: httpx.Client, repo: str) -> list[str] | None:
    response = client.get(f"/v2/{repo}/tags/list")
    return response.json()["tags"] if response.status_code == 200 else None


# -- forging tokens -------------------------------------------------------------------------
#
# An attacker sees tokens (their own, or ones leaked from logs) and may try to make new ones.
# These helpers build JWTs byte by byte, so that nothing a JWT library refuses to produce
# (`alg: none`, HMAC keyed with a public key) stands in the way of trying it.


def encode_jwt(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """`header.claims.signature`; `sign(signing_input) -> bytes`, or an empty signature."""
    signing_input = f"{b64encode(canonical_json(header))}.{b64encode(canonical_json(claims))}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64encode(signature)}"


def hs256(key: bytes) -> Any:
    def sign(data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()

    return sign


def es256(private_key: ec.EllipticCurvePrivateKey) -> Any:
    """A JOSE ES256 signature: r and s as 32 bytes each (not DER)."""

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64encode(numbers.x.to_bytes(32, "big")),
        "y": b64encode(numbers.y.to_bytes(32, "big")),
    }


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` the registry gives its own keys: the key ID in libtrust format, as the Docker
    token spec and CNCF Distribution have it (SHA-256 of the DER SubjectPublicKeyInfo, the
    first 30 bytes in base32 without padding, in groups of four joined by ':')."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(re.findall("....", encoded))


def self_signed_certificate(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """A DER certificate for `private_key`, for an `x5c` header."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ociregistry")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(private_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def server_signing_key(server: RunningServer) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """The registry's own token-signing key, read from its database as only an insider could:
    to sign tokens that are genuine except for one claim, and so test the claim checks alone."""
    with sqlite3.connect(server.data_dir / "registry.db") as db:
        kid, pem = db.execute(
            "SELECT kid, private_key_pem FROM signing_keys ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return kid, key


# P-256 (FIPS 186-4 D.1.2.3), for recovering the public key from a signature.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
Point = tuple[int, int] | None


def _add(p: Point, q: Point) -> Point:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        slope = (3 * p[0] * p[0] + _A) * pow(2 * p[1], -1, _P) % _P
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (slope * slope - p[0] - q[0]) % _P
    return x, (slope * (p[0] - x) - p[1]) % _P


def _multiply(k: int, point: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def recover_public_keys(token: str) -> list[ec.EllipticCurvePublicKey]:
    """The public keys that could have made an ES256 token's signature (ECDSA public-key
    recovery, SEC 1 §4.1.6): what an attacker holding one token knows of the registry's key,
    although the registry publishes none."""
    signing_input, _, signature = token.rpartition(".")
    raw = _b64decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    e = int.from_bytes(hashlib.sha256(signing_input.encode()).digest(), "big")
    candidates = []
    y_squared = (pow(r, 3, _P) + _A * r + _B) % _P
    y = pow(y_squared, (_P + 1) // 4, _P)
    for candidate_y in (y, _P - y):
        point = (r, candidate_y)
        q = _multiply(pow(r, -1, _N), _add(_multiply(s, point), _multiply(_N - e % _N, _G)))
        if q is None:
            continue
        key = ec.EllipticCurvePublicNumbers(q[0], q[1], ec.SECP256R1()).public_key()
        try:
            key.verify(
                encode_dss_signature(r, s), signing_input.encode(), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            continue
        candidates.append(key)
    return candidates


def key_encodings(public_key: ec.EllipticCurvePublicKey) -> dict[str, bytes]:
    """Every form of a public key an HMAC-confused verifier might use as its secret."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "PEM": pem,
        "PEM without the final newline": pem.rstrip(b"\n"),
        "DER": public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "X9.62 point": public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
        "JWK": canonical_json(public_jwk(public_key)),
    }
