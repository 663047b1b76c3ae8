"""Attacks on authentication and access control: each is refused, changes nothing, and leaves
no secret in the server log.

The module runs its own server: failed sign-ins are counted per client address, and the
attacks here make enough of them to slow down and block every other test on a shared server.
Requests that are meant to fail a sign-in come from addresses of their own (`X-Forwarded-For`,
which the server trusts from 127.0.0.1, as behind a local reverse proxy), so that the
throttling stays out of the way of the tests that are not about it.
"""

from __future__ import annotations

import base64
import http.server
import itertools
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authtools import (
    OCI_MANIFEST,
    Pushed,
    add_user,
    b64encode,
    basic,
    bearer,
    canonical_json,
    cli,
    cli_all,
    create_pat,
    describe,
    digest_of,
    encode_jwt,
    es256,
    granted,
    hs256,
    jwt_claims,
    jwt_header,
    key_encodings,
    libtrust_key_id,
    oci_error,
    parse_challenge,
    public_jwk,
    push_blob,
    push_image,
    put_manifest,
    recover_public_keys,
    request_token,
    self_signed_certificate,
    server_signing_key,
    tags_of,
    token_for,
)
from support.server import RunningServer

PASSWORDS = {
    "atk-alice": "alice-secret-password",  # owns atk-team-a
    "atk-bob": "bob-secret-password",  # owns atk-team-b and atk-open
    "atk-dev": "dev-secret-password",  # developer in both teams
    "atk-mallory": "mallory-secret-password",  # in no team: a stranger to both
    "atk-carol": "carol-secret-password",  # disabled during a test
    "atk-dave": "dave-secret-password",  # has a personal access token revoked during a test
    "atk-erin": "erin-secret-password",  # developer in team b, removed during a test
}
TEAM_A, TEAM_B = "atk-team-a/app", "atk-team-b/app"
OPEN = "atk-open/app"  # a public registry
TAG = "1.0"
_addresses = itertools.count(1)
GENUINE_CLAIMS: dict[str, Any] = {}  # the claims of a token the registry issued

# Every answer carries its request id; one id for all keeps alike answers byte for byte alike.
SAME_REQUEST_ID = {"X-Request-Id": "same-for-every-request"}


