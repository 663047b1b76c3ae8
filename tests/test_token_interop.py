"""Our server as the token server of another registry: CNCF Distribution 2.8 (Debian's
`docker-registry`), configured per the Docker token authentication spec with our `/auth/token`
as its realm and the certificates of `ociregistry signing-cert` as its `rootcertbundle`; and
Distribution 3, which finds a token's key by its `kid` in a JWK Set (`auth.token.jwks`, the file
`ociregistry signing-cert --jwks` prints). A generic JWT library (PyJWT's `PyJWKClient`) verifies
our tokens against the JWK Set the server publishes at `/auth/jwks.json`.

Distribution checks our tokens with its own code: the signature against the keys it was given,
found by the token's `kid` (a libtrust key ID), then `iss`, `aud`, `exp`, `nbf` and the `access`
claim. So a push to Distribution works exactly when our server granted it: the token of a user
who may push is accepted, and pull-only tokens, tokens for another repository and the empty
grant of a user without access are refused.

Everything goes over HTTP, as a client that follows Distribution's challenge would; the clients
the rest of the suite drives are not needed. Without /usr/bin/docker-registry the 2.8 tests are
skipped, and in the full run (OCIREGISTRY_REQUIRE_CLIENTS=1, set by scripts/test) they fail.
Distribution 3 is not packaged: its tests run when OCIREGISTRY_DISTRIBUTION_V3 names a binary
built from tag v3.0.0 (see bench/README.md), and are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from authtools import (
    OCI_MANIFEST,
    add_user,
    basic,
    bearer,
    canonical_json,
    cli,
    describe,
    digest_of,
    encode_jwt,
    es256,
    jwt_claims,
    jwt_header,
    libtrust_key_id,
    make_manifest,
    parse_challenge,
)
from support.server import RunningServer, free_port

DISTRIBUTION = Path("/usr/bin/docker-registry")
DISTRIBUTION_V3_ENV = "OCIREGISTRY_DISTRIBUTION_V3"  # path of a Distribution v3 binary
REQUIRE_CLIENTS_ENV = "OCIREGISTRY_REQUIRE_CLIENTS"
TOKEN_SERVICE = "ociregistry"  # our default token_service: the `aud` of our tokens
ISSUER = "ociregistry"  # the `iss` of our tokens
READY_TIMEOUT_SECONDS = 30.0
IMAGE = "app"
BUNDLE = "ociregistry-tokens.pem"  # what `ociregistry signing-cert` printed
JWKS = "ociregistry-tokens.jwks"  # what `ociregistry signing-cert --jwks` printed


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in the full run (scripts/test sets the variable)."""
    if os.environ.get(REQUIRE_CLIENTS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_CLIENTS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


class Distribution:
    """`docker-registry serve config.yml` on 127.0.0.1, trusting our server's tokens: through
    the certificate bundle (2.8) or the JWK Set (3.x) it is given as `trust`."""

    def __init__(self, binary: Path, workdir: Path, realm: str, trust: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "distribution.log"
        self.config_path.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(16)}\n"
            "auth:\n"
            "  token:\n"
            f"    realm: {realm}\n"
            f"    service: {TOKEN_SERVICE}\n"
            f"    issuer: {ISSUER}\n"
            f"    {trust}\n"
            "health:\n  storagedriver:\n    enabled: false\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Distribution:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},  # v3 exports traces
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not become ready:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""


@dataclass(frozen=True)
class Setup:
    """Our server, Distribution trusting it, and who may do what in which repository."""

    ours: RunningServer
    theirs: Distribution
    repo: str  # `{namespace}/app`: a private registry on our server, owned by `owner`
    owner: tuple[str, str]
    stranger: tuple[str, str]  # a user with no role in the namespace

    def explain(self, response: httpx.Response) -> str:
        return f"{describe(response)}\nDistribution's log:\n{self.theirs.log()}"


def distribution_binary(version: str) -> Path:
    """The binary of that Distribution version; the test is skipped (or fails) without it."""
    if version == "2.8":
        if not DISTRIBUTION.exists():
            unavailable(f"{DISTRIBUTION} is not installed (apt-get install docker-registry)")
        return DISTRIBUTION
    binary = Path(os.environ.get(DISTRIBUTION_V3_ENV, "") or "/nonexistent")
    if not binary.is_file():
        pytest.skip(f"set {DISTRIBUTION_V3_ENV} to a Distribution v3 binary to run this")
    return binary


@pytest.fixture(scope="module", params=["2.8", "3"], ids=["distribution-2.8", "distribution-3"])
def setup(
    request: pytest.FixtureRequest, server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    binary = distribution_binary(request.param)
    suffix = uuid.uuid4().hex[:8]
    namespace, owner, stranger = f"interop{suffix}", f"io-owner{suffix}", f"io-other{suffix}"
    password = secrets.token_urlsafe(12)
    add_user(server, owner, password)
    add_user(server, stranger, password)
    cli(server, "registry", "create", namespace, "--owner", owner)
    workdir = tmp_path_factory.mktemp("distribution")
    bundle, jwks = workdir / BUNDLE, workdir / JWKS
    bundle.write_text(cli(server, "signing-cert"))
    jwks.write_text(cli(server, "signing-cert", "--jwks"))
    # 2.8 knows no JWKS; 3.x is given only the JWK Set, so it is what makes our tokens pass.
    trust = f"rootcertbundle: {bundle}" if request.param == "2.8" else f"jwks: {jwks}"
    realm = f"{server.url}/auth/token"
    theirs = Distribution(binary, workdir, realm, trust).start()
    try:
        yield Setup(server, theirs, f"{namespace}/{IMAGE}", (owner, password), (stranger, password))
    finally:
        theirs.stop()


def challenge(setup: Setup, method: str, path: str) -> dict[str, str]:
    """Distribution's answer to an anonymous request: 401 and a Bearer challenge."""
    response = httpx.request(method, setup.theirs.url + path, timeout=30.0)
    assert response.status_code == 401, setup.explain(response)
    scheme, params = parse_challenge(response.headers.get("www-authenticate"))
    assert scheme == "bearer", setup.explain(response)
    return params


def token_from_realm(setup: Setup, credentials: tuple[str, str], scope: str) -> str:
    """What docker does with a challenge: ask its realm for the service and scope, signed in."""
    params = challenge(setup, "GET", "/v2/")
    response = httpx.get(
        params["realm"],
        params={"service": params["service"], "scope": scope},
        headers={"Authorization": basic(*credentials)},
        timeout=30.0,
    )
    assert response.status_code == 200, describe(response)
    return response.json()["token"]


def theirs(setup: Setup, token: str) -> httpx.Client:
    """A client of Distribution that presents `token`."""
    return httpx.Client(
        base_url=setup.theirs.url, headers={"Authorization": bearer(token)}, timeout=60.0
    )


def upload(client: httpx.Client, repo: str, data: bytes) -> httpx.Response:
    """A blob in one piece, as Distribution 2.8 takes it: `POST`, then `PUT ?digest=`."""
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    if started.status_code != 202:
        return started
    location = httpx.URL(started.headers["location"])  # it carries Distribution's `_state`
    return client.put(
        location.copy_add_param("digest", digest_of(data)),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def bundle_key_ids(setup: Setup) -> set[str]:
    """The libtrust IDs of the keys of the certificates, and the `kid`s of the JWK Set, that
    Distribution could be given."""
    bundle = (setup.theirs.workdir / BUNDLE).read_bytes()
    jwks = json.loads((setup.theirs.workdir / JWKS).read_text())
    certificates = {
        libtrust_key_id(certificate.public_key())  # type: ignore[arg-type]
        for certificate in x509.load_pem_x509_certificates(bundle)
    }
    assert {key["kid"] for key in jwks["keys"]} == certificates, "one key, one ID, both forms"
    return certificates


def image(label: str) -> tuple[bytes, bytes, bytes]:
    """A config, a layer and the OCI manifest over them, each distinct by `label`."""
    config = canonical_json({"architecture": "amd64", "os": "linux", "label": label})
    layer = f"layer of {label}\n".encode() * 16
    return config, layer, make_manifest(config, layer)


def assert_no_pull_or_push(setup: Setup, client: httpx.Client) -> None:
    """Distribution refuses `client` both a read and an upload in `setup.repo`."""
    for method, path in (
        ("GET", f"/v2/{setup.repo}/tags/list"),
        ("POST", f"/v2/{setup.repo}/blobs/uploads/"),
    ):
        response = client.request(method, path)
        assert response.status_code == 401, setup.explain(response)


# -- the tests ------------------------------------------------------------------------------


def test_anonymous_requests_are_sent_to_our_realm(setup: Setup) -> None:
    params = challenge(setup, "GET", "/v2/")
    assert params["realm"] == f"{setup.ours.url}/auth/token"
    assert params["service"] == TOKEN_SERVICE
    params = challenge(setup, "POST", f"/v2/{setup.repo}/blobs/uploads/")
    resource, _, actions = params["scope"].rpartition(":")
    assert resource == f"repository:{setup.repo}"
    assert sorted(actions.split(",")) == ["pull", "push"]  # listed in Go's map order: it varies


def test_our_token_pushes_to_distribution_and_pulls_back(setup: Setup) -> None:
    scope = challenge(setup, "POST", f"/v2/{setup.repo}/blobs/uploads/")["scope"]
    token = token_from_realm(setup, setup.owner, scope)
    assert jwt_header(token)["kid"] in bundle_key_ids(setup), "no certificate has the token's key"
    config, layer, manifest = image("push")
    with theirs(setup, token) as client:
        for blob in (config, layer):
            response = upload(client, setup.repo, blob)
            assert response.status_code == 201, setup.explain(response)
        response = client.put(
            f"/v2/{setup.repo}/manifests/1.0",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201, setup.explain(response)

        response = client.get(f"/v2/{setup.repo}/manifests/1.0", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200, setup.explain(response)
        assert response.content == manifest
        assert response.headers["docker-content-digest"] == digest_of(manifest)
        response = client.get(f"/v2/{setup.repo}/blobs/{digest_of(layer)}")
        assert response.status_code == 200, setup.explain(response)
        assert response.content == layer


def test_a_pull_token_cannot_push(setup: Setup) -> None:
    token = token_from_realm(setup, setup.owner, f"repository:{setup.repo}:pull")
    with theirs(setup, token) as client:
        response = client.get(f"/v2/{setup.repo}/tags/list")
        assert response.status_code in (200, 404), setup.explain(response)  # 404: nothing yet
        response = client.post(f"/v2/{setup.repo}/blobs/uploads/")
        assert response.status_code == 401, setup.explain(response)
        scheme, params = parse_challenge(response.headers.get("www-authenticate"))
        assert (scheme, params.get("error")) == ("bearer", "insufficient_scope")
        _, _, manifest = image("pull-only")
        response = client.put(
            f"/v2/{setup.repo}/manifests/pull-only",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 401, setup.explain(response)


def test_a_token_for_another_repository_is_refused(setup: Setup) -> None:
    namespace = setup.repo.split("/")[0]
    token = token_from_realm(setup, setup.owner, f"repository:{namespace}/other:pull,push")
    with theirs(setup, token) as client:
        assert_no_pull_or_push(setup, client)
        # The token is good for the repository it names.
        response = upload(client, f"{namespace}/other", b"another repository\n")
        assert response.status_code == 201, setup.explain(response)


def test_a_user_without_access_gets_nothing_distribution_accepts(setup: Setup) -> None:
    """Our server grants a stranger nothing on a private registry; the token it issues (with
    an empty `access`) gets them neither pull nor push at Distribution."""
    token = token_from_realm(setup, setup.stranger, f"repository:{setup.repo}:pull,push")
    with theirs(setup, token) as client:
        assert_no_pull_or_push(setup, client)


def test_a_token_signed_by_another_key_is_refused(setup: Setup) -> None:
    """The bundle is what Distribution trusts: our claims re-signed by a stranger's key, under
    that key's own libtrust ID, are refused."""
    genuine = token_from_realm(setup, setup.owner, f"repository:{setup.repo}:pull,push")
    other = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "typ": "JWT", "kid": libtrust_key_id(other.public_key())}
    forged = encode_jwt(header, jwt_claims(genuine), es256(other))
    with theirs(setup, forged) as client:
        response = client.get(f"/v2/{setup.repo}/tags/list")
        assert response.status_code == 401, setup.explain(response)


# -- any JWT verifier, through the published JWK Set ----------------------------------------


def test_a_jwt_library_verifies_our_tokens_with_the_published_jwks(server: RunningServer) -> None:
    """PyJWT's `PyJWKClient` fetches `/auth/jwks.json` (no credentials), finds the key by the
    token's `kid`, and verifies signature, issuer and audience: no knowledge of our format."""
    response = httpx.get(f"{server.url}/auth/jwks.json", timeout=30.0)
    assert response.status_code == 200, describe(response)
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    published = response.json()
    assert json.loads(cli(server, "signing-cert", "--jwks")) == published
    for key in published["keys"]:
        assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
        assert "d" not in key, "the private half of a signing key is published"

    token = httpx.get(f"{server.url}/auth/token", params={"service": TOKEN_SERVICE}).json()["token"]
    client = jwt.PyJWKClient(f"{server.url}/auth/jwks.json")
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, signing_key.key, algorithms=["ES256"], audience=TOKEN_SERVICE, issuer=ISSUER
    )
    assert claims["sub"] == "" and claims["access"] == []

    other = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "typ": "JWT", "kid": jwt_header(token)["kid"]}
    forged = encode_jwt(header, jwt_claims(token), es256(other))
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, signing_key.key, algorithms=["ES256"], audience=TOKEN_SERVICE)
