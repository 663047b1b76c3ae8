"""What a small push costs the database, counted, never timed (issue 11 point 5, issue 15
goal 3: small pushes must not fall behind the registry before its upload sessions became rows).

A small image is what docker pushes most: for a layer and a config, a POST that starts an
upload and a PUT with the whole blob; then the manifest. Each statement and transaction on that
path is CPU the worker spends per push. The counts come from the database's side: on SQLite
from sqlite3's trace of the write connections (whatever runs the statement: SQLAlchemy or the
driver itself), on PostgreSQL from SQLAlchemy, which runs every write there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from support.inprocess import InProcessRegistry
from support.oci import digest_of, make_image

REGISTRY = "cost"


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[InProcessRegistry]:
    with InProcessRegistry(tmp_path / "data", database_url=database_url) as running:
        running.run(running.services.registries.create(REGISTRY, public=True))
        yield running


@dataclass
class Writes:
    """The statements of the registry's write transactions, as the database received them."""

    statements: list[str] = field(default_factory=list)
    through_sqlalchemy: list[str] = field(default_factory=list)

    def of(self, table: str, statements: list[str] | None = None) -> list[str]:
        """The leading verb of each statement that names `table`."""
        seen = self.statements if statements is None else statements
        return [sql.split()[0].upper() for sql in seen if table in sql]


def _write_engines(registry: InProcessRegistry) -> list[Engine]:
    db = registry.services.db
    engines = [db._writer.sync_engine]
    if db._sync_writer is not None:  # durable commits and those without an fsync alike
        engines.append(db._sync_writer)
    return engines


@pytest.fixture
def writes(registry: InProcessRegistry) -> Iterator[Writes]:
    seen = Writes()

    def traced(sql: str) -> None:
        # sqlite3 reports a statement again as each of its triggers runs (usage): once.
        if seen.statements and seen.statements[-1] == sql:
            return
        if not sql.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "--")):
            seen.statements.append(sql)

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            dbapi.set_trace_callback(traced)

    def executed(_conn: Any, cursor: Any, sql: str, *_args: Any) -> None:
        if sql.startswith(("BEGIN", "COMMIT", "PRAGMA")):
            return
        seen.through_sqlalchemy.append(sql)
        if not isinstance(cursor, sqlite3.Cursor):  # PostgreSQL: SQLAlchemy runs every write
            seen.statements.append(sql)

    engines = _write_engines(registry)
    for engine in engines:
        event.listen(engine, "checkout", checkout)
        event.listen(engine, "before_cursor_execute", executed)
    yield seen
    for engine in engines:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "before_cursor_execute", executed)


async def _upload(registry: InProcessRegistry, repo: str, blob: bytes) -> None:
    """POST, then PUT with the whole blob: how docker sends a config or a small layer."""
    started = await registry.client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    done = await registry.client.put(
        started.headers["location"], params={"digest": digest_of(blob)}, content=blob
    )
    assert done.status_code == 201, done.text