def fresh_address() -> dict[str, str]:
    """A client address no other request used, so that sign-in failures from it are its own."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}


@dataclass
class Arena:
    server: RunningServer
    http: httpx.Client  # no credentials of its own
    admin: httpx.Client
    images: dict[str, Pushed]
    referrer: str  # the digest of a referrer of TEAM_B's image
    kid: str  # the `kid` of the registry's tokens, as any token shows it
    secrets: set[str] = field(default_factory=set)  # never to appear in the server log

    def credentials(self, username: str) -> tuple[str, str]:
        return username, PASSWORDS[username]

    def token(self, username: str | None, *scopes: str) -> str:
        token = token_for(self.http, self.credentials(username) if username else None, [*scopes])
        self.secrets.add(token)
        return token

    def snapshot(self) -> dict[str, Any]:
        """Everything an attack might try to change, as the admin sees it."""
        state: dict[str, Any] = {}
        for repo in (TEAM_A, TEAM_B, OPEN):
            tags = tags_of(self.admin, repo) or []
            state[repo] = {
                tag: self.admin.head(f"/v2/{repo}/manifests/{tag}").headers.get(
                    "docker-content-digest"
                )
                for tag in tags
            }
            image = self.images[repo]
            state[f"{repo} blobs"] = [
                self.admin.head(f"/v2/{repo}/blobs/{digest}").status_code
                for digest in (image.config_digest, image.layer_digest)
            ]
        state["referrers"] = self.admin.get(
            f"/v2/{TEAM_B}/referrers/{self.images[TEAM_B].digest}"
        ).json()
        state["catalog"] = self.admin.get("/v2/_catalog").json()
        return state


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    server = RunningServer(
        tmp_path_factory.mktemp("attacks") / "data",
        env={"OCIREGISTRY_LOGIN_MAX_FAILURES": "1000"},
    ).start()
    try:
        cli_all(
            server,
            *(
                ("user", "add", name, "--password-stdin", "<", password + "\n")
                for name, password in PASSWORDS.items()
            ),
        )
        cli_all(
            server,
            ("registry", "create", "atk-team-a", "--owner", "atk-alice"),
            ("registry", "create", "atk-team-b", "--owner", "atk-bob"),
            ("registry", "create", "atk-open", "--public", "--owner", "atk-bob"),
            ("registry", "create", "atk-mallory", "--owner", "atk-mallory"),
            ("registry", "create", "atk-carol-reg", "--owner", "atk-carol"),
            ("registry", "create", "atk-dave-reg", "--owner", "atk-dave"),
            ("group", "member", "atk-alice", "atk-dev", "developer"),
            ("group", "member", "atk-bob", "atk-dev", "developer"),
            ("group", "member", "atk-bob", "atk-erin", "developer"),
        )
        with (
            httpx.Client(base_url=server.url, timeout=30, headers=SAME_REQUEST_ID) as http,
            httpx.Client(base_url=server.url, timeout=30, auth=server.admin) as admin,
        ):
            images = {
                repo: push_image(admin, repo, repo, tag=TAG) for repo in (TEAM_A, TEAM_B, OPEN)
            }
            referrer = push_referrer(admin, TEAM_B, images[TEAM_B].digest)
            arena = Arena(server, http, admin, images, referrer, kid="")
            sample = arena.token("atk-alice", f"repository:{TEAM_A}:pull")
            arena.kid = jwt_header(sample)["kid"]
            GENUINE_CLAIMS.update(jwt_claims(sample))
            arena.secrets.update(PASSWORDS.values())
            arena.secrets.add(server.admin[1])
            yield arena
    finally:
        server.kill()


def push_referrer(client: httpx.Client, repo: str, subject: str) -> str:
    """A signature-like artifact whose `subject` is `subject`; returns its digest."""
    empty = b"{}"
    push_blob(client, repo, empty)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": digest_of(empty),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": digest_of(empty),
                    "size": 2,
                }
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        }
    )
    put_manifest(client, repo, digest_of(manifest), manifest)
    return digest_of(manifest)


# -- what a forged token tries to do --------------------------------------------------------


def admin_claims(**override: Any) -> dict[str, Any]:
    """What an attacker would like a token to say: the platform admin, allowed everything on
    a private repository of someone else. Built on the claims of a genuine token, so that it
    has every claim the registry puts in its own (a `None` in `override` removes one)."""
    now = int(time.time())
    claims = {
        **GENUINE_CLAIMS,
        "sub": "admin",
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": "forged",
        "access": [{"type": "repository", "name": TEAM_B, "actions": ["pull", "push", "delete"]}],
    }
    claims.pop("pat", None)
    claims.update(override)
    return {key: value for key, value in claims.items() if value is not None}


def attempts(arena: Arena, authorization: str) -> list[httpx.Response]:
    """Pull, push and delete in TEAM_B with `authorization`."""
    headers = {"Authorization": authorization}
    image = arena.images[TEAM_B]
    return [
        arena.http.get(f"/v2/{TEAM_B}/manifests/{TAG}", headers=headers),
        arena.http.put(
            f"/v2/{TEAM_B}/manifests/forged",
            content=image.manifest,
            headers={**headers, "Content-Type": OCI_MANIFEST},
        ),
        arena.http.delete(f"/v2/{TEAM_B}/manifests/{TAG}", headers=headers),
        arena.http.get("/v2/_catalog", headers=headers),
    ]


def assert_token_refused(arena: Arena, token: str, what: str) -> None:
    """Every use of `token` is refused as an invalid token, and nothing changes."""
    arena.secrets.add(token)
    before = arena.snapshot()
    for response in attempts(arena, bearer(token)):
        assert response.status_code == 401, f"{what}: {describe(response)}"
        assert oci_error(response) == "UNAUTHORIZED", f"{what}: {describe(response)}"
        scheme, challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert (scheme, challenge.get("error")) == ("bearer", "invalid_token"), (
            f"{what}: {response.headers}"
        )
    assert arena.snapshot() == before, f"{what} changed something"


def test_a_genuine_token_is_accepted(arena: Arena) -> None:
    """The control for the forgeries below: a token signed with the registry's own key and
    carrying valid claims works, so each forgery fails for its one flaw alone."""
    kid, key = server_signing_key(arena.server)
    assert kid == arena.kid
    token = encode_jwt({"alg": "ES256", "typ": "JWT", "kid": kid}, admin_claims(), es256(key))
    arena.secrets.add(token)
    response = arena.http.get(
        f"/v2/{TEAM_B}/manifests/{TAG}", headers={"Authorization": bearer(token)}
    )
    assert response.status_code == 200, describe(response)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(arena: Arena, alg: str) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": arena.kid}
    assert_token_refused(arena, encode_jwt(header, admin_claims()), f"alg {alg!r}")


def test_hs256_keyed_with_the_registrys_public_key(arena: Arena) -> None:
    """The registry publishes no public key, but any of its tokens gives it away (ECDSA key
    recovery; the `kid`, a hash of the key, says which candidate). HMAC-signing with it in every
    encoding a confused verifier might use gets nowhere."""
    sample = arena.token("atk-alice", f"repository:{TEAM_A}:pull")
    keys = [key for key in recover_public_keys(sample) if libtrust_key_id(key) == arena.kid]
    assert len(keys) == 1, "the registry's public key was not recovered from its token"
    for encoding, secret in key_encodings(keys[0]).items():
        for header in ({"alg": "HS256", "typ": "JWT", "kid": arena.kid}, {"alg": "HS256"}):
            token = encode_jwt(header, admin_claims(), hs256(secret))
            assert_token_refused(arena, token, f"HS256 keyed with the public key ({encoding})")


def test_hs256_keyed_with_another_public_key(arena: Arena) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    for encoding, secret in key_encodings(other).items():
        header = {"alg": "HS256", "typ": "JWT", "kid": libtrust_key_id(other)}
        token = encode_jwt(header, admin_claims(), hs256(secret))
        assert_token_refused(arena, token, f"HS256 keyed with a random key ({encoding})")


def test_known_kid_signed_with_another_key(arena: Arena) -> None:
    own = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "typ": "JWT", "kid": arena.kid}
    assert_token_refused(arena, encode_jwt(header, admin_claims(), es256(own)), "foreign key")
    header = {"alg": "ES256", "typ": "JWT"}
    assert_token_refused(arena, encode_jwt(header, admin_claims(), es256(own)), "no kid")


@pytest.mark.parametrize("kid", ["own", "registry's"])
def test_key_carried_in_the_header(arena: Arena, kid: str) -> None:
    """`jwk`, `x5c` and `jku` name the attacker's own key; none is trusted, and `jku` is never
    even fetched."""
    own = ec.generate_private_key(ec.SECP256R1())
    key_id = libtrust_key_id(own.public_key()) if kid == "own" else arena.kid
    fetched: list[str] = []
    jwks = canonical_json({"keys": [{**public_jwk(own.public_key()), "kid": key_id}]})

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: object) -> None:
            pass

    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        jku = f"http://127.0.0.1:{listener.server_address[1]}/jwks.json"
        certificate = base64.b64encode(self_signed_certificate(own)).decode()
        base = {"alg": "ES256", "typ": "JWT", "kid": key_id}
        for extra in (
            {"jwk": public_jwk(own.public_key())},
            {"x5c": [certificate]},
            {"jku": jku},
            {"x5u": jku},
        ):
            token = encode_jwt({**base, **extra}, admin_claims(), es256(own))
            assert_token_refused(arena, token, f"key in the header: {sorted(extra)}")
    finally:
        listener.shutdown()
        listener.server_close()
    assert fetched == [], f"the registry fetched the attacker's key set: {fetched}"


FROM_NOW = "from now"


@pytest.mark.parametrize(
    ("flaw", "override"),
    [
        # times as (FROM_NOW, seconds): taken when the test runs, not when it is collected
        # (a long run reaches these tests more than ten minutes later)
        ("expired", {"exp": (FROM_NOW, -60), "iat": (FROM_NOW, -400)}),
        ("not yet valid", {"nbf": (FROM_NOW, 600)}),
        ("issued in the future", {"iat": (FROM_NOW, 600)}),
        ("wrong audience", {"aud": "some-other-registry"}),
        ("wrong issuer", {"iss": "https://evil.example"}),
        ("no expiry", {"exp": None}),
        ("no audience", {"aud": None}),
        ("no issuer", {"iss": None}),
        ("another kind of token", {"typ": "session"}),
    ],
)
def test_genuine_signature_on_invalid_claims(
    arena: Arena, flaw: str, override: dict[str, Any]
) -> None:
    """Signed with the registry's own key, yet refused for one bad claim."""
    override = {
        name: int(time.time()) + value[1] if isinstance(value, tuple) else value
        for name, value in override.items()
    }
    kid, key = server_signing_key(arena.server)
    token = encode_jwt(
        {"alg": "ES256", "typ": "JWT", "kid": kid}, admin_claims(**override), es256(key)
    )
    assert_token_refused(arena, token, flaw)


