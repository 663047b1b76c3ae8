"""Pull counts (SPEC §3), as real clients pull.

`docker pull`, `skopeo copy` (with and without `--all`) and containerd's `ctr images pull` by tag
each count exactly one pull on the tag and on the image, single-arch or multi-arch alike
(however many manifest requests the client makes: docker and ctr resolve the tag with a HEAD and
GET by digest, skopeo GETs by tag and then the child manifest by digest). A HEAD alone counts
nothing; a pull by digest counts on the image only. Counts survive a restart, and a clean
shutdown right after a pull loses none. A registry's count is the sum over its images once the
periodic refresh has run.

Counts show in the API within a second of the pull; the tests poll for them (5 s at most) and
then check they are exact: after the expected values appear, one more pull of a `marker` tag by
another client must be the only change, which shows that no late count was still on its way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Index,
    build_image,
    build_index,
    write_oci_layout,
)
from support.server import RunningServer

pytestmark = pytest.mark.clients

API = "/api/v1"
COUNT_DEADLINE_SECONDS = 5.0
REFRESH_DEADLINE_SECONDS = 15.0
COMMAND_TIMEOUT_SECONDS = 300
MARKER = "marker"
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST])
CTR_NAMESPACE = "ocireg-test"
CONTAINERD_SOCKETS = ("/run/docker/containerd/containerd.sock", "/run/containerd/containerd.sock")


# -- the clients ----------------------------------------------------------------------------


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in the full run (scripts/test sets the variable)."""
    if os.environ.get("OCIREGISTRY_REQUIRE_CLIENTS") == "1":
        pytest.fail(f"{reason} (OCIREGISTRY_REQUIRE_CLIENTS=1)", pytrace=False)
    pytest.skip(reason)


def tool(name: str, env_var: str | None = None) -> str:
    chosen = (os.environ.get(env_var, "") if env_var else "") or name
    path = shutil.which(chosen)
    if path is None:
        unavailable(f"{chosen} is not installed")
    assert path is not None
    return path


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    completed = subprocess.run(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        env={**os.environ, **(env or {})},
        **feed,
    )
    if check and completed.returncode != 0:
        pytest.fail(
            f"$ {' '.join(args)}\n[exit {completed.returncode}]\n{completed.stdout}", pytrace=False
        )
    return completed


class Skopeo:
    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        self.env = {"REGISTRY_AUTH_FILE": str(home / "auth.json")}  # nothing signs in by itself

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.binary, *args, env=self.env)


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tool("skopeo"), tmp_path_factory.mktemp("skopeo"))


class Docker:
    """The docker CLI with a `DOCKER_CONFIG` of its own, so its login is this test's only."""

    def __init__(self, binary: str, config_dir: Path) -> None:
        self.binary = binary
        self.env = {"DOCKER_CONFIG": str(config_dir)}
        self.pulled: list[str] = []

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return run(self.binary, *args, env=self.env, stdin=stdin, check=check).stdout

    def login(self, server: RunningServer) -> None:
        username, password = server.admin
        out = self("login", server.address, "--username", username, "--password-stdin",
                   stdin=password + "\n")  # fmt: skip
        assert "Login Succeeded" in out, out

    def pull(self, reference: str) -> str:
        self.pulled.append(reference)
        return self("pull", reference)


@pytest.fixture
def docker(server: RunningServer, tmp_path: Path) -> Iterator[Docker]:
    client = Docker(tool("docker", "OCIREGISTRY_DOCKER"), tmp_path / "docker-config")
    answer = run(client.binary, "version", "--format", "{{.Server.Version}}", check=False)
    if answer.returncode != 0:
        unavailable(f"the docker daemon does not answer:\n{answer.stdout}")
    client.login(server)
    yield client
    if client.pulled:
        client("rmi", "--force", *client.pulled, check=False)
    client("logout", server.address, check=False)


class Ctr:
    """containerd's `ctr`, in a namespace of the tests' own, against the daemon's containerd."""

    def __init__(self, binary: str, socket: str) -> None:
        self.base = (binary, "--address", socket, "-n", CTR_NAMESPACE)
        self.pulled: list[str] = []

    def pull(self, reference: str, user: tuple[str, str]) -> str:
        self.pulled.append(reference)
        args = ("images", "pull", "--plain-http", "--user", ":".join(user), reference)
        return run(*self.base, *args).stdout


