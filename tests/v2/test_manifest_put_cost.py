"""What a manifest PUT costs the database, counted, never timed (issue 15 goal 3, issue 11
point 5): the last request of a small push, and the one that keeps usage exact (issue 14).

Its references are checked once before its bytes are written (one read) and once more inside
its transaction, by the very statement that counts them at the image level (a blob unlinked
in between adds no usage row, and the push is refused); every statement of the transaction is
compiled once and, on SQLite, run on the driver, not through SQLAlchemy's execution. Counted
on the database's side as tests/v2/test_push_cost.py counts the upload's statements.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from ociregistry.blobstore.digest import Digest
from ociregistry.db.models import BlobUsage, ImageUsage, Manifest, Registry, RegistryUsage
from ociregistry.errors import ManifestBlobUnknown
from ociregistry.manifests.parse import parse_manifest
from ociregistry.names import RepositoryName
from support.inprocess import InProcessRegistry, push_image
from support.oci import digest_of, make_image
from support.pgcluster import PostgresCluster

REGISTRY = "mcost"
_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessRegistry]:
    database_url = ""
    if request.param == "postgres":
        cluster = request.getfixturevalue("postgres")
        database_url = cluster.create_database(f"mcost{next(_databases)}")
    running = InProcessRegistry(tmp_path / "data", database_url=database_url)
    running.run(running.services.registries.create(REGISTRY, public=True))
    yield running
    running.close()


def _sqlite(registry: InProcessRegistry) -> bool:
    return registry.services.db.url.startswith("sqlite")


@dataclass
class Statements:
    """The statements the database received: the write transactions', the reads' on the
    event loop (SQLite), and those SQLAlchemy executed."""

    written: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    through_sqlalchemy: list[str] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)

    def clear(self) -> None:
        for seen in (self.written, self.read, self.through_sqlalchemy, self.transactions):
            seen.clear()


def _kept(sql: str) -> bool:
    return not sql.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "--"))


@pytest.fixture
def statements(registry: InProcessRegistry) -> Iterator[Statements]:
    seen = Statements()
    db = registry.services.db
    engines: list[Engine] = [db._writer.sync_engine]
    if db._sync_writer is not None:  # durable commits and those without an fsync alike
        engines.append(db._sync_writer)

    def traced(sql: str) -> None:
        # sqlite3 reports a statement again as each of its triggers runs (tags, usage): once.
        if _kept(sql) and not (seen.written and seen.written[-1] == sql):
            seen.written.append(sql)

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            dbapi.set_trace_callback(traced)

    def executed(conn: Any, cursor: Any, sql: str, *_args: Any) -> None:
        if not _kept(sql) or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        seen.through_sqlalchemy.append(sql)
        if not isinstance(cursor, sqlite3.Cursor):  # PostgreSQL: SQLAlchemy runs every write
            seen.written.append(sql)

    def began(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            seen.transactions.append("BEGIN")

    for engine in engines:
        event.listen(engine, "checkout", checkout)
        event.listen(engine, "before_cursor_execute", executed)
        event.listen(engine, "begin", began)
    inline = None
    if db._inline is not None:
        inline = db._inline._conn().connection.driver_connection
        inline.set_trace_callback(lambda sql: seen.read.append(sql) if _kept(sql) else None)
    yield seen
    if inline is not None:
        inline.set_trace_callback(None)
    for engine in engines:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "begin", began)


async def _blobs(registry: InProcessRegistry, repo: str, blobs: list[bytes]) -> None:
    for blob in blobs:
        started = await registry.client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = await registry.client.put(
            started.headers["location"], params={"digest": digest_of(blob)}, content=blob
        )
        assert done.status_code == 201, done.text


def test_a_manifest_put_checks_its_references_once_and_runs_on_the_driver(
    registry: InProcessRegistry, statements: Statements
) -> None:
    """One transaction. Before it, one read checks the blobs and looks for the manifest under
    another algorithm (on SQLite, one statement on the driver, where there were three, two of
    them through SQLAlchemy); inside it no statement reads the image's
    blob links again except the image-level usage upsert, which counts exactly those linked,
    or on SQLite, where the count follows the PUT, one check of those links; there the other
    read of the transaction finds the registry, its immutable-tag patterns, its quota and the
    image at once, and no statement goes through SQLAlchemy (there were 13 of 29)."""
    repo = f"{REGISTRY}/app"
    registry.run(push_image(registry.client, repo, make_image("warm"), "warm"))
    image = make_image("counted")
    registry.run(_blobs(registry, repo, image.blobs))
    statements.clear()

    put = registry.run(
        registry.client.put(
            f"/v2/{repo}/manifests/v1",
            content=image.manifest,
            headers={"Content-Type": image.media_type},
        )
    )
    assert put.status_code == 201, put.text

    assert len(statements.transactions) == 1
    reads_of_links = [
        sql
        for sql in statements.written
        if sql.startswith("SELECT") and "FROM image_blobs" in sql.replace("\n", " ")
    ]
    usage_upserts = [sql for sql in statements.written if "INSERT INTO image_usage" in sql]
    if _sqlite(registry):
        # Counted after the PUT (catalog/usage_deferred.py): the PUT's one check of the
        # links instead, and nothing of usage written.
        assert len(reads_of_links) == 1 and usage_upserts == []
        assert not [sql for sql in statements.written if "usage" in sql]
        assert statements.through_sqlalchemy == []
        selects = [sql for sql in statements.written if sql.startswith("SELECT")]
        assert len(selects) == 2 and "immutable_tags" in selects[0]
        catalog_reads = [
            sql
            for sql in statements.read
            if any(table in sql for table in ("image_blobs", "manifests", "images"))
        ]
        assert len(catalog_reads) == 1, statements.read  # 3 before
        # 29 at first; 19 (counted as here) while usage ran a statement per blob and level
        assert len(statements.written) <= 8, statements.written
    else:
        assert reads_of_links == [], "the references are not read again in the transaction"
        assert usage_upserts and all("FROM image_blobs" in sql for sql in usage_upserts)


def test_a_blob_unlinked_after_the_check_refuses_the_manifest_in_its_transaction(
    registry: InProcessRegistry,
) -> None:
    """The race the check inside the transaction is for: a layer's link is deleted after the
    check before the bytes were written. The transaction refuses the manifest with
    MANIFEST_BLOB_UNKNOWN and changes nothing: no manifest row, no usage at any level."""
    repo = f"{REGISTRY}/racy"
    image = make_image("racy")
    registry.run(_blobs(registry, repo, image.blobs))
    layer = digest_of(image.layers[0])
    images = registry.services.images
    name = RepositoryName(REGISTRY, "racy")
    parsed = parse_manifest(image.manifest, image.media_type)
    registry.run(images.missing_references(name, parsed))  # the check before: all there
    deleted = registry.run(registry.client.delete(f"/v2/{repo}/blobs/{layer}"))
    assert deleted.status_code == 202, deleted.text

    with pytest.raises(ManifestBlobUnknown) as refused:
        registry.run(
            images.record_manifest(
                name, Digest.parse(image.digest), len(image.manifest), parsed, "v1"
            )
        )
    assert refused.value.detail == {"digests": [layer]}
    assert layer in refused.value.message

    async def figures() -> tuple[Any, ...]:
        async with registry.services.db.read() as conn:
            return (
                await conn.scalar(select(func.count()).select_from(Manifest)),
                await conn.scalar(select(func.count()).select_from(ImageUsage)),
                await conn.scalar(select(func.count()).select_from(RegistryUsage)),
                await conn.scalar(select(func.count()).where(BlobUsage.refs > 0)),
                await conn.scalar(select(Registry.size_bytes).where(Registry.name == REGISTRY)),
            )

    assert registry.run(figures()) == (0, 0, 0, 0, 0)
    tagged = registry.run(registry.client.get(f"/v2/{repo}/manifests/v1"))
    assert tagged.status_code == 404, tagged.text


def test_a_manifest_pushed_again_adds_no_usage_and_moves_its_tag(
    registry: InProcessRegistry,
) -> None:
    """The same manifest pushed again under another tag: its row is found (the insert did
    nothing), no usage is counted twice, and the tag points at it."""
    repo = f"{REGISTRY}/again"
    image = make_image("again")
    registry.run(push_image(registry.client, repo, image, "one"))
    api = f"/api/v1/registries/{REGISTRY}/images/again"
    before = registry.run(registry.client.get(api)).json()["size_bytes"]
    registry.run(push_image(registry.client, repo, image, "two"))
    after = registry.run(registry.client.get(api)).json()
    assert after["size_bytes"] == before == len(image.manifest) + sum(map(len, image.blobs))
    for tag in ("one", "two"):
        got = registry.run(registry.client.get(f"/v2/{repo}/manifests/{tag}"))
        assert got.headers["docker-content-digest"] == image.digest