def test_tampered_claims_keep_the_signature(arena: Arena) -> None:
    """A real token of the developer for pulling TEAM_A, its payload edited to grant push and
    delete on TEAM_B, or to name the admin: the signature no longer matches."""
    real = arena.token("atk-dev", f"repository:{TEAM_A}:pull")
    header, payload, signature = real.split(".")
    claims = jwt_claims(real)
    for change in (
        {"access": admin_claims()["access"]},
        {"sub": "admin"},
        {"exp": claims["exp"] + 3600},
    ):
        forged_payload = b64encode(canonical_json({**claims, **change}))
        assert_token_refused(arena, f"{header}.{forged_payload}.{signature}", f"tampered {change}")
    assert_token_refused(arena, f"{header}.{payload}.", "signature removed")
    assert_token_refused(arena, f"{header}.{payload}", "two parts")
    assert_token_refused(arena, "not-a-jwt", "garbage")


# -- tokens used beyond what they grant -----------------------------------------------------


def test_token_for_one_repository_used_on_another(arena: Arena) -> None:
    """atk-dev may push to both teams, but a token for TEAM_A does nothing in TEAM_B: 401
    insufficient_scope with a challenge for the scope that is needed, and nothing changes."""
    token = arena.token("atk-dev", f"repository:{TEAM_A}:pull,push,delete")
    before = arena.snapshot()
    needs = [f"repository:{TEAM_B}:{s}" for s in ("pull", "pull,push", "delete")]
    for response, scope in zip(attempts(arena, bearer(token))[:3], needs, strict=True):
        assert response.status_code == 401, describe(response)
        _, challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert challenge.get("scope") == scope, challenge
        assert challenge.get("error") == "insufficient_scope", challenge
    assert arena.snapshot() == before


