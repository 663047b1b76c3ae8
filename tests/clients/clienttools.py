"""Run real registry clients (docker, podman, skopeo) and push images over plain HTTP.

The client tests judge the server by what real clients print and do, so every command's
combined output is kept and shown in full when a command does not end as the test expects.

Credentials never touch the machine's own client configuration: each `Docker` has its own
`DOCKER_CONFIG` folder and each `Podman` / `Skopeo` its own auth file (`REGISTRY_AUTH_FILE`),
all in temp dirs, so `login` in a test signs in that client object only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.images import Blob, Image, Index

COMMAND_TIMEOUT_SECONDS = 300
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
NAME_UNKNOWN_PATTERN = re.compile(r"NAME_UNKNOWN|name unknown", re.IGNORECASE)
REQUIRE_CLIENTS_ENV = "OCIREGISTRY_REQUIRE_CLIENTS"


@dataclass(frozen=True)
class Result:
    """What a client command did: its exit code and everything it printed."""

    args: tuple[str, ...]
    returncode: int
    output: str

    def describe(self) -> str:
        return f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n{self.output}"


def run(
    *args: str | Path,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Result:
    """Run a command, stdout and stderr interleaved as a person would see them.

    With `check`, a non-zero exit fails the test with the full output, so the report says what
    the client complained about instead of only an exit code. `stdin` is fed to the command
    (passwords for `login --password-stdin`); without it the command reads nothing.
    """
    argv = tuple(str(arg) for arg in args)
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    try:
        completed = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            **feed,
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.output or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        pytest.fail(f"$ {' '.join(argv)}\ntimed out after {timeout}s; output so far:\n{output}")
    result = Result(argv, completed.returncode, completed.stdout)
    if check and result.returncode != 0:
        pytest.fail(f"client command failed:\n{result.describe()}", pytrace=False)
    return result


def clients_required() -> bool:
    """scripts/test sets this: in the full run a missing client is a failure, not a skip."""
    return os.environ.get(REQUIRE_CLIENTS_ENV) == "1"


def unavailable(reason: str) -> None:
    """Skip (developer machine without the client) or fail (the full run) for `reason`."""
    if clients_required():
        pytest.fail(f"{reason} ({REQUIRE_CLIENTS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def find_tool(name: str, env_var: str | None = None) -> str:
    """The path of client `name` (or of `$env_var` when set), else skip/fail."""
    chosen = os.environ.get(env_var, "") if env_var else ""
    path = shutil.which(chosen or name)
    if path is None:
        unavailable(f"{chosen or name} is not installed")
    assert path is not None
    return path


def pushed_digest(output: str) -> str:
    """The manifest digest from docker's `TAG: digest: sha256:... size: N` push line."""
    match = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", output)
    assert match, f"no 'digest: ... size: ...' line in the push output:\n{output}"
    return match.group(1)


