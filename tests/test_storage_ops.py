"""Garbage collection on S3, `ociregistry fsck` and `ociregistry storage copy`, against real
server processes, the real CLI and (marked `s3`) the real gateway (tests/s3gateway.py).

- Collection on S3 sends no ListObjects at all (its candidates come from the database) and
  deletes the garbage with DeleteObjects, counted by the S3 driver's own request counter;
- fsck finds planted faults (a blob the store lacks, objects no row knows, a blob whose bytes
  no longer match its digest with `--verify`), exits 1 for them and 0 on a sound store, on the
  filesystem and on S3;
- `storage copy` is interrupted, resumed (it skips what is there with the right size, copies
  again what is missing or truncated), and a server on S3 then serves the images pushed on the
  filesystem.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ociregistry.blobstore.base import CheckedDriver
from ociregistry.blobstore.s3 import S3Driver
from ociregistry.config import Settings
from ociregistry.content.gc import GarbageCollector
from ociregistry.db.database import Database
from support.oci import digest_of, make_image, push_blob, push_image
from support.s3gateway import S3Gateway
from support.server import RunningServer

MIB = 1 << 20


def blob_key(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"blobs/{algorithm}/{hex_[:2]}/{hex_}"


def push_images(server: RunningServer, registry: str, count: int, big: int = 0) -> list:
    """`count` small images tagged `1` in `registry/app-N`, and a `big`-byte blob in the
    first (so a copy takes a while)."""
    server.create_registry(registry)
    images = [make_image(f"{registry}-{n}") for n in range(count)]
    with httpx.Client(base_url=server.url, auth=server.admin, timeout=120) as client:
        for n, image in enumerate(images):
            push_image(client, f"{registry}/app-{n}", image, "1")
        if big:
            answer = push_blob(client, f"{registry}/app-0", os.urandom(big))
            assert answer.status_code == 201, answer.text
    return images


def fsck(server: RunningServer, *args: str) -> tuple[int, dict]:
    done = server.cli("fsck", "--json", *args, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def kinds(report: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for problem in report["problems"]:
        found.setdefault(problem["kind"], set()).add(problem["digest"] or problem["path"])
    return found


def check_planted_faults(
    server: RunningServer,
    registry: str,
    remove: Callable[[str], None],
    write: Callable[[str, bytes], None],
) -> None:
    """Plant a missing blob, two unknown objects and a corrupted blob; fsck finds each."""
    images = push_images(server, registry, 3)
    status, report = fsck(server, "--verify")
    assert status == 0 and report["problems"] == [], report
    assert report["verified"] >= 9

    missing = digest_of(images[0].layers[0])
    remove(blob_key(missing))
    stray = digest_of(b"an object no row knows")
    write(blob_key(stray), b"an object no row knows")
    write("blobs/not-a-blob", b"junk")
    corrupted = digest_of(images[1].config)
    write(blob_key(corrupted), bytes(len(images[1].config)))  # same size, other bytes

    status, report = fsck(server)
    assert status == 1
    found = kinds(report)
    assert found["missing"] == {missing}
    assert found["unknown"] == {stray, "blobs/not-a-blob"}
    assert "digest" not in found  # only --verify hashes

    status, report = fsck(server, "--verify")
    assert status == 1 and kinds(report)["digest"] == {corrupted}
    plain = server.cli("fsck", "--verify", check=False)
    assert plain.returncode == 1 and "1 missing, 2 unknown" in plain.stdout


def test_fsck_finds_planted_faults_on_the_filesystem(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data").start()
    root = server.data_dir / "storage"

    def write(path: str, data: bytes) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)

    try:
        check_planted_faults(server, "fsck-fs", lambda path: (root / path).unlink(), write)
    finally:
        server.stop()


# -- S3 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ops_bucket(s3_gateway: S3Gateway) -> str:
    return s3_gateway.create_bucket(f"storage-ops-{os.getpid()}")


def s3_server(gateway: S3Gateway, data_dir: Path, bucket: str, prefix: str) -> RunningServer:
    env = {**gateway.environment(), "OCIREGISTRY_STORAGE": f"s3://{bucket}/{prefix}"}
    return RunningServer(data_dir, workers=1, env=env).start()


@pytest.mark.s3
def test_fsck_finds_planted_faults_on_s3(
    s3_gateway: S3Gateway, ops_bucket: str, tmp_path: Path
) -> None:
    server = s3_server(s3_gateway, tmp_path / "data", ops_bucket, "fsck")
    s3 = s3_gateway.client()

    def remove(path: str) -> None:
        s3.delete_object(Bucket=ops_bucket, Key=f"fsck/{path}")

    def write(path: str, data: bytes) -> None:
        s3.put_object(Bucket=ops_bucket, Key=f"fsck/{path}", Body=data)

    try:
        check_planted_faults(server, "fsck-s3", remove, write)
    finally:
        server.stop()


@pytest.fixture
def aws_environment(s3_gateway: S3Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in s3_gateway.environment().items():
        monkeypatch.setenv(name, value)
    yield


@pytest.mark.s3
@pytest.mark.usefixtures("aws_environment")
def test_collection_on_s3_lists_nothing_and_deletes_in_batches(
    s3_gateway: S3Gateway, ops_bucket: str, tmp_path: Path
) -> None:
    server = s3_server(s3_gateway, tmp_path / "data", ops_bucket, "gc")
    try:
        images = push_images(server, "gc-s3", 3)
        server.cli("image", "delete", "gc-s3", "app-0")
        server.cli("image", "delete", "gc-s3", "app-1")
        settings = Settings(data_dir=str(server.data_dir), storage=f"s3://{ops_bucket}/gc")

        async def collect() -> tuple[int, dict[str, int]]:
            driver = S3Driver.from_settings(settings)
            db = Database(settings.resolved_database_url)
            try:
                collector = GarbageCollector(db, CheckedDriver(driver), grace_seconds=0)
                report = await collector.collect()  # while the server serves
                return report.blobs_deleted, dict(driver.operations)
            finally:
                await db.dispose()
                await driver.close()

        deleted, operations = asyncio.run(collect())
        assert deleted == 6  # two images: config, layer, manifest each
        assert operations == {"DeleteObjects": 1}  # no ListObjects, no HEAD, one batch
        s3 = s3_gateway.client()
        keys = {
            item["Key"]
            for item in s3.list_objects_v2(Bucket=ops_bucket, Prefix="gc/blobs/").get(
                "Contents", []
            )
        }
        gone = [images[0], images[1]]
        for image in gone:
            for data in (image.manifest, *image.blobs):
                assert f"gc/{blob_key(digest_of(data))}" not in keys
        for data in (images[2].manifest, *images[2].blobs):
            assert f"gc/{blob_key(digest_of(data))}" in keys
        with httpx.Client(base_url=server.url, auth=server.admin, timeout=60) as client:
            kept = client.get(
                "/v2/gc-s3/app-2/manifests/1", headers={"Accept": images[2].media_type}
            )
            assert kept.status_code == 200 and kept.content == images[2].manifest
    finally:
        server.stop()


@pytest.mark.s3
def test_storage_copy_is_resumable_and_a_server_on_s3_serves_the_images(
    s3_gateway: S3Gateway, ops_bucket: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = RunningServer(data_dir, workers=1).start()
    images = push_images(server, "moving", 6, big=24 * MIB)
    server.stop()  # "stop, copy, set storage, start"
    env = {**server.env, **s3_gateway.environment()}
    command = [
        sys.executable, "-m", "ociregistry", "storage", "copy",
        "--to", f"s3://{ops_bucket}/moved", "--data-dir", str(data_dir), "--json",
    ]  # fmt: skip

    # Interrupted after its first blob: the rest is left for the next run.
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stderr is not None
    line = first.stderr.readline().decode()
    assert line.startswith(("copied ", "skipped ")), line
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    first.stdout.close()  # type: ignore[union-attr]
    first.stderr.close()

    # What an interruption can leave: an object missing, another cut short.
    s3 = s3_gateway.client()
    lost, cut = digest_of(images[4].manifest), digest_of(images[5].config)
    s3.put_object(Bucket=ops_bucket, Key=f"moved/{blob_key(cut)}", Body=b"cut")
    s3.delete_object(Bucket=ops_bucket, Key=f"moved/{blob_key(lost)}")

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["failed"] == [] and report["copied"] >= 2 and report["skipped"] >= 1
    assert report["copied"] + report["skipped"] == 6 * 3 + 1
    again = json.loads(subprocess.run(command, env=env, capture_output=True, text=True).stdout)
    assert again["copied"] == 0 and again["skipped"] == 6 * 3 + 1

    moved = s3_server(s3_gateway, data_dir, ops_bucket, "moved")
    try:
        with httpx.Client(base_url=moved.url, auth=moved.admin, timeout=120) as client:
            for n, image in enumerate(images):
                got = client.get(
                    f"/v2/moving/app-{n}/manifests/1", headers={"Accept": image.media_type}
                )
                assert got.status_code == 200 and got.content == image.manifest
                for blob in image.blobs:
                    fetched = client.get(
                        f"/v2/moving/app-{n}/blobs/{digest_of(blob)}", follow_redirects=True
                    )
                    assert fetched.status_code == 200 and fetched.content == blob
        status, checked = fsck(moved, "--verify")
        assert status == 0 and checked["objects"] == 6 * 3 + 1, checked
    finally:
        moved.stop()


@pytest.mark.s3
def test_storage_copy_refuses_a_blob_whose_bytes_do_not_match(
    s3_gateway: S3Gateway, ops_bucket: str, tmp_path: Path
) -> None:
    server = RunningServer(tmp_path / "data", workers=1, env=s3_gateway.environment()).start()
    images = push_images(server, "rotten", 1)
    server.stop()
    rotten = digest_of(images[0].layers[0])
    path = server.data_dir / "storage" / blob_key(rotten)
    path.write_bytes(bytes(path.stat().st_size))
    done = server.cli("storage", "copy", "--to", f"s3://{ops_bucket}/rotten", "--json", check=False)
    assert done.returncode == 1
    assert json.loads(done.stdout)["copied"] == 2
    keys = s3_gateway.client().list_objects_v2(Bucket=ops_bucket, Prefix="rotten/")
    assert f"rotten/{blob_key(rotten)}" not in {item["Key"] for item in keys["Contents"]}