def test_pull_token_used_to_push_and_delete(arena: Arena) -> None:
    token = arena.token("atk-dev", f"repository:{TEAM_B}:pull")
    before = arena.snapshot()
    pull, push, delete, _ = attempts(arena, bearer(token))
    assert pull.status_code == 200, describe(pull)
    for response, scope in ((push, "pull,push"), (delete, "delete")):
        assert response.status_code == 401, describe(response)
        _, challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert challenge.get("scope") == f"repository:{TEAM_B}:{scope}", challenge
        assert challenge.get("error") == "insufficient_scope", challenge
    assert arena.snapshot() == before


def test_read_only_access_token_cannot_push(arena: Arena) -> None:
    """A read-only personal access token pulls; it pushes and deletes nothing, whether used as
    a password or traded for a registry token."""
    _, secret = create_pat(arena.server, "atk-dev", "read-only", read_only=True)
    arena.secrets.add(secret)
    token = token_for(arena.http, ("atk-dev", secret), [f"repository:{TEAM_B}:pull,push,delete"])
    assert granted(token) == {f"repository:{TEAM_B}": {"pull"}}
    before = arena.snapshot()
    for authorization in (basic("atk-dev", secret), bearer(token)):
        pull, push, delete, _ = attempts(arena, authorization)
        assert pull.status_code == 200, describe(pull)
        for response in (push, delete):
            assert response.status_code in (401, 403), describe(response)
            assert oci_error(response) in ("UNAUTHORIZED", "DENIED"), describe(response)
    assert arena.snapshot() == before


def _refused_as_password(arena: Arena, username: str, secret: str, what: str) -> None:
    """`secret` does not sign `username` in: not on /v2, not at the token endpoint."""
    headers = {"Authorization": basic(username, secret), **fresh_address()}
    response = arena.http.get(f"/v2/{TEAM_A}/manifests/{TAG}", headers=headers)
    assert response.status_code == 401, f"{what} as {username}'s password: {describe(response)}"
    response = arena.http.get(
        "/auth/token", params={"scope": f"repository:{TEAM_A}:pull"}, headers=headers
    )
    assert response.status_code == 401, f"{what} as {username}'s password: {describe(response)}"
    form = {"grant_type": "password", "username": username, "password": secret}
    response = arena.http.post("/auth/token", data=form, headers=fresh_address())
    assert response.status_code == 401, f"{what} as {username}'s password: {describe(response)}"


def test_registry_and_refresh_tokens_are_not_passwords(arena: Arena) -> None:
    token = arena.token("atk-alice", f"repository:{TEAM_A}:pull")
    form = {"grant_type": "password", "username": "atk-alice", "password": PASSWORDS["atk-alice"]}
    refresh = arena.http.post("/auth/token", data=form).json()["refresh_token"]
    arena.secrets.add(refresh)
    for username in ("atk-alice", "admin"):
        _refused_as_password(arena, username, token, "a registry token")
        _refused_as_password(arena, username, refresh, "a refresh token")
    response = arena.http.get(
        f"/v2/{TEAM_A}/manifests/{TAG}", headers={"Authorization": bearer(refresh)}
    )
    assert response.status_code == 401, f"a refresh token as a Bearer token: {describe(response)}"