def _transactions(registry: InProcessRegistry) -> list[str]:
    """Every transaction the registry's writers begin, from now on (PostgreSQL's reads share
    the engine, in autocommit: they are no transaction of ours)."""
    begun: list[str] = []

    def began(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            begun.append("BEGIN")

    for engine in _write_engines(registry):
        event.listen(engine, "begin", began)
    return begun


def test_a_small_blob_pushed_whole_costs_one_transaction(
    registry: InProcessRegistry, writes: Writes
) -> None:
    """POST, then PUT with the whole blob: the PUT takes no claim. Its bytes go straight to
    the blob's place, then one transaction drops the session by compare-and-set, records the
    garbage candidate and links the blob: the session's row is written twice (created,
    dropped), and the PUT commits once, not twice (claim, drop)."""
    registry.run(_upload(registry, f"{REGISTRY}/app", make_image("warm").blobs[0]))
    writes.statements.clear()
    writes.through_sqlalchemy.clear()
    begun = _transactions(registry)

    started = registry.run(registry.client.post(f"/v2/{REGISTRY}/app/blobs/uploads/"))
    assert started.status_code == 202, started.text
    assert len(begun) == 1
    blob = b"a small layer"
    done = registry.run(
        registry.client.put(
            started.headers["location"], params={"digest": digest_of(blob)}, content=blob
        )
    )
    assert done.status_code == 201, done.text

    assert len(begun) == 2, "the PUT of a fresh session commits once"
    assert writes.of("upload_sessions") == ["INSERT", "DELETE"]
    assert writes.of("image_blobs") == ["INSERT"]  # linked, in that same transaction
    fetched = registry.run(registry.client.get(f"/v2/{REGISTRY}/app/blobs/{digest_of(blob)}"))
    assert fetched.content == blob


def test_a_claim_is_one_statement_on_the_driver(
    registry: InProcessRegistry, writes: Writes
) -> None:
    """A chunked upload claims its session for each request with one compare-and-set
    `UPDATE … RETURNING` that hands back the state to continue from, not an update and a
    read. On SQLite the session's statements run straight on the driver, compiled once, not
    through SQLAlchemy's execution (a hundred microseconds of CPU or more each)."""
    registry.run(_upload(registry, f"{REGISTRY}/app", make_image("warm").blobs[0]))
    writes.statements.clear()
    writes.through_sqlalchemy.clear()

    client = registry.client
    started = registry.run(client.post(f"/v2/{REGISTRY}/app/blobs/uploads/"))
    patched = registry.run(client.patch(started.headers["location"], content=b"a chunk"))
    assert patched.status_code == 202, patched.text
    blob = b"a chunk, then the rest"
    done = registry.run(
        client.put(
            patched.headers["location"],
            params={"digest": digest_of(blob)},
            content=blob[len(b"a chunk") :],
        )
    )
    assert done.status_code == 201, done.text

    # Created; claimed and advanced by the PATCH; claimed and dropped by the PUT.
    assert writes.of("upload_sessions") == ["INSERT", "UPDATE", "UPDATE", "UPDATE", "DELETE"]
    if registry.services.db.url.startswith("sqlite"):
        assert writes.of("upload_sessions", writes.through_sqlalchemy) == []


def test_the_claim_records_the_garbage_candidate_on_the_driver(
    registry: InProcessRegistry, writes: Writes
) -> None:
    """A blob pushed in chunks is recorded as a garbage candidate (one upsert) in its first
    claim, before its bytes, so a blob written but never linked is still collected; on SQLite
    that statement too is compiled once and run on the driver."""
    registry.run(_upload(registry, f"{REGISTRY}/app", make_image("warm").blobs[0]))
    writes.statements.clear()
    writes.through_sqlalchemy.clear()

    client = registry.client
    started = registry.run(client.post(f"/v2/{REGISTRY}/app/blobs/uploads/"))
    patched = registry.run(client.patch(started.headers["location"], content=b"a chunk"))
    assert patched.status_code == 202, patched.text
    candidates_before_the_put = writes.of("blob_candidates")
    blob = b"a chunk, and its end"
    done = registry.run(
        client.put(
            patched.headers["location"],
            params={"digest": digest_of(blob)},
            content=blob[len(b"a chunk") :],
        )
    )
    assert done.status_code == 201, done.text

    assert candidates_before_the_put == []  # a PATCH's claim records no candidate
    assert writes.of("blob_candidates") == ["INSERT"]  # the PUT's claim, before its bytes
    if registry.services.db.url.startswith("sqlite"):
        assert writes.of("blob_candidates", writes.through_sqlalchemy) == []


def test_a_small_blob_pushed_whole_is_linked_in_one_statement_and_no_candidate(
    registry: InProcessRegistry, writes: Writes
) -> None:
    """The PUT that carries a fresh session's whole blob writes the link in the transaction
    that drops the session, and a link is a reference the collector checks: no garbage
    candidate is recorded beside it. On SQLite the link into an image that exists is one
    statement on the driver (the image found by name within it), not a lookup of the
    registry, one of the image and an insert through SQLAlchemy; with the session's drop, the
    PUT writes two statements (the link's trigger writes the blob's usage row). On PostgreSQL
    the image is found and kept from a deletion under way in one statement, where that took
    three."""
    registry.run(_upload(registry, f"{REGISTRY}/app", make_image("warm").blobs[0]))
    writes.statements.clear()
    writes.through_sqlalchemy.clear()

    blob = b"another small layer"
    registry.run(_upload(registry, f"{REGISTRY}/app", blob))

    assert writes.of("blob_candidates") == []
    assert writes.of("image_blobs") == ["INSERT"]
    if registry.services.db.url.startswith("sqlite"):
        assert writes.through_sqlalchemy == []
        written = [
            sql.split()[0].upper() for sql in writes.statements if not sql.startswith("SELECT")
        ]
        # session; drop, link (whose trigger writes the blob's usage row: a statement of its
        # own before migration 0018)
        assert written == ["INSERT", "DELETE", "INSERT"]
    else:  # the image found and kept from deletion in one round trip, not three
        lookups = [sql for sql in writes.statements if "images" in sql or "registries" in sql]
        assert len(lookups) == 1 and "FOR KEY SHARE OF images" in lookups[0]
    fetched = registry.run(registry.client.get(f"/v2/{REGISTRY}/app/blobs/{digest_of(blob)}"))
    assert fetched.content == blob


def test_a_blob_pushed_whole_into_a_new_image_is_linked_and_the_image_made(
    registry: InProcessRegistry, writes: Writes
) -> None:
    """The first blob of an image finds no image to link into in one statement: the image
    is then made, and the blob linked into it."""
    registry.run(_upload(registry, f"{REGISTRY}/app", make_image("warm").blobs[0]))
    blob = b"the first layer of a new image"
    registry.run(_upload(registry, f"{REGISTRY}/new", blob))
    fetched = registry.run(registry.client.get(f"/v2/{REGISTRY}/new/blobs/{digest_of(blob)}"))
    assert fetched.status_code == 200 and fetched.content == blob
    again = registry.run(registry.client.head(f"/v2/{REGISTRY}/app/blobs/{digest_of(blob)}"))
    assert again.status_code == 404  # linked into the new image only
