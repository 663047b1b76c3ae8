"""The registry's own container image, built and run with the real docker engine.

No base image can be pulled here, so `baseimage.py` makes one from Debian packages; the
`Dockerfile` is then built on it by `scripts/build-image` (wheels built outside, installed with
`--no-index` inside), exactly as an operator builds it offline. The running container is judged
as an operator would: read-only root as its non-root user, a push and a pull with the docker
CLI, `docker inspect` saying healthy, and `docker stop` ending it with exit status 0.

Cold (debootstrap, every wheel, every layer) this takes a few minutes; warm (the base image
reused by its content key, docker's layer cache) it is about half a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "clients"))

from clienttools import Docker, find_tool, pushed_digest, run, unavailable

from baseimage import BASE_IMAGE, ensure_base_image
from support.images import rootfs_tar
from support.server import ADMIN_PASSWORD, ADMIN_USER, free_port

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "ociregistry-test:latest"
IMAGE_UID = 10001  # the Dockerfile's fixed uid
BUILD_TIMEOUT_SECONDS = 1800
HEALTHY_WAIT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "pip", "pip3")


@pytest.fixture(scope="module")
def docker_cli(tmp_path_factory: pytest.TempPathFactory) -> Docker:
    """The docker client scripts/test found working against the daemon, with its own config."""
    docker = Docker(find_tool("docker", "OCIREGISTRY_DOCKER"), tmp_path_factory.mktemp("docker"))
    if docker("version", "--format", "{{.Server.Version}}", check=False).returncode != 0:
        unavailable("the docker daemon does not answer")
    return docker


@pytest.fixture(scope="module")
def image(docker_cli: Docker) -> str:
    """`IMAGE`, built by scripts/build-image on the Debian base (both cached between runs)."""

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [docker_cli.binary, *args], capture_output=True, text=True, check=False
        )

    has_base = docker("image", "inspect", BASE_IMAGE).returncode == 0
    if os.geteuid() != 0 and not has_base:
        unavailable("making the Debian base image takes root (debootstrap)")
    started = time.monotonic()
    ensure_base_image(docker)
    base_seconds = time.monotonic() - started
    build = run(
        ROOT / "scripts" / "build-image",
        "-t",
        IMAGE,
        "--build-arg",
        f"BASE={BASE_IMAGE}",
        env={"DOCKER": docker_cli.binary, "PYTHON": sys.executable},
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    assert f"Successfully tagged {IMAGE}" in build.output, build.describe()
    # Figures, not assertions: how long the cache saved (see the module docstring).
    print(f"\nbase image {base_seconds:.1f} s, image build {time.monotonic() - started:.1f} s")
    return IMAGE


def inspect(docker: Docker, what: str, template: str = "{{json .}}") -> object:
    return json.loads(docker("inspect", "--format", template, what).output)


def test_image_is_hardened(docker_cli: Docker, image: str) -> None:
    config = inspect(docker_cli, image, "{{json .Config}}")
    assert isinstance(config, dict)
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["ociregistry"]  # the exec form: no shell in between
    assert config["Cmd"] == ["serve"]
    health = config["Healthcheck"]["Test"]
    assert health[0] == "CMD" and health[1] == "python3", health  # exec form, no curl needed
    assert "/livez" in health[-1]
    assert "/data" in config["Volumes"]

    # The final stage has no compiler, no pip, and runs as the fixed non-root uid.
    probe = (
        "import os, shutil, json; "
        f"found = [t for t in {COMPILERS!r} if shutil.which(t)]; "
        "print(json.dumps([os.getuid(), os.getgid(), found]))"
    )
    found = docker_cli(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--entrypoint",
        "python3",
        image,
        "-c",
        probe,
    )
    uid, gid, tools = json.loads(found.output.strip().splitlines()[-1])
    assert (uid, gid) == (IMAGE_UID, IMAGE_UID)
    assert tools == [], f"build tools in the final stage: {tools}"

    # `docker run --user` with another uid (group 0, as OpenShift runs images) can still write
    # its fresh data volume, which docker fills from the image's /data.
    volume = f"ociregistry-test-{uuid.uuid4().hex[:12]}"
    try:
        docker_cli("volume", "create", volume)
        other = docker_cli(
            "run", "--rm", "--network", "none", "--read-only", "--user", "12345:0",
            "--volume", f"{volume}:/data", "--entrypoint", "python3", image,
            "-c", "import os; open('/data/probe', 'w').write('ok'); print(os.getuid())",
        )  # fmt: skip
        assert other.output.strip().splitlines()[-1] == "12345"
    finally:
        docker_cli("volume", "rm", "--force", volume, check=False)


@pytest.fixture
def container(docker_cli: Docker, image: str) -> Iterator[tuple[str, int]]:
    """The image running read-only with a fresh named volume; yields (container name, port).

    The test daemon has no bridge network, so the container shares the host's and listens on a
    free port of 127.0.0.1, which docker treats as an insecure (plain HTTP) registry.
    """
    name = f"ociregistry-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    docker_cli("volume", "create", name)
    docker_cli(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--volume",
        f"{name}:/data",
        "--env",
        "OCIREGISTRY_HOST=127.0.0.1",
        "--env",
        f"OCIREGISTRY_PORT={port}",
        "--env",
        "OCIREGISTRY_WORKERS=2",
        "--env",
        f"OCIREGISTRY_ADMIN_PASSWORD={ADMIN_PASSWORD}",
        "--health-interval",
        "1s",
        image,
    )
    try:
        yield name, port
    finally:
        logs = docker_cli("logs", name, check=False)
        print(logs.output[-5000:])
        docker_cli("rm", "--force", name, check=False)
        docker_cli("volume", "rm", "--force", name, check=False)


def wait_healthy(docker: Docker, name: str) -> str:
    """Poll `docker inspect` until the HEALTHCHECK says healthy; the container must not exit."""
    deadline = time.monotonic() + HEALTHY_WAIT_SECONDS
    status = ""
    while time.monotonic() < deadline:
        state = inspect(docker, name, "{{json .State}}")
        assert isinstance(state, dict)
        assert state["Running"], f"the container stopped: {state}\n{docker('logs', name).output}"
        status = state["Health"]["Status"]
        if status == "healthy":
            return status
        time.sleep(0.5)
    pytest.fail(
        f"not healthy after {HEALTHY_WAIT_SECONDS}s (last {status!r}):\n"
        f"{docker('inspect', '--format', '{{json .State.Health}}', name).output}"
    )


def test_image_runs_read_only_serves_docker_and_stops_cleanly(
    docker_cli: Docker, container: tuple[str, int], tmp_path: Path
) -> None:
    name, port = container
    assert wait_healthy(docker_cli, name) == "healthy"
    address = f"127.0.0.1:{port}"
    assert httpx.get(f"http://{address}/readyz", timeout=10).status_code == 200

    # The server runs as the image's user, not root.
    uid = docker_cli("exec", name, "python3", "-c", "import os; print(os.getuid())")
    assert uid.output.strip() == str(IMAGE_UID)

    # The administration CLI works in the container, on the volume.
    docker_cli("exec", name, "ociregistry", "registry", "create", "team-a")

    # Push and pull through the container with the docker CLI.
    client = docker_cli.as_user(tmp_path / "docker-config")
    try:
        login = client.login(address, ADMIN_USER, ADMIN_PASSWORD)
        assert "Login Succeeded" in login.output, login.describe()
        image_id = client.import_tar(rootfs_tar(tmp_path / "rootfs.tar", name), f"{name}:src")
        reference = f"{address}/team-a/app:1.0"
        client.tag(image_id, reference)
        digest = pushed_digest(client("push", reference).output)
        client("rmi", "--force", image_id)
        assert client.image_id(reference) is None
        client.pull(f"{address}/team-a/app@{digest}")
        assert client.image_id(f"{address}/team-a/app@{digest}") == image_id
    finally:
        client.logout(address)
        client.cleanup()

    # Every write went to the volume (or the tmpfs): the container's own layer is untouched,
    # and the root really is read-only.
    assert docker_cli("diff", name).output.strip() == ""
    denied = docker_cli(
        "exec", name, "python3", "-c", "open('/opt/ociregistry/probe', 'w')", check=False
    )
    assert denied.returncode != 0 and "Read-only file system" in denied.output, denied.describe()
    listing = docker_cli("exec", name, "python3", "-c", "import os; print(os.listdir('/data'))")
    assert "registry.db" in listing.output and "storage" in listing.output

    # SIGTERM (the image's STOPSIGNAL): uvicorn stops its workers and exits 0 well within the
    # timeout; past it docker would SIGKILL and the status would be 137.
    docker_cli("stop", "--time", str(STOP_TIMEOUT_SECONDS), name)
    state = inspect(docker_cli, name, "{{json .State}}")
    assert isinstance(state, dict)
    assert state["Running"] is False
    assert state["ExitCode"] == 0, f"{state}\n{docker_cli('logs', name).output[-3000:]}"
    assert state["OOMKilled"] is False