def test_access_token_of_another_user(arena: Arena) -> None:
    """Alice's personal access token signs in Alice only; with another username it is just a
    wrong password."""
    _, pat = create_pat(arena.server, "atk-alice", "someone-elses")
    arena.secrets.add(pat)
    response = arena.http.get(
        f"/v2/{TEAM_A}/manifests/{TAG}", headers={"Authorization": basic("atk-alice", pat)}
    )
    assert response.status_code == 200, describe(response)
    for username in ("atk-mallory", "atk-bob", "admin", "atk-nobody"):
        _refused_as_password(arena, username, pat, "alice's access token")


def test_removed_member_loses_access_at_once(arena: Arena) -> None:
    """A registry token outlives nothing: Erin, removed from Bob's group, can no longer use the
    token she got as a developer there (the policy is asked on every request)."""
    token = arena.token("atk-erin", f"repository:{TEAM_B}:pull,push,delete")
    assert granted(token) == {f"repository:{TEAM_B}": {"pull", "push", "delete"}}
    assert attempts(arena, bearer(token))[0].status_code == 200
    cli(arena.server, "group", "member", "atk-bob", "atk-erin", "none")
    before = arena.snapshot()
    pull, push, delete, _ = attempts(arena, bearer(token))
    for response in (pull, push, delete):
        assert (response.status_code, oci_error(response)) == (404, "NAME_UNKNOWN"), describe(
            response
        )
    response = arena.http.get(
        "/v2/_catalog", headers={"Authorization": basic(*arena.credentials("atk-erin"))}
    )
    assert TEAM_B not in response.json()["repositories"], response.json()
    assert arena.snapshot() == before


# -- scope strings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        "repository",
        f"repository:{TEAM_A}",
        f"repository:{TEAM_A}:",
        "repository::pull",
        f"repository:{TEAM_A}:pull,,push",
        f"repository:{TEAM_A}:pull:push",
        f"repository:{TEAM_A}:pull;push",
        ":::",
    ],
)
def test_malformed_scope_is_refused(arena: Arena, scope: str) -> None:
    for credentials in (None, arena.credentials("atk-alice")):
        response = request_token(arena.http, credentials, [scope])
        assert response.status_code == 400, f"{scope!r}: {describe(response)}"
        assert "scope" in response.text.lower(), describe(response)


def test_repeated_scopes_are_merged(arena: Arena) -> None:
    scopes = [f"repository:{TEAM_A}:pull", f"repository:{TEAM_A}:push", f"repository:{TEAM_A}:pull"]
    token = arena.token("atk-alice", *scopes)
    assert granted(token) == {f"repository:{TEAM_A}": {"pull", "push"}}
    claims = jwt_claims(token)["access"]
    assert len(claims) == 1, claims
    # several scopes in one parameter, space-separated, as some clients send them
    token = arena.token("atk-alice", f"repository:{TEAM_A}:pull repository:{TEAM_A}:delete")
    assert granted(token) == {f"repository:{TEAM_A}": {"pull", "delete"}}


@pytest.mark.parametrize(
    "scope",
    [
        f"repositorie:{TEAM_A}:pull",
        f"registry:{TEAM_A}:pull",
        f"admin:{TEAM_A}:*",
        "registry:users:*",
        f"repository:{TEAM_A}:admin",
        f"repository:{TEAM_A}:write",
    ],
)
def test_unknown_resource_types_and_actions_grant_nothing(arena: Arena, scope: str) -> None:
    token = arena.token("atk-alice", scope)
    assert jwt_claims(token)["access"] == [], f"{scope}: {jwt_claims(token)['access']}"


def test_wildcard_grants_only_the_allowed_subset(arena: Arena) -> None:
    cases = [
        ("atk-alice", TEAM_A, {"pull", "push", "delete"}),
        ("atk-mallory", OPEN, {"pull"}),
        ("atk-mallory", TEAM_B, set()),
        (None, OPEN, {"pull"}),
        (None, TEAM_B, set()),
    ]
    for username, repo, want in cases:
        token = arena.token(username, f"repository:{repo}:*")
        assert granted(token) == ({f"repository:{repo}": want} if want else {}), (
            f"{username} asking * on {repo}: {jwt_claims(token)['access']}"
        )


# -- malformed credentials ------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":password-without-user").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Basic YWxpY2U6cGFzc3dvcmQ=extra",
        "Digest username=admin",
        "Bearer",
    ],
)
def test_malformed_authorization_is_refused(arena: Arena, authorization: str) -> None:
    before = arena.snapshot()
    headers = {"Authorization": authorization, **fresh_address()}
    response = arena.http.get(f"/v2/{OPEN}/manifests/{TAG}", headers=headers)
    assert response.status_code == 401, describe(response)
    assert oci_error(response) == "UNAUTHORIZED", describe(response)
    assert parse_challenge(response.headers.get("www-authenticate"))[0] == "bearer"
    response = arena.http.get(
        "/auth/token", params={"scope": f"repository:{OPEN}:pull"}, headers=headers
    )
    assert response.status_code == 401, describe(response)
    assert arena.snapshot() == before