def push_blob_http(client: httpx.Client, repository: str, blob: Blob) -> None:
    """Monolithic POST + PUT upload of one blob, as the distribution spec describes it."""
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, f"POST upload: {started.status_code} {started.text}"
    # Merge, not replace: the Location may carry upload state in its own query string.
    location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": blob.digest})
    finished = client.put(
        location,
        content=blob.data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert finished.status_code == 201, f"PUT upload: {finished.status_code} {finished.text}"


def push_manifest_http(client: httpx.Client, repository: str, manifest: Blob, ref: str) -> None:
    """PUT exact manifest bytes under `ref` (tag or digest)."""
    response = client.put(
        f"/v2/{repository}/manifests/{ref}",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )
    assert response.status_code == 201, f"PUT manifest: {response.status_code} {response.text}"
    assert response.headers.get("Docker-Content-Digest") == manifest.digest


def push_image_http(client: httpx.Client, repository: str, top: Image | Index, tag: str) -> None:
    """Push an image or index with plain HTTP calls, to set up a subject for other clients."""
    children = top.children if isinstance(top, Index) else ()
    for child in children:
        for blob in child.blobs():
            push_blob_http(client, repository, blob)
        push_manifest_http(client, repository, child.manifest, child.digest)
    if isinstance(top, Image):
        for blob in top.blobs():
            push_blob_http(client, repository, blob)
    push_manifest_http(client, repository, top.manifest, tag)


class Docker:
    """The docker CLI against the local daemon; remembers the images a test made.

    Its credentials live in `config_dir` (the CLI's `DOCKER_CONFIG`: the daemon keeps none),
    so two `Docker` objects with different folders are two different signed-in users.
    """

    def __init__(self, binary: str, config_dir: Path, created: list[str] | None = None) -> None:
        self.binary = binary
        self.config_dir = config_dir
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.created: list[str] = [] if created is None else created

    def __call__(self, *args: str | Path, check: bool = True, stdin: str | None = None) -> Result:
        env = {"DOCKER_CONFIG": str(self.config_dir)}
        return run(self.binary, *args, check=check, env=env, stdin=stdin)

    def as_user(self, config_dir: Path) -> Docker:
        """The same client with credentials of its own (none until it logs in); images it
        makes are cleaned up with this one's."""
        return Docker(self.binary, config_dir, self.created)

    def login(self, address: str, username: str, password: str, *, check: bool = True) -> Result:
        return self(
            "login",
            address,
            "--username",
            username,
            "--password-stdin",
            check=check,
            stdin=password + "\n",
        )

    def logout(self, address: str) -> Result:
        return self("logout", address, check=False)

    def import_tar(self, tar: Path, reference: str) -> str:
        """`docker import` a rootfs tar as `reference`; returns the image ID (sha256:...)."""
        self.created.append(reference)
        image_id = self("import", tar, reference).output.strip().splitlines()[-1]
        assert image_id.startswith("sha256:"), f"docker import printed {image_id!r}"
        return image_id

    def tag(self, source: str, reference: str) -> None:
        self.created.append(reference)
        self("tag", source, reference)

    def pull(self, reference: str) -> Result:
        self.created.append(reference)
        return self("pull", reference)

    def image_id(self, reference: str) -> str | None:
        """The local image ID of `reference`, or None when the daemon has no such image."""
        result = self("image", "inspect", "--format", "{{.Id}}", reference, check=False)
        return result.output.strip() if result.returncode == 0 else None

    def repo_digests(self, reference: str) -> list[str]:
        """The `host/repo@sha256:...` names the daemon records for a pulled image."""
        output = self("image", "inspect", "--format", "{{json .RepoDigests}}", reference).output
        return list(json.loads(output))

    def cleanup(self) -> None:
        """Remove every image reference the test made, so the daemon's store stays small."""
        if self.created:
            self("rmi", "--force", *reversed(self.created), check=False)
        self.created.clear()


class _AuthFileClient:
    """A containers/image client (podman, skopeo) whose logins go to its own auth file."""

    binary: str
    auth_file: Path
    global_args: tuple[str, ...] | list[str] = ()

    def __call__(self, *args: str | Path, check: bool = True, stdin: str | None = None) -> Result:
        env = {"REGISTRY_AUTH_FILE": str(self.auth_file)}
        return run(self.binary, *self.global_args, *args, check=check, env=env, stdin=stdin)

    def login(self, address: str, username: str, password: str, *, check: bool = True) -> Result:
        return self(
            "login",
            "--tls-verify=false",
            "--username",
            username,
            "--password-stdin",
            address,
            check=check,
            stdin=password + "\n",
        )

    def logout(self, address: str) -> Result:
        return self("logout", address, check=False)


class Podman(_AuthFileClient):
    """podman with its own vfs store in a temp dir: no overlay or fuse needed, no leftovers;
    its credentials go to an auth file there too."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.auth_file = root / "auth.json"
        self.global_args = [
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
            "--tmpdir",
            str(root / "tmp"),
        ]

    def __call__(self, *args: str | Path, check: bool = True, stdin: str | None = None) -> Result:
        env = {"REGISTRY_AUTH_FILE": str(self.auth_file)}
        return run(self.binary, *self.global_args, *args, check=check, env=env, stdin=stdin)

    def image_id(self, reference: str) -> str | None:
        result = self("image", "inspect", "--format", "{{.Id}}", reference, check=False)
        return result.output.strip() if result.returncode == 0 else None


class Skopeo(_AuthFileClient):
    """skopeo; the TLS flags and credentials (`--creds`, `--src-creds`, `--dest-creds`) stay
    with each call, since they differ between subcommands. What `login` stores goes to
    `auth_file`, which nothing else reads: a fresh `Skopeo` is anonymous."""

    def __init__(self, binary: str, auth_file: Path) -> None:
        self.binary = binary
        self.auth_file = auth_file

    def with_auth_file(self, auth_file: Path) -> Skopeo:
        return Skopeo(self.binary, auth_file)
