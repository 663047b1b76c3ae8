"""Our server as the token server of another registry: CNCF Distribution 2.8 (Debian's
`docker-registry`), configured per the Docker token authentication spec with our `/auth/token`
as its realm and the certificates of `ociregistry signing-cert` as its `rootcertbundle`.

Distribution checks our tokens with its own code: the signature against the keys of the bundle,
found by the token's `kid` (a libtrust key ID), then `iss`, `aud`, `exp`, `nbf` and the `access`
claim. So a push to Distribution works exactly when our server granted it: the token of a user
who may push is accepted, and pull-only tokens, tokens for another repository and the empty
grant of a user without access are refused.

Everything goes over HTTP, as a client that follows Distribution's challenge would; the clients
the rest of the suite drives are not needed. Without /usr/bin/docker-registry the module is
skipped, and in the full run (OCIREGISTRY_REQUIRE_CLIENTS=1, set by scripts/test) it fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
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
REQUIRE_CLIENTS_ENV = "OCIREGISTRY_REQUIRE_CLIENTS"
TOKEN_SERVICE = "ociregistry"  # our default token_service: the `aud` of our tokens
ISSUER = "ociregistry"  # the `iss` of our tokens
READY_TIMEOUT_SECONDS = 30.0
IMAGE = "app"
BUNDLE = "ociregistry-tokens.pem"  # what `ociregistry signing-cert` printed


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in the full run (scripts/test sets the variable)."""
    if os.environ.get(REQUIRE_CLIENTS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_CLIENTS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


class Distribution:
    """`docker-registry serve config.yml` on 127.0.0.1, trusting our server's tokens."""

    def __init__(self, workdir: Path, realm: str, bundle: Path) -> None:
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
            f"    rootcertbundle: {bundle}\n"
            "health:\n  storagedriver:\n    enabled: false\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Distribution:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(DISTRIBUTION), "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
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


@pytest.fixture(scope="module")
def setup(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    if not DISTRIBUTION.exists():
        unavailable(f"{DISTRIBUTION} is not installed (apt-get install docker-registry)")
    suffix = uuid.uuid4().hex[:8]
    namespace, owner, stranger = f"interop{suffix}", f"io-owner{suffix}", f"io-other{suffix}"
    password = secrets.token_urlsafe(12)
    add_user(server, owner, password)
    add_user(server, stranger, password)
    cli(server, "registry", "create", namespace, "--owner", owner)
    workdir = tmp_path_factory.mktemp("distribution")
    bundle = workdir / BUNDLE
    bundle.write_text(cli(server, "signing-cert"))
    theirs = Distribution(workdir, f"{server.url}/auth/token", bundle).start()
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
    """The libtrust IDs of the keys of the certificates Distribution was given."""
    bundle = (setup.theirs.workdir / BUNDLE).read_bytes()
    return {
        libtrust_key_id(certificate.public_key())  # type: ignore[arg-type]
        for certificate in x509.load_pem_x509_certificates(bundle)
    }


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