# -- disabling a user and revoking a token act at once --------------------------------------


def test_disabled_user_is_refused_at_once(arena: Arena) -> None:
    user = "atk-carol"
    repo = "atk-carol-reg/app"
    push_image(arena.admin, repo, "carol", tag=TAG)
    _, pat = create_pat(arena.server, user, "ci")
    token = arena.token(user, f"repository:{repo}:pull,push")
    form = {"grant_type": "password", "username": user, "password": PASSWORDS[user]}
    refresh = arena.http.post("/auth/token", data=form).json()["refresh_token"]
    arena.secrets.update({pat, refresh})
    ways = {
        "password": basic(user, PASSWORDS[user]),
        "access token": basic(user, pat),
        "registry token": bearer(token),
    }
    for way, authorization in ways.items():
        response = arena.http.get(
            f"/v2/{repo}/manifests/{TAG}", headers={"Authorization": authorization}
        )
        assert response.status_code == 200, f"{way} before disabling: {describe(response)}"

    cli(arena.server, "user", "disable", user)
    try:
        for way, authorization in ways.items():
            headers = {"Authorization": authorization, **fresh_address()}
            for response in (
                arena.http.get(f"/v2/{repo}/manifests/{TAG}", headers=headers),
                arena.http.put(
                    f"/v2/{repo}/manifests/after-disable",
                    content=arena.images[OPEN].manifest,
                    headers={**headers, "Content-Type": OCI_MANIFEST},
                ),
            ):
                assert response.status_code == 401, f"{way} after disabling: {describe(response)}"
        response = arena.http.get(
            "/auth/token",
            params={"scope": f"repository:{repo}:pull"},
            headers={"Authorization": ways["password"], **fresh_address()},
        )
        assert response.status_code == 401, describe(response)
        response = arena.http.post(
            "/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh},
            headers=fresh_address(),
        )
        assert response.status_code == 401, f"refresh token after disabling: {describe(response)}"
        assert tags_of(arena.admin, repo) == [TAG]
    finally:
        cli(arena.server, "user", "enable", user)
    response = arena.http.get(
        f"/v2/{repo}/manifests/{TAG}", headers={"Authorization": ways["password"]}
    )
    assert response.status_code == 200, f"after enabling again: {describe(response)}"


def test_revoked_access_token_is_refused_at_once(arena: Arena) -> None:
    """A revoked personal access token stops working at once, and so do the registry tokens
    and refresh tokens issued through it; the user's password keeps working."""
    user = "atk-dave"
    repo = "atk-dave-reg/app"
    push_image(arena.admin, repo, "dave", tag=TAG)
    token_id, pat = create_pat(arena.server, user, "ci")
    registry_token = token_for(arena.http, (user, pat), [f"repository:{repo}:pull,push"])
    assert jwt_claims(registry_token)["sub"] == user
    form = {"grant_type": "password", "username": user, "password": pat}
    refresh = arena.http.post("/auth/token", data=form).json()["refresh_token"]
    arena.secrets.update({pat, registry_token, refresh})
    ways = {"access token": basic(user, pat), "registry token": bearer(registry_token)}
    for way, authorization in ways.items():
        response = arena.http.get(
            f"/v2/{repo}/manifests/{TAG}", headers={"Authorization": authorization}
        )
        assert response.status_code == 200, f"{way} before revoking: {describe(response)}"

    cli(arena.server, "token", "revoke", user, token_id)
    for way, authorization in ways.items():
        headers = {"Authorization": authorization, **fresh_address()}
        response = arena.http.get(f"/v2/{repo}/manifests/{TAG}", headers=headers)
        assert response.status_code == 401, f"{way} after revoking: {describe(response)}"
        response = arena.http.delete(f"/v2/{repo}/manifests/{TAG}", headers=headers)
        assert response.status_code == 401, f"{way} after revoking: {describe(response)}"
    response = request_token(arena.http, (user, pat), [f"repository:{repo}:pull"])
    assert response.status_code == 401, describe(response)
    response = arena.http.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    assert response.status_code == 401, f"refresh token after revoking: {describe(response)}"
    assert tags_of(arena.admin, repo) == [TAG]
    response = arena.http.get(
        f"/v2/{repo}/manifests/{TAG}", headers={"Authorization": basic(user, PASSWORDS[user])}
    )
    assert response.status_code == 200, f"the password after revoking: {describe(response)}"


