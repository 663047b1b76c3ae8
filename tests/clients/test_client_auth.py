"""Access control as real clients meet it (SPEC §2): `docker login`, `skopeo login`, `--creds`,
personal access tokens, and private, public and platform registries.

The module's project group holds a private registry; `developer` is a developer in the group
and `stranger` a signed-in user with no part in it. Users, groups, registries and tokens are
made with the `ociregistry` CLI on the shared server's data folder, as an operator would.

Every refusal is checked twice: the client fails (non-zero exit) and prints why, in the words
each client uses for the registry's answer:

- 401 (anonymous, or a token without the right): docker "pull access denied ... may require
  'docker login'" or, pushing, "denied: requested access to the resource is denied"; skopeo
  "unauthorized" (with "denied" when the challenge says `insufficient_scope`);
- 404 NAME_UNKNOWN (a private registry the caller may not see): "name unknown";
- 403 DENIED (a registry the caller sees but may not write): "denied: ... may not push".

A private registry must look exactly like a missing one to those who may not see it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from clienttools import NAME_UNKNOWN_PATTERN, Docker, Result, Skopeo, pushed_digest

from support.images import OCI_MANIFEST, Image, build_image, rootfs_tar, write_oci_layout
from support.server import RunningServer

pytestmark = pytest.mark.clients

PUSH = ("copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false")
PULL = ("copy", "--quiet", "--preserve-digests", "--src-tls-verify=false")
UNAUTHORIZED = re.compile("unauthorized", re.IGNORECASE)
DENIED = re.compile("denied", re.IGNORECASE)
DOCKER_PULL_NEEDS_LOGIN = re.compile(
    r"pull access denied for \S+, repository does not exist or may require 'docker login'"
)


@dataclass(frozen=True)
class User:
    name: str
    password: str

    @property
    def creds(self) -> str:
        """`name:password`, for skopeo's `--creds` options."""
        return f"{self.name}:{self.password}"


@dataclass(frozen=True)
class Team:
    """A project group with a private registry, its developer, and an outsider."""

    group: str
    registry: str
    developer: User
    stranger: User


