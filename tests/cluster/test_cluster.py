"""Three instances on one PostgreSQL and one S3 bucket behind a real nginx
(tests/support/cluster.py): through nginx they must act as one registry, for the conformance
suite, docker and skopeo, a chunked upload whose PATCHes land on three different instances, and
pull counts spread over the instances.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import httpx
import pytest

from support import conformance
from support.cluster import SHIPPED, Cluster, directives, render
from support.images import build_image, rootfs_tar, write_oci_layout
from support.oci import make_image, push_image, start_upload

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from clienttools import Docker, Skopeo, find_tool
from test_pull_counts import ACCEPT, wait_for_counts

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

MIB = 1024 * 1024


def test_the_test_nginx_uses_the_shipped_directives() -> None:
    """Only the upstream servers and the listen address differ from deploy/ (the documented
    example), so what the cluster tests prove holds for the file operators copy."""
    shipped = directives(SHIPPED.read_text())
    rendered = directives(render([7001, 7002, 7003], 7000))

    def fixed(lines: list[str]) -> list[str]:
        return [ln for ln in lines if not ln.startswith(("server 127.0.0.1:", "listen "))]

    assert fixed(rendered) == fixed(shipped)
    assert [ln for ln in rendered if ln.startswith("server 127.0.0.1:")] == [
        "server 127.0.0.1:7001;", "server 127.0.0.1:7002;", "server 127.0.0.1:7003;",
    ]  # fmt: skip
    for directive in ("client_max_body_size 0;", "proxy_request_buffering off;",
                      "proxy_buffering off;"):  # fmt: skip
        assert directive in rendered


def test_conformance_suite_passes_through_nginx(cluster: Cluster, tmp_path: Path) -> None:
    cluster.create_registry(conformance.REGISTRY)
    result, report = conformance.run_suite(cluster, tmp_path / "junit.xml")  # type: ignore[arg-type]
    counts = conformance.totals(report)
    summary = f"{counts}\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, summary
    assert counts["failures"] == 0 and counts["errors"] == 0, summary
    assert counts["tests"] >= conformance.MIN_TESTS, summary
    landed = {line.rsplit(" ", 1)[1] for line in cluster.nginx.upstreams()}
    assert landed >= {instance.address for instance in cluster.instances}, landed


def test_docker_and_skopeo_push_and_pull_through_nginx(
    cluster: Cluster, registry_name: str, tmp_path: Path
) -> None:
    cluster.create_registry(registry_name)
    docker = Docker(find_tool("docker", "OCIREGISTRY_DOCKER"), tmp_path / "docker")
    try:
        login = docker.login(cluster.address, *cluster.admin)
        assert "Login Succeeded" in login.output, login.describe()
        reference = f"{cluster.address}/{registry_name}/docker:1.0"
        image_id = docker.import_tar(rootfs_tar(tmp_path / "rootfs.tar", registry_name), reference)
        docker("push", reference)
        docker("rmi", "--force", reference)
        assert docker.image_id(reference) is None
        docker.pull(reference)
        assert docker.image_id(reference) == image_id
    finally:
        docker.cleanup()
        docker.logout(cluster.address)

    skopeo = Skopeo(find_tool("skopeo"), tmp_path / "skopeo-auth.json")
    image = build_image(f"{registry_name}-skopeo")
    layout = write_oci_layout(tmp_path / "layout", image, tag="src")
    creds = ":".join(cluster.admin)
    target = f"docker://{cluster.address}/{registry_name}/skopeo:1.0"
    skopeo("copy", "--quiet", "--dest-creds", creds, "--dest-tls-verify=false",
           f"oci:{layout}:src", target)  # fmt: skip
    skopeo("copy", "--quiet", "--src-creds", creds, "--src-tls-verify=false",
           target, f"oci:{tmp_path / 'back'}:x")  # fmt: skip
    index = (tmp_path / "back" / "index.json").read_text()
    assert image.manifest.digest in index, index


def test_a_chunked_upload_continues_on_every_instance(cluster: Cluster, registry_name: str) -> None:
    """Each PATCH goes straight to a different instance: the session, the saved hash state
    and the multipart parts are shared (database and S3), not held by one process."""
    cluster.create_registry(registry_name)
    repo = f"{registry_name}/chunked"
    chunks = [os.urandom(5 * MIB + n) for n in range(3)]
    data = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with cluster.client() as through_nginx:
        location = start_upload(through_nginx, repo)
    offset = 0
    for instance, chunk in zip(cluster.instances, chunks, strict=True):
        with cluster.client(instance.url) as direct:
            answer = direct.patch(
                location,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
            assert answer.status_code == 202, f"{instance.address}: {answer.text}"
            offset += len(chunk)
            assert answer.headers["Range"] == f"0-{offset - 1}"
    with cluster.client() as through_nginx:
        done = through_nginx.put(location, params={"digest": digest})
        assert done.status_code == 201, done.text
        got = through_nginx.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]


def test_pull_counts_are_right_when_pulls_spread_over_instances(
    cluster: Cluster, registry_name: str
) -> None:
    cluster.create_registry(registry_name)
    repo = f"{registry_name}/counted"
    with cluster.client() as http:
        push_image(http, repo, make_image(registry_name), tag="1.0")
    pulls = 2 * len(cluster.instances)
    for n in range(pulls):
        instance = cluster.instances[n % len(cluster.instances)]
        got = httpx.get(
            f"{instance.url}/v2/{repo}/manifests/1.0", headers={"Accept": ACCEPT}, timeout=30
        )
        assert got.status_code == 200, got.text
    with cluster.client() as http:
        wait_for_counts(http, registry_name, "counted", (pulls, {"1.0": pulls}))