# -- probing a private registry -------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "atk-mallory"])
def test_private_image_cannot_be_probed(arena: Arena, who: str) -> None:
    """By digest, through tags, referrers, blobs or the catalog, a private image answers as a
    missing one does: 404 NAME_UNKNOWN to a stranger, 401 to the anonymous."""
    image = arena.images[TEAM_B]
    credentials = None if who == "anonymous" else arena.credentials(who)
    headers = {"Authorization": basic(*credentials)} if credentials else {}
    want = (401, "UNAUTHORIZED") if credentials is None else (404, "NAME_UNKNOWN")
    before = arena.snapshot()
    for path in (
        f"manifests/{image.digest}",
        f"manifests/{TAG}",
        f"manifests/{arena.referrer}",
        "tags/list",
        f"referrers/{image.digest}",
        f"blobs/{image.layer_digest}",
        f"blobs/{image.config_digest}",
    ):
        answers = []
        for registry in ("atk-team-b", "atk-nothing-here"):
            response = arena.http.get(f"/v2/{registry}/app/{path}", headers=headers)
            assert (response.status_code, oci_error(response)) == want, describe(response)
            answers.append(response.text.replace(registry, "<registry>"))
        assert answers[0] == answers[1], f"{path}: a private registry answers unlike a missing one"

    # the catalog, with Basic credentials and with a catalog token
    catalog_token = arena.token(None if credentials is None else who, "registry:catalog:*")
    for authorization in ([headers] if headers else []) + [
        {"Authorization": bearer(catalog_token)}
    ]:
        response = arena.http.get("/v2/_catalog", headers=authorization)
        assert response.status_code == 200, describe(response)
        listed = response.json()["repositories"]
        assert TEAM_B not in listed and TEAM_A not in listed, listed
        assert OPEN in listed, listed

    # a token asked for the private repository grants nothing
    token = arena.token(
        None if credentials is None else who, f"repository:{TEAM_B}:pull,push,delete"
    )
    assert jwt_claims(token)["access"] == []
    assert attempts(arena, bearer(token))[0].status_code in (401, 404)
    assert arena.snapshot() == before


def test_blob_mount_from_a_private_registry_reveals_nothing(arena: Arena) -> None:
    """Mallory mounts TEAM_B's layer into her own registry: the answer is a plain new upload
    (202), exactly as for a digest nobody has, and nothing is mounted."""
    image = arena.images[TEAM_B]
    headers = {"Authorization": basic(*arena.credentials("atk-mallory"))}
    before = arena.snapshot()
    answers = []
    for source, digest in (
        (TEAM_B, image.layer_digest),
        (TEAM_B, digest_of(b"a blob nobody has")),
        ("atk-nothing-here/app", image.layer_digest),
    ):
        target = f"atk-mallory/loot-{len(answers)}"
        response = arena.http.post(
            f"/v2/{target}/blobs/uploads/",
            params={"mount": digest, "from": source},
            headers=headers,
        )
        assert response.status_code == 202, describe(response)
        assert "docker-content-digest" not in response.headers, response.headers
        present = arena.admin.head(f"/v2/{target}/blobs/{digest}").status_code
        assert present == 404, f"{digest} from {source} was mounted into {target}"
        answers.append(
            (
                response.content,
                sorted(set(response.headers) - {"date", "location", "docker-upload-uuid"}),
                response.headers.get("range"),
            )
        )
    assert answers[0] == answers[1] == answers[2], answers
    assert arena.snapshot() == before


# -- failed sign-ins ------------------------------------------------------------------------


def _failed_sign_in(arena: Arena, kind: str, username: str, password: str) -> httpx.Response:
    headers = fresh_address()
    if kind == "v2":
        headers["Authorization"] = basic(username, password)
        return arena.http.get(f"/v2/{OPEN}/tags/list", headers=headers)
    if kind == "token GET":
        headers["Authorization"] = basic(username, password)
        return arena.http.get(
            "/auth/token", params={"scope": f"repository:{OPEN}:pull"}, headers=headers
        )
    form = {"grant_type": "password", "username": username, "password": password}
    return arena.http.post("/auth/token", data=form, headers=headers)


def _clear_account(arena: Arena, username: str) -> None:
    """A successful sign-in clears the account's failures, so each attempt starts alike."""
    headers = {"Authorization": basic(*arena.credentials(username)), **fresh_address()}
    assert arena.http.get("/v2/", headers=headers).status_code == 200