def ociregistry(
    server: RunningServer, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`ociregistry ARGS --data-dir …` on the server's data folder, with something to read on
    stdin (`--password-stdin`); it must succeed."""
    completed = server.cli(*args, stdin=stdin, check=False)
    assert completed.returncode == 0, (
        f"ociregistry {' '.join(args)} exited {completed.returncode}:\n"
        f"{completed.stdout}{completed.stderr}"
    )
    return completed


def add_user(server: RunningServer, name: str) -> User:
    user = User(name, f"{name}-secret-password")
    created = ociregistry(
        server, "user", "add", name, "--password-stdin", stdin=user.password + "\n"
    )
    assert f"created user {name}" in created.stdout, created.stdout
    return user


def create_token(server: RunningServer, user: User, name: str, *extra: str) -> dict[str, str]:
    """A personal access token of `user`: `{"id": …, "name": …, "token": …}`."""
    created = ociregistry(server, "token", "create", user.name, name, "--json", *extra)
    token = json.loads(created.stdout)
    assert token["name"] == name and token["token"].startswith("ocir_"), token
    return token


@pytest.fixture(scope="module")
def team(server: RunningServer) -> Team:
    prefix = f"auth{os.getpid()}"
    developer = add_user(server, f"{prefix}-dev")
    stranger = add_user(server, f"{prefix}-stranger")
    group = f"{prefix}-team"
    server.cli("group", "create", group, "--owner", "admin")
    member = server.cli("group", "member", group, developer.name, "developer")
    assert f"{developer.name} is now developer of {group}" in member.stdout, member.stdout
    registry = f"{prefix}-private"
    created = server.cli("registry", "create", registry, "--group", group)
    assert f"registry {registry}" in created.stdout and "private" in created.stdout, created
    return Team(group, registry, developer, stranger)


@pytest.fixture(scope="module")
def private_image(
    server: RunningServer, team: Team, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Image]:
    """An image the developer pushed into the private registry: `(reference, image)`."""
    image = build_image(f"private-{team.registry}")
    source = write_oci_layout(tmp_path_factory.mktemp("private-image"), image, tag="v1")
    reference = f"{server.address}/{team.registry}/base:1"
    skopeo(*PUSH, "--dest-creds", team.developer.creds, f"oci:{source}:v1", f"docker://{reference}")
    return reference, image


class DockerUsers:
    """Docker clients with credential folders of their own, hence signed in separately."""

    def __init__(self, docker: Docker, root: Path, address: str) -> None:
        self.docker, self.root, self.address = docker, root, address
        self.made: list[Docker] = []

    def __call__(self, name: str) -> Docker:
        client = self.docker.as_user(self.root / f"docker-{name}")
        self.made.append(client)
        return client

    def signed_in(self, name: str, user: str, password: str) -> Docker:
        client = self(name)
        login = client.login(self.address, user, password)
        assert "Login Succeeded" in login.output, login.describe()
        return client

    def logout_all(self) -> None:
        for client in self.made:
            client.logout(self.address)


@pytest.fixture
def docker_users(server: RunningServer, docker: Docker, tmp_path: Path) -> Iterator[DockerUsers]:
    users = DockerUsers(docker, tmp_path, server.address)
    yield users
    users.logout_all()


def refused(result: Result, *patterns: re.Pattern[str]) -> None:
    """The command failed, and its output matches every one of `patterns`."""
    assert result.returncode != 0, f"expected a refusal:\n{result.describe()}"
    for pattern in patterns:
        assert pattern.search(result.output), f"no /{pattern.pattern}/ in:\n{result.describe()}"


def phrase(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text))


def without_names(output: str, *names: str) -> str:
    """Client output with repository names and timestamps blanked, to compare two refusals."""
    for name in names:
        output = output.replace(name, "NAME")
    return re.sub(r'time="[^"]*"', "", output)


def raw_manifest(skopeo: Skopeo, reference: str, *creds: str) -> bytes:
    output = skopeo("inspect", "--raw", "--tls-verify=false", *creds, f"docker://{reference}")
    return output.output.encode()


def pulled_digest(skopeo: Skopeo, reference: str, into: Path, *creds: str) -> str:
    """`skopeo copy` from the registry into an OCI layout; the digest it stored."""
    skopeo(*PULL, *creds, f"docker://{reference}", f"oci:{into}:v1")
    [entry] = json.loads((into / "index.json").read_text())["manifests"]
    return entry["digest"]


# -- docker --------------------------------------------------------------------------------------


def test_docker_developer_pushes_and_pulls_private_registry(
    server: RunningServer, team: Team, registry: str, docker_users: DockerUsers, tmp_path: Path
) -> None:
    developer = docker_users.signed_in("developer", team.developer.name, team.developer.password)
    tar = rootfs_tar(tmp_path / "rootfs.tar", f"docker-private-{team.registry}")
    image_id = developer.import_tar(tar, f"ociregistry-test/private-{team.registry}:src")
    repository = f"{server.address}/{team.registry}/docker-app"
    reference = f"{repository}:1.0"
    developer.tag(image_id, reference)
    digest = pushed_digest(developer("push", reference).output)

    # A signed-in user outside the group can neither see the registry nor push into it.
    stranger = docker_users.signed_in("stranger", team.stranger.name, team.stranger.password)
    stranger.tag(image_id, f"{repository}:stranger")
    refused(stranger("push", f"{repository}:stranger", check=False), NAME_UNKNOWN_PATTERN)

    # Not signed in, nobody pushes, not even into a public registry; and docker says so at
    # once (to a 401 without `error="insufficient_scope"` it retries for most of a minute).
    anonymous = docker_users("anonymous")
    public = f"{server.address}/{registry}/docker-app:anonymous"
    anonymous.tag(image_id, public)
    started = time.monotonic()
    refused(anonymous("push", public, check=False), DENIED)
    assert time.monotonic() - started < 20, "docker retried the refused push"

    developer("rmi", "--force", image_id)
    pull = developer.pull(reference)
    assert f"Digest: {digest}" in pull.output, pull.describe()
    assert developer.image_id(reference) == image_id
    developer("rmi", "--force", image_id)

    stranger_pull = stranger("pull", reference, check=False)
    refused(stranger_pull, phrase(f"repository {repository} not found"), NAME_UNKNOWN_PATTERN)
    assert stranger.image_id(reference) is None

    refused(anonymous("pull", reference, check=False), DOCKER_PULL_NEEDS_LOGIN)
    # By digest the daemon may take the manifest from its own cache (it pulled it a moment
    # ago) and ask the registry for the blobs only: those are refused all the same.
    by_digest = f"{repository}@{digest}"
    refused(anonymous("pull", by_digest, check=False), DENIED)
    assert anonymous.image_id(reference) is None
    assert anonymous.image_id(by_digest) is None


# -- skopeo --------------------------------------------------------------------------------------


def test_skopeo_login_and_dest_creds_push_into_private_registry(
    server: RunningServer, team: Team, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = build_image(f"skopeo-private-{team.registry}")
    source = write_oci_layout(tmp_path / "source", image, tag="v1")
    repository = f"{server.address}/{team.registry}/skopeo-app"

    signed_in = skopeo.with_auth_file(tmp_path / "auth.json")
    login = signed_in.login(server.address, team.developer.name, team.developer.password)
    assert "Login Succeeded" in login.output, login.describe()
    signed_in(*PUSH, f"oci:{source}:v1", f"docker://{repository}:login")
    skopeo(
        *PUSH,
        "--dest-creds",
        team.developer.creds,
        f"oci:{source}:v1",
        f"docker://{repository}:creds",
    )
    assert raw_manifest(signed_in, f"{repository}:login") == image.manifest.data
    assert raw_manifest(signed_in, f"{repository}:creds") == image.manifest.data

    # The session's skopeo has no stored credentials: anonymous. A private registry answers
    # it, and a signed-in stranger, exactly as a registry that does not exist.
    missing = f"{server.address}/{team.registry}-missing/skopeo-app"
    stranger = ("--creds", team.stranger.creds)
    for creds, expected in (((), (UNAUTHORIZED, DENIED)), (stranger, (NAME_UNKNOWN_PATTERN,))):
        private = skopeo(
            "inspect", "--tls-verify=false", *creds, f"docker://{repository}:login", check=False
        )
        refused(private, *expected)
        absent = skopeo(
            "inspect", "--tls-verify=false", *creds, f"docker://{missing}:login", check=False
        )
        refused(absent, *expected)
        assert without_names(private.output, repository, team.registry) == without_names(
            absent.output, missing, f"{team.registry}-missing"
        )

    logout = signed_in.logout(server.address)
    assert logout.returncode == 0, logout.describe()
    after = signed_in("inspect", "--tls-verify=false", f"docker://{repository}:login", check=False)
    refused(after, UNAUTHORIZED)


def test_anonymous_skopeo_pulls_public_and_platform_registries(
    server: RunningServer,
    registry: str,
    team: Team,
    skopeo: Skopeo,
    tmp_path: Path,
    admin_creds: str,
) -> None:
    platform = f"{registry}-platform"
    created = server.cli("registry", "create", platform, "--platform")
    assert f"created platform registry {platform}" in created.stdout, created.stdout

    for name in (registry, platform):
        image = build_image(f"anonymous-{name}")
        source = write_oci_layout(tmp_path / name / "source", image, tag="v1")
        remote = f"{server.address}/{name}/app:v1"
        skopeo(*PUSH, "--dest-creds", admin_creds, f"oci:{source}:v1", f"docker://{remote}")

        # Pulling is what an anonymous caller may do, and all it may do.
        assert pulled_digest(skopeo, remote, tmp_path / name / "back") == image.digest
        assert raw_manifest(skopeo, remote) == image.manifest.data
        anonymous_push = skopeo(*PUSH, f"oci:{source}:v1", f"docker://{remote}-anon", check=False)
        refused(anonymous_push, UNAUTHORIZED)

    # Only platform admins push into platform registries; other signed-in users only pull.
    developer_push = skopeo(
        *PUSH,
        "--dest-creds",
        team.developer.creds,
        f"oci:{tmp_path / platform / 'source'}:v1",
        f"docker://{server.address}/{platform}/app:v2",
        check=False,
    )
    refused(developer_push, DENIED, phrase(f"{team.developer.name} may not push"))


# -- personal access tokens ----------------------------------------------------------------------


def test_personal_access_token_works_as_password_until_revoked(
    server: RunningServer,
    team: Team,
    private_image: tuple[str, Image],
    docker_users: DockerUsers,
    skopeo: Skopeo,
) -> None:
    reference, image = private_image
    token = create_token(server, team.developer, f"ci-{os.getpid()}")
    token_creds = ("--creds", f"{team.developer.name}:{token['token']}")

    ci = docker_users.signed_in("ci", team.developer.name, token["token"])
    pull = ci.pull(reference)
    assert f"Digest: {image.digest}" in pull.output, pull.describe()
    retagged = reference.replace("/base:1", "/base:from-ci")
    ci.tag(reference, retagged)
    # docker rewrites the OCI manifest as a Docker v2s2 one, with the same config and layers.
    pushed = pushed_digest(ci("push", retagged).output)
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", *token_creds, f"docker://{retagged}").output
    )
    assert inspected["Digest"] == pushed
    assert inspected["Layers"] == [layer.digest for layer in image.layers]
    assert raw_manifest(skopeo, reference, *token_creds) == image.manifest.data

    revoked = ociregistry(server, "token", "revoke", team.developer.name, token["id"])
    assert f"revoked token {token['id']}" in revoked.stdout, revoked.stdout

    after = skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        *token_creds,
        f"docker://{reference}",
        check=False,
    )
    refused(after, UNAUTHORIZED, phrase("invalid username or password"))
    # docker's stored login (an identity token obtained with the PAT) dies with it.
    ci("rmi", "--force", image.config.digest)
    refused(ci("pull", reference, check=False), UNAUTHORIZED, phrase("revoked"))
    assert ci.image_id(reference) is None
    # Only the token was revoked: the developer's password still works.
    assert raw_manifest(skopeo, reference, "--creds", team.developer.creds) == image.manifest.data


def test_read_only_token_pulls_but_cannot_push(
    server: RunningServer,
    team: Team,
    private_image: tuple[str, Image],
    docker_users: DockerUsers,
    skopeo: Skopeo,
    tmp_path: Path,
    client: httpx.Client,
) -> None:
    reference, image = private_image
    token = create_token(server, team.developer, f"ro-{os.getpid()}", "--read-only")
    creds = f"{team.developer.name}:{token['token']}"
    repository = reference.rsplit(":", 1)[0]

    back = tmp_path / "back"
    assert pulled_digest(skopeo, reference, back, "--src-creds", creds) == image.digest
    skopeo_push = skopeo(
        *PUSH,
        "--dest-creds",
        creds,
        f"oci:{back}:v1",
        f"docker://{repository}:skopeo-ro",
        check=False,
    )
    # 403, not 401: signing in again would not help, the token itself is read-only.
    refused(skopeo_push, DENIED, phrase("read-only access token cannot push"))

    reader = docker_users.signed_in("reader", team.developer.name, token["token"])
    pull = reader.pull(reference)
    assert f"Digest: {image.digest}" in pull.output, pull.describe()
    reader.tag(reference, f"{repository}:docker-ro")
    refused(reader("push", f"{repository}:docker-ro", check=False), DENIED)

    path = repository.split("/", 1)[1]
    for tag in ("skopeo-ro", "docker-ro"):
        head = client.head(f"/v2/{path}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert head.status_code == 404, (tag, head)
