"""docker and skopeo push and pull through a registry whose blobs live in S3 (the real Ceph
gateway): layers go up as multipart uploads and come down through 307 redirects to presigned
URLs, which the clients follow to the gateway themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clienttools import Docker, Skopeo, pushed_digest
from test_client_docker import import_image

from support.images import (
    OCI_MANIFEST,
    build_image,
    read_oci_layout_blob,
    read_oci_layout_manifest,
    write_oci_layout,
)
from support.s3gateway import S3Gateway
from support.server import RunningServer

pytestmark = [pytest.mark.clients, pytest.mark.s3]


@pytest.fixture(scope="module")
def s3_server(
    s3_gateway: S3Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    bucket = s3_gateway.create_bucket(f"clients-{os.getpid()}")
    env = {**s3_gateway.environment(), "OCIREGISTRY_STORAGE": f"s3://{bucket}/registry"}
    server = RunningServer(tmp_path_factory.mktemp("s3clients") / "data", env=env).start()
    server.create_registry("team")
    yield server
    server.stop()


def test_docker_push_and_pull_on_s3(
    s3_server: RunningServer, docker: Docker, tmp_path: Path
) -> None:
    user = docker.as_user(tmp_path / "docker-config")
    user.login(s3_server.address, *s3_server.admin)
    image_id = import_image(user, tmp_path, "docker-on-s3")
    reference = f"{s3_server.address}/team/app:1.0"
    user.tag(image_id, reference)
    digest = pushed_digest(user("push", reference).output)
    user("rmi", "--force", image_id)
    assert user.image_id(image_id) is None
    pull = user.pull(f"{s3_server.address}/team/app@{digest}")
    assert digest in pull.output, pull.describe()
    assert user.image_id(reference.replace(":1.0", f"@{digest}")) == image_id


def test_skopeo_round_trip_on_s3(s3_server: RunningServer, skopeo: Skopeo, tmp_path: Path) -> None:
    image = build_image("skopeo-on-s3", layer_count=2)
    source = write_oci_layout(tmp_path / "source", image, tag="v1")
    remote = f"docker://{s3_server.address}/team/oci:v1"
    creds = ":".join(s3_server.admin)
    skopeo(
        "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
        creds, f"oci:{source}:v1", remote,
    )  # fmt: skip
    back = tmp_path / "back"
    skopeo(
        "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds,
        remote, f"oci:{back}:v1",
    )  # fmt: skip
    manifest = read_oci_layout_manifest(back, "v1")
    assert (manifest.digest, manifest.media_type) == (image.digest, OCI_MANIFEST)
    for blob in image.blobs():
        assert read_oci_layout_blob(back, blob.digest).data == blob.data