@pytest.fixture
def ctr() -> Iterator[Ctr]:
    binary = tool("ctr")
    socket = next((path for path in CONTAINERD_SOCKETS if os.path.exists(path)), None)
    if socket is None:
        unavailable(f"no containerd socket at {' or '.join(CONTAINERD_SOCKETS)}")
    assert socket is not None
    client = Ctr(binary, socket)
    if run(*client.base, "version", check=False).returncode != 0:
        unavailable("containerd does not answer")
    yield client
    if client.pulled:
        run(*client.base, "images", "rm", "--sync", *client.pulled, check=False)


# -- images and counts ----------------------------------------------------------------------


@dataclass
class Subject:
    """An image pushed for one test: `app` in its own registry, tagged `1.0`, `other` and
    `marker` (the marker is pulled last by another client, to see that counting settled)."""

    server: RunningServer
    registry: str
    content: Image | Index
    image: str = "app"
    tag: str = "1.0"

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.image}"

    @property
    def reference(self) -> str:
        return f"{self.server.address}/{self.repository}:{self.tag}"

    @property
    def by_digest(self) -> str:
        return f"{self.server.address}/{self.repository}@{self.content.digest}"


def push_subject(
    server: RunningServer,
    skopeo: Skopeo,
    tmp_path: Path,
    registry: str,
    *,
    multi_arch: bool = False,
    image: str = "app",
) -> Subject:
    """Push with skopeo (as the admin), then add the other tags over plain HTTP."""
    label = f"{registry}-{image}-{uuid.uuid4().hex[:8]}"
    content: Image | Index = build_index(label) if multi_arch else build_image(label)
    layout = write_oci_layout(tmp_path / f"layout-{label}", content, tag="src")
    subject = Subject(server, registry, content, image)
    skopeo(
        "copy", "--quiet", "--preserve-digests", *(["--all"] if multi_arch else []),
        "--dest-creds", ":".join(server.admin), "--dest-tls-verify=false",
        f"oci:{layout}:src", f"docker://{subject.reference}",
    )  # fmt: skip
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
        for tag in ("other", MARKER):
            response = http.put(
                f"/v2/{subject.repository}/manifests/{tag}",
                content=content.manifest.data,
                headers={"Content-Type": content.manifest.media_type},
            )
            assert response.status_code == 201, response.text
    return subject


def counts(http: httpx.Client, registry: str, image: str) -> tuple[int, dict[str, int]]:
    """(the image's pull count, each tag's) as the API shows them."""
    found = http.get(f"{API}/registries/{registry}/images/{image}")
    assert found.status_code == 200, found.text
    tags = http.get(f"{API}/registries/{registry}/images/{image}/-/tags")
    assert tags.status_code == 200, tags.text
    return found.json()["pull_count"], {t["name"]: t["pull_count"] for t in tags.json()["items"]}


def wait_for_counts(
    http: httpx.Client, registry: str, image: str, expected: tuple[int, dict[str, int]]
) -> None:
    """Poll until the counts are `expected`; fail at once when one goes past it."""
    deadline = time.monotonic() + COUNT_DEADLINE_SECONDS
    while True:
        seen = counts(http, registry, image)
        if seen == expected:
            return
        over = seen[0] > expected[0] or any(
            seen[1].get(tag, 0) > value for tag, value in expected[1].items()
        )
        if over or time.monotonic() > deadline:
            pytest.fail(
                f"pull counts of {registry}/{image}: expected (image, tags) {expected}, "
                f"{'got' if over else f'after {COUNT_DEADLINE_SECONDS} s still'} {seen}"
            )
        time.sleep(0.1)


def assert_counts(http: httpx.Client, subject: Subject, image: int, tags: dict[str, int]) -> None:
    """The counts become exactly these, and stay so: a marker pull by another client (the
    anonymous one) is then the only change."""
    expected = (image, {"1.0": 0, "other": 0, MARKER: 0, **tags})
    wait_for_counts(http, subject.registry, subject.image, expected)
    marker = httpx.get(
        f"{subject.server.url}/v2/{subject.repository}/manifests/{MARKER}",
        headers={"Accept": ACCEPT},
    )
    assert marker.status_code == 200, marker.text
    settled = (image + 1, {**expected[1], MARKER: expected[1][MARKER] + 1})
    wait_for_counts(http, subject.registry, subject.image, settled)


