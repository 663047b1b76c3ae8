"""The same registry on PostgreSQL: a real server process on a real PostgreSQL cluster, started
for this test module (Debian's `postgresql` package, which scripts/test installs).

The conformance suite and a walk through the management API, pull counts and deletion must
pass exactly as they do on the embedded SQLite.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server import RunningServer, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1; yields its base URL."""
    binaries = _postgres_bin()
    if binaries is None:
        if os.environ.get("OCIREGISTRY_REQUIRE_CLIENTS") == "1":
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed")
    # Not under pytest's folder: that one is root's alone, and the cluster belongs to postgres.
    data = Path(tempfile.mkdtemp(prefix="ociregistry-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    initialised = _as_postgres(
        str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"
    )
    assert initialised.returncode == 0, initialised.stderr
    port = free_port()
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=on"
    started = _as_postgres(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(data / "log"),
        "-w",
        "start",
    )
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}"
    finally:
        _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    binaries = _postgres_bin()
    assert binaries is not None
    port = postgres.rsplit(":", 1)[1]
    created = _as_postgres(
        str(binaries / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "registry"
    )
    assert created.returncode == 0, created.stderr
    running = RunningServer(
        tmp_path_factory.mktemp("pg-registry") / "data",
        env={"OCIREGISTRY_DATABASE_URL": f"{postgres}/registry"},
    ).start()
    yield running
    running.stop()


def test_conformance_suite_passes_on_postgres(pg_server: RunningServer) -> None:
    pg_server.create_registry("conformance")
    env = {name: value for name, value in os.environ.items() if not name.startswith("OCI_")}
    env["OCI_AUTOMATIC_CROSSMOUNT"] = "0"
    env["OCI_USERNAME"], env["OCI_PASSWORD"] = pg_server.admin
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ociregistry.conformance",
            "--url",
            pg_server.url,
            "--namespace",
            "conformance/repo",
            "--crossmount-namespace",
            "conformance/cross",
            "--strict",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def _push(client: httpx.Client, repo: str, tag: str) -> str:
    import hashlib
    import json

    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    pushed = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": config_digest}, content=config
    )
    assert pushed.status_code == 201, pushed.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    put = client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    return put.headers["Docker-Content-Digest"]


def test_console_features_on_postgres(pg_server: RunningServer) -> None:
    """Registries with labels, image and tag lists, pull counts, and deletion."""
    with httpx.Client(base_url=pg_server.url, auth=pg_server.admin, timeout=60) as client:
        created = client.post(
            "/api/v1/registries",
            json={
                "name": "pg-team",
                "remark": "on postgres",
                "labels": {"env": "prod"},
            },
        )
        assert created.status_code == 201, created.text
        for tag in ("1.0", "2.0"):
            _push(client, "pg-team/app", tag)
        _push(client, "pg-team/tool", "1.0")

        listed = client.get("/api/v1/registries", params={"label": "env:prod", "q": "pg-"})
        assert [r["name"] for r in listed.json()["items"]] == ["pg-team"]
        assert listed.json()["items"][0]["image_count"] == 2

        assert client.get("/v2/pg-team/app/manifests/1.0").status_code == 200
        deadline = time.monotonic() + 5
        while True:
            image = client.get("/api/v1/registries/pg-team/images/app").json()
            if image["pull_count"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert image["pull_count"] == 1 and image["latest_tag"] == "2.0"
        tags = client.get("/api/v1/registries/pg-team/images/app/-/tags").json()["items"]
        assert {t["name"]: t["pull_count"] for t in tags} == {"1.0": 1, "2.0": 0}

        refused = client.delete("/api/v1/registries/pg-team")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == (
            "REGISTRY_NOT_EMPTY"
        )
        assert client.delete("/api/v1/registries/pg-team/images/app/-/tags/1.0").json() == {
            "name": "1.0",
            "image_deleted": False,
        }
        accepted = client.delete("/api/v1/registries/pg-team", params={"delete_images": "true"})
        assert accepted.status_code in (202, 204), accepted.text
        deadline = time.monotonic() + 30
        while client.get("/api/v1/registries/pg-team").status_code != 404:
            assert time.monotonic() < deadline, "the registry was never deleted"
            time.sleep(0.2)
        again = client.post("/api/v1/registries", json={"name": "pg-team"})
        assert again.status_code == 201, again.text
