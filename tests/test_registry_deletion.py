"""Registry deletion (SPEC §4) is one workflow, scoped to the registry asked for, that the
management API and the CLI share: a request to delete one registry never does the work of
another registry's deletion (a crash, or another worker, may have left one `deleting`); that
is the background sweep's job, which runs at start and then every 30-60 s.

Against a real server: the sweep's first run is over by the time a test puts a registry in
`deleting` behind the server's back (as a crash would), and its next run is 30 s away.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import httpx

from support.oci import make_image, push_image
from support.server import RunningServer

API = "/api/v1"
WAIT_SECONDS = 20.0  # a background deletion of one small image takes milliseconds


def _stuck(server: RunningServer, admin: httpx.Client, name: str) -> None:
    """A registry holding an image, left `deleting` as a crash mid-deletion leaves it."""
    assert admin.post(f"{API}/registries", json={"name": name}).status_code == 201
    push_image(admin, f"{name}/app", make_image(name), "1.0")
    with closing(sqlite3.connect(server.data_dir / "registry.db", timeout=60)) as db:
        db.execute("UPDATE registries SET status = 'deleting' WHERE name = ?", (name,))
        db.commit()


def _status(admin: httpx.Client, name: str) -> str | None:
    response = admin.get(f"{API}/registries/{name}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()["status"]


def _wait_gone(admin: httpx.Client, name: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while _status(admin, name) is not None:
        assert time.monotonic() < deadline, f"registry {name} was never deleted"
        time.sleep(0.05)


def test_deleting_one_registry_leaves_another_registrys_deletion_to_the_sweep(
    fresh_server: RunningServer,
) -> None:
    with httpx.Client(base_url=fresh_server.url, auth=fresh_server.admin, timeout=60) as admin:
        _stuck(fresh_server, admin, "stuck")

        # Only untagged leftovers: finished within the request (204) ...
        assert admin.post(f"{API}/registries", json={"name": "leftovers"}).status_code == 201
        push_image(admin, "leftovers/app", make_image("leftovers"))  # by digest: no tag
        response = admin.delete(f"{API}/registries/leftovers")
        assert response.status_code == 204, response.text
        assert _status(admin, "leftovers") is None
        # ... and that request did not sweep the other registry.
        assert _status(admin, "stuck") == "deleting"

        # Tagged images: 202, and this registry's images go in the background ...
        assert admin.post(f"{API}/registries", json={"name": "tagged"}).status_code == 201
        push_image(admin, "tagged/app", make_image("tagged"), "1.0")
        response = admin.delete(f"{API}/registries/tagged", params={"delete_images": "true"})
        assert response.status_code in (202, 204), response.text
        _wait_gone(admin, "tagged")
        # ... only this registry's.
        assert _status(admin, "stuck") == "deleting"

        # Deleting it again is refused as under way, not redone.
        refused = admin.delete(f"{API}/registries/stuck", params={"delete_images": "true"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "REGISTRY_DELETING"
        assert _status(admin, "stuck") == "deleting"


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        env=server.env,
        timeout=120,
    )


def test_the_cli_deletes_through_the_same_workflow(fresh_server: RunningServer) -> None:
    with httpx.Client(base_url=fresh_server.url, auth=fresh_server.admin, timeout=60) as admin:
        _stuck(fresh_server, admin, "stuck")
        assert admin.post(f"{API}/registries", json={"name": "full"}).status_code == 201
        push_image(admin, "full/app", make_image("full"), "1.0")

        refused = _cli(fresh_server, "registry", "delete", "full", "--json")
        assert refused.returncode != 0
        assert "holds 1 images" in refused.stderr, refused.stderr
        assert _status(admin, "full") == "available"

        done = _cli(fresh_server, "registry", "delete", "full", "--delete-images", "--json")
        assert done.returncode == 0, done.stderr
        assert _status(admin, "full") is None  # the command waits for its images to go
        assert _status(admin, "stuck") == "deleting"  # and did not sweep another registry