# -- real clients: one pull by tag is one pull ---------------------------------------------


@pytest.mark.parametrize("multi_arch", [False, True], ids=["single-arch", "multi-arch"])
def test_docker_pull_by_tag_counts_once(
    server: RunningServer,
    client: httpx.Client,
    registry: str,
    docker: Docker,
    skopeo: Skopeo,
    tmp_path: Path,
    multi_arch: bool,
) -> None:
    subject = push_subject(server, skopeo, tmp_path, registry, multi_arch=multi_arch)
    out = docker.pull(subject.reference)
    assert subject.content.digest in out, out
    assert_counts(client, subject, 1, {"1.0": 1})


@pytest.mark.parametrize(
    ("multi_arch", "copy_all"),
    [(False, False), (True, False), (True, True)],
    ids=["single-arch", "multi-arch, one platform", "multi-arch, --all"],
)
def test_skopeo_copy_by_tag_counts_once(
    server: RunningServer,
    client: httpx.Client,
    registry: str,
    skopeo: Skopeo,
    tmp_path: Path,
    multi_arch: bool,
    copy_all: bool,
) -> None:
    subject = push_subject(server, skopeo, tmp_path, registry, multi_arch=multi_arch)
    skopeo(
        "copy", "--quiet", *(["--all"] if copy_all else []),
        "--src-creds", ":".join(server.admin), "--src-tls-verify=false",
        f"docker://{subject.reference}", f"oci:{tmp_path / 'pulled'}:x",
    )  # fmt: skip
    assert_counts(client, subject, 1, {"1.0": 1})


@pytest.mark.parametrize("multi_arch", [False, True], ids=["single-arch", "multi-arch"])
def test_ctr_pull_by_tag_counts_once(
    server: RunningServer,
    client: httpx.Client,
    registry: str,
    ctr: Ctr,
    skopeo: Skopeo,
    tmp_path: Path,
    multi_arch: bool,
) -> None:
    """containerd resolves the tag with a HEAD and GETs by digest: still one pull of the tag."""
    subject = push_subject(server, skopeo, tmp_path, registry, multi_arch=multi_arch)
    out = ctr.pull(subject.reference, server.admin)
    assert subject.content.digest in out, out
    assert_counts(client, subject, 1, {"1.0": 1})


def test_repeated_pulls_count_each_time(
    server: RunningServer, client: httpx.Client, registry: str, skopeo: Skopeo, tmp_path: Path
) -> None:
    subject = push_subject(server, skopeo, tmp_path, registry, multi_arch=True)
    for number in range(3):
        skopeo(
            "copy", "--quiet", "--all", "--src-creds", ":".join(server.admin),
            "--src-tls-verify=false", f"docker://{subject.reference}",
            f"oci:{tmp_path / f'pulled{number}'}:x",
        )  # fmt: skip
    assert_counts(client, subject, 3, {"1.0": 3})


# -- what does not count, or counts on the image only ---------------------------------------