@pytest.mark.parametrize("kind", ["v2", "token GET", "token POST"])
def test_failed_sign_ins_for_existing_and_missing_accounts_look_alike(
    arena: Arena, kind: str
) -> None:
    answers = {}
    for label, username, password in (
        ("existing account, wrong password", "atk-mallory", "not-her-password"),
        ("missing account", "atk-nobody-at-all", "not-her-password"),
        ("existing account, wrong access token", "atk-mallory", "ocir_0123456789abcdef_nope"),
        ("missing account, an access token", "atk-nobody-at-all", "ocir_0123456789abcdef_nope"),
    ):
        response = _failed_sign_in(arena, kind, username, password)
        _clear_account(arena, "atk-mallory")
        answers[label] = (
            response.status_code,
            response.content.replace(username.encode(), b"<user>"),
            sorted(
                (k, v) for k, v in response.headers.items() if k not in ("date", "content-length")
            ),
        )
    first = next(iter(answers.values()))
    assert first[0] in (400, 401), first
    for label, answer in answers.items():
        assert answer == first, f"{kind}: {label} answers {answer}, unlike {first}"


def test_failed_sign_ins_take_the_same_time(arena: Arena) -> None:
    """A wrong password for an account that exists costs what one for a missing account does
    (both verify a password hash). Medians of several interleaved attempts, compared with a
    generous tolerance, so that only a real difference (e.g. skipping the hash) fails."""
    times: dict[str, list[float]] = {"existing": [], "missing": []}
    for attempt in range(5):
        for label, username in (("existing", "atk-mallory"), ("missing", f"atk-ghost-{attempt}")):
            started = time.perf_counter()
            response = _failed_sign_in(arena, "v2", username, f"wrong-password-{attempt}")
            times[label].append(time.perf_counter() - started)
            assert response.status_code == 401, describe(response)
        _clear_account(arena, "atk-mallory")
    existing, missing = (statistics.median(times[label]) for label in ("existing", "missing"))
    slower, faster = max(existing, missing), min(existing, missing)
    assert slower <= 3 * faster + 0.05, (
        f"failed sign-ins: existing account {existing * 1000:.1f} ms, "
        f"missing account {missing * 1000:.1f} ms (medians of {times})"
    )


def test_brute_force_is_throttled(tmp_path: Path) -> None:
    """After OCIREGISTRY_LOGIN_MAX_FAILURES failed sign-ins for one account (from any address),
    that account is refused with 429 and Retry-After, even with the right password; a missing
    account is treated the same; other accounts are not affected."""
    server = RunningServer(tmp_path / "data", env={"OCIREGISTRY_LOGIN_MAX_FAILURES": "3"}).start()
    try:
        add_user(server, "victim", "victim-password-1")
        add_user(server, "bystander", "bystander-password-1")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for username in ("victim", "no-such-user"):
                for attempt in range(3):
                    headers = {
                        "Authorization": basic(username, f"guess-{attempt}"),
                        **fresh_address(),
                    }
                    response = http.get("/v2/", headers=headers)
                    assert response.status_code == 401, describe(response)
                right = "victim-password-1"
                form = {"grant_type": "password", "username": username, "password": right}
                for method, path, authorization, data in (
                    ("GET", "/v2/", basic(username, right), None),
                    ("GET", "/auth/token", basic(username, right), None),
                    ("POST", "/auth/token", None, form),
                ):
                    headers = fresh_address()
                    if authorization:
                        headers["Authorization"] = authorization
                    response = http.request(method, path, headers=headers, data=data)
                    assert response.status_code == 429, f"{username}: {describe(response)}"
                    retry_after = response.headers.get("retry-after", "")
                    assert retry_after.isdigit() and 0 < int(retry_after) <= 300, response.headers
            headers = {
                "Authorization": basic("bystander", "bystander-password-1"),
                **fresh_address(),
            }
            assert http.get("/v2/", headers=headers).status_code == 200
        log = server.log_path.read_text(errors="replace")
        for secret in ("victim-password-1", "bystander-password-1", "guess-0", "guess-2"):
            assert secret not in log, f"the server log holds the secret {secret!r}"
    finally:
        server.kill()


# -- last: the log ----------------------------------------------------------------------------


def test_the_server_log_holds_no_secrets(arena: Arena) -> None:
    """Every password, access token, refresh token and registry token used above (genuine or
    forged) is absent from the server's log. Runs last in this module."""
    log = arena.server.log_path.read_text(errors="replace")
    assert "sign-in failed" in log or "refused" in log, "the log records no refusals at all"
    leaked = sorted(secret[:24] + "…" for secret in arena.secrets if secret and secret in log)
    assert not leaked, f"the server log holds secrets: {leaked}"
    for secret in arena.secrets:  # nor a JWT's signature alone
        if secret.count(".") == 2 and len(secret.rsplit(".", 1)[1]) > 20:
            assert secret.rsplit(".", 1)[1] not in log