def test_head_alone_counts_nothing(
    server: RunningServer, client: httpx.Client, registry: str, skopeo: Skopeo, tmp_path: Path
) -> None:
    subject = push_subject(server, skopeo, tmp_path, registry, multi_arch=True)
    for reference in ("1.0", "other", subject.content.digest, subject.content.children[0].digest):
        response = client.head(
            f"/v2/{subject.repository}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        assert response.status_code == 200, response
    assert_counts(client, subject, 0, {})


def test_pull_by_digest_counts_on_the_image_only(
    server: RunningServer, client: httpx.Client, registry: str, skopeo: Skopeo, tmp_path: Path
) -> None:
    subject = push_subject(server, skopeo, tmp_path, registry)
    skopeo(
        "copy", "--quiet", "--src-creds", ":".join(server.admin), "--src-tls-verify=false",
        f"docker://{subject.by_digest}", f"oci:{tmp_path / 'pulled'}:x",
    )  # fmt: skip
    assert_counts(client, subject, 1, {})


def test_head_by_another_client_does_not_attribute_a_digest_pull(
    server: RunningServer, client: httpx.Client, registry: str, skopeo: Skopeo, tmp_path: Path
) -> None:
    """Only the same client's HEAD of a tag (address and credentials) makes a later GET by
    digest a pull of that tag."""
    subject = push_subject(server, skopeo, tmp_path, registry)
    path = f"/v2/{subject.repository}/manifests"
    headed = httpx.head(f"{server.url}{path}/1.0", headers={"Accept": ACCEPT})  # anonymous
    assert headed.status_code == 200, headed
    got = client.get(f"{path}/{subject.content.digest}", headers={"Accept": ACCEPT})  # admin
    assert got.status_code == 200, got
    assert_counts(client, subject, 1, {})
    # The same client's HEAD then GET by digest is a pull of the tag (what containerd does).
    assert client.head(f"{path}/other", headers={"Accept": ACCEPT}).status_code == 200
    assert client.get(f"{path}/{subject.content.digest}", headers={"Accept": ACCEPT}).is_success
    assert_counts(client, subject, 3, {"other": 1, MARKER: 1})


def test_docker_pull_by_digest_counts_on_the_image_only(
    server: RunningServer,
    client: httpx.Client,
    registry: str,
    docker: Docker,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    subject = push_subject(server, skopeo, tmp_path, registry, multi_arch=True)
    docker.pull(subject.by_digest)
    assert_counts(client, subject, 1, {})


# -- durability and registry sums -----------------------------------------------------------


def test_counts_survive_a_restart(
    fresh_server: RunningServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    server = fresh_server
    server.create_registry("counted")
    subject = push_subject(server, skopeo, tmp_path, "counted")
    pull = (
        "copy", "--quiet", "--src-creds", ":".join(server.admin), "--src-tls-verify=false",
        f"docker://{subject.reference}",
    )  # fmt: skip
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
        skopeo(*pull, f"oci:{tmp_path / 'first'}:x")
        wait_for_counts(http, "counted", "app", (1, {"1.0": 1, "other": 0, MARKER: 0}))

    # A clean shutdown right after pulls (before any flush could run) loses none of them, and
    # the count settled before it stays.
    skopeo(*pull, f"oci:{tmp_path / 'second'}:x")
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
        for tag in ("other", "other"):
            got = http.get(f"/v2/counted/app/manifests/{tag}", headers={"Accept": ACCEPT})
            assert got.status_code == 200, got
    server.stop()
    server.start()
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
        assert_counts(http, subject, 4, {"1.0": 2, "other": 2})


def test_registry_count_is_the_sum_over_its_images_after_a_refresh(
    tmp_path: Path, skopeo: Skopeo
) -> None:
    server = RunningServer(
        tmp_path / "data", env={"OCIREGISTRY_REGISTRY_COUNT_REFRESH_SECONDS": "1"}
    ).start()
    try:
        server.create_registry("summed")
        server.create_registry("untouched")
        one = push_subject(server, skopeo, tmp_path, "summed", image="one")
        two = push_subject(server, skopeo, tmp_path, "summed", image="tools/two")
        push_subject(server, skopeo, tmp_path, "untouched")
        with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as http:
            for subject, tags in ((one, ("1.0", "1.0", "other")), (two, ("1.0",))):
                for tag in tags:
                    got = http.get(
                        f"/v2/{subject.repository}/manifests/{tag}", headers={"Accept": ACCEPT}
                    )
                    assert got.status_code == 200, got
            wait_for_counts(http, "summed", "one", (3, {"1.0": 2, "other": 1, MARKER: 0}))
            wait_for_counts(http, "summed", "tools/two", (1, {"1.0": 1, "other": 0, MARKER: 0}))

            # The next refresh after the image counts showed sums them up.
            observed = http.get(f"{API}/registries/summed").json()["pull_count_refreshed_at"]
            deadline = time.monotonic() + REFRESH_DEADLINE_SECONDS
            while True:
                registry = http.get(f"{API}/registries/summed").json()
                if registry["pull_count_refreshed_at"] not in (None, observed):
                    break
                assert time.monotonic() < deadline, f"no refresh within the deadline: {registry}"
                time.sleep(0.1)
            assert registry["pull_count"] == 4, registry
            untouched = http.get(f"{API}/registries/untouched").json()
            assert untouched["pull_count"] == 0 and untouched["pull_count_refreshed_at"]
            listing = http.get(f"{API}/registries", params={"sort": "-pull_count"}).json()
            assert [r["name"] for r in listing["items"]][:1] == ["summed"], listing
            assert listing["items"][0]["pull_count"] == 4
    finally:
        server.stop()
