"""The lists of users, project groups and their members, access tokens and the audit log page
by cursor at any depth, as the catalog lists do (issue 15, goal 4).

Each answer carries `next`, the cursor of the page after it; page numbers reach the first
MAX_PAGED_ITEMS items. Following the cursors must give every item that stays in the list
exactly once and in the list's order, in every sort (ties of equal sort values and NULLs of
nullable sort columns included) and for searches and filters, while items are added and
removed between the pages; on SQLite and PostgreSQL. Who sees what is the policy's: the
cursor changes nothing of it.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alembic import command
from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from ociregistry.api.common import MAX_PAGED_ITEMS
from ociregistry.auth.models import PersonalAccessToken, ProjectGroup, User
from ociregistry.catalog.audit import AuditRecord, write_events
from ociregistry.db.database import _sqlite_engine
from ociregistry.db.models import AuditEvent, utcnow
from support.inprocess import InProcessRegistry, on_database
from support.migrations import migration_step
from support.pgcluster import fresh_database

PASSWORD = "long-enough-password"
USERS = 7  # besides admin and the members below
GROUP_MEMBERS = 6
TOKENS = 9
EVENTS = 16
CHANGED_PAGES = 4  # the walks add and remove an item before each of their first pages
MEMBERS = "/api/v1/project-groups/crowd/members"
TOKEN_LIST = "/api/v1/users/admin/tokens"
# (list, its sorts, the key naming an item)
LISTS = [
    ("/api/v1/users", ("username", "-username", "name", "created_at", "-created_at"), "username"),
    ("/api/v1/users?q=walker", ("username", "-created_at"), "username"),
    ("/api/v1/project-groups", ("name", "-name", "created_at", "-created_at"), "name"),
    ("/api/v1/project-groups?q=walker", ("name", "-created_at"), "name"),
    (MEMBERS, ("username", "-username"), "username"),
    (f"{MEMBERS}?q=member", ("username", "-username"), "username"),
    (
        TOKEN_LIST,
        (
            "name",
            "-name",
            "created_at",
            "-created_at",
            "last_used_at",
            "-last_used_at",
            "expires_at",
            "-expires_at",
        ),
        "id",
    ),
    (f"{TOKEN_LIST}?q=ci-t", ("name", "-expires_at"), "id"),
    ("/api/v1/audit-log", ("-at", "at"), "id"),
    ("/api/v1/audit-log?actor=walker-actor", ("-at", "at"), "id"),
    ("/api/v1/audit-log?action=walk.step", ("-at",), "id"),
    ("/api/v1/audit-log?outcome=denied", ("-at",), "id"),
    ("/api/v1/audit-log?registry=walked", ("-at",), "id"),
    ("/api/v1/audit-log?q=walked/path", ("-at", "at"), "id"),
]
CASES = [(path, sort, key) for path, sorts, key in LISTS for sort in sorts]
_counter = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessRegistry]:
    data = tmp_path_factory.mktemp("accounts") / "data"
    with on_database(request.param, data, "accounts") as running:
        running.run(_seed(running))
        yield running


async def _seed(registry: InProcessRegistry) -> None:
    """Users (and so groups, one each), a crowded group, tokens with ties and NULLs in their
    nullable columns, and audit events with ties of their times."""
    services = registry.services
    for number in range(USERS):
        await services.accounts.create_user(f"walker{number}", PASSWORD)
    await services.groups.create("crowd", "admin")
    for number in range(GROUP_MEMBERS):
        await services.accounts.create_user(f"member{number}", PASSWORD)
        await services.groups.set_member("crowd", f"member{number}", "guest")
    for number in range(TOKENS):
        await services.accounts.create_token("admin", f"ci-t{number}")
    now = utcnow()
    async with services.db.write() as conn:  # ties, and NULLs (never used, never expires)
        for number, token in enumerate(
            (await conn.scalars(select(PersonalAccessToken.id).order_by("id"))).all()
        ):
            used = None if number % 3 == 0 else now - timedelta(hours=number % 2)
            expires = None if number % 4 == 0 else now + timedelta(days=number % 2)
            await conn.execute(
                update(PersonalAccessToken)
                .where(PersonalAccessToken.id == token)
                .values(last_used_at=used, expires_at=expires)
            )
    await services.db.transaction(lambda conn: write_events(conn, _events(EVENTS, now)))


def _events(count: int, at: Any) -> list[AuditRecord]:
    """`count` events, three at a time at the same instant."""
    return [
        AuditRecord(
            actor="walker-actor" if number % 2 else "someone",
            client="127.0.0.1",
            request_id=None,
            action="walk.step" if number % 3 else "walk.other",
            method="POST",
            target=f"/api/v1/walked/path/{number}",
            registry="walked" if number % 2 == 0 else None,
            status=403 if number % 4 == 0 else 200,
            outcome="denied" if number % 4 == 0 else "success",
            at=at - timedelta(seconds=number // 3),
        )
        for number in range(count)
    ]


def _get(registry: InProcessRegistry, path: str, client: Any = None, **params: Any) -> Any:
    path, _, query = path.partition("?")
    client = client or registry.client
    return registry.run(client.get(path, params=[*parse_qsl(query), *params.items()]))


def _with(path: str, sort: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}sort={sort}"


def _change(registry: InProcessRegistry, path: str) -> tuple[set[str], set[str]]:
    """Add an item to the list of `path` and remove one, between two pages: the names (or
    ids) that came and went, as the list names its items."""
    n = next(_counter)
    services = registry.services

    async def work() -> tuple[set[str], set[str]]:
        if path.startswith("/api/v1/users?") or path == "/api/v1/users":
            added = await services.accounts.create_user(f"walker-new{n}", PASSWORD)
            async with services.db.write() as conn:
                gone = await conn.scalar(
                    select(User.username)
                    .where(User.username.like("walker-new%"), User.id != added.id)
                    .limit(1)
                )
                await conn.execute(delete(User).where(User.username == gone))
            return {added.username}, {gone} if gone else set()
        if path.startswith("/api/v1/project-groups?") or path == "/api/v1/project-groups":
            await services.groups.create(f"walker-g{n}", "admin")
            async with services.db.write() as conn:
                gone = await conn.scalar(
                    select(ProjectGroup.name)
                    .where(ProjectGroup.name.like("walker-g%"), ProjectGroup.name != f"walker-g{n}")
                    .limit(1)
                )
                await conn.execute(delete(ProjectGroup).where(ProjectGroup.name == gone))
            return {f"walker-g{n}"}, {gone} if gone else set()
        if path.startswith(MEMBERS):
            await services.accounts.create_user(f"member-new{n}", PASSWORD)
            await services.groups.set_member("crowd", f"member-new{n}", "developer")
            members, _, _ = await services.groups.member_page("crowd")
            gone = next((m.username for m in members if m.username.startswith("member-new")), None)
            if gone and gone != f"member-new{n}":
                await services.groups.remove_member("crowd", gone)
                return {f"member-new{n}"}, {gone}
            return {f"member-new{n}"}, set()
        if path.startswith(TOKEN_LIST):
            info, _ = await services.accounts.create_token("admin", f"ci-tnew{n}")
            async with services.db.write() as conn:
                gone = await conn.scalar(
                    select(PersonalAccessToken.public_id)
                    .where(
                        PersonalAccessToken.name.like("ci-tnew%"),
                        PersonalAccessToken.public_id != info.public_id,
                    )
                    .limit(1)
                )
                await conn.execute(
                    delete(PersonalAccessToken).where(PersonalAccessToken.public_id == gone)
                )
            return {info.public_id}, {gone} if gone else set()
        async with services.db.read() as conn:
            last = await conn.scalar(select(func.max(AuditEvent.id)))
        await services.db.transaction(lambda conn: write_events(conn, _events(3, utcnow())))
        async with services.db.write() as conn:
            added = set(
                (await conn.scalars(select(AuditEvent.id).where(AuditEvent.id > last))).all()
            )
            gone = await conn.scalar(
                select(AuditEvent.id).where(AuditEvent.id <= last).order_by(AuditEvent.id.desc())
            )
            await conn.execute(delete(AuditEvent).where(AuditEvent.id == gone))
        return added, {gone}

    return registry.run(work())


@pytest.mark.parametrize(("path", "sort", "key"), CASES)
def test_following_the_cursor_reads_every_item_once_in_order_while_the_list_changes(
    registry: InProcessRegistry, path: str, sort: str, key: str
) -> None:
    before = _get(registry, _with(path, sort), page_size=100)
    assert before.status_code == 200, before.text
    expected = [item[key] for item in before.json()["items"]]
    assert len(expected) >= 4, f"{path}: too few items to page through: {expected}"
    assert before.json()["next"] is None

    answer = _get(registry, _with(path, sort), page_size=2).json()
    assert answer["page"] == 1
    walked = [item[key] for item in answer["items"]]
    came: set[Any] = set()
    went: set[Any] = set()
    pages = 0
    while answer["next"] is not None:
        pages += 1
        if pages <= CHANGED_PAGES:  # then no more, or a list growing at its end never ends
            added, removed = _change(registry, path)
            came |= added
            went |= removed
        response = _get(registry, path, page_size=2, cursor=answer["next"], sort=sort)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert "page" not in answer  # a page found by cursor has no number
        walked += [item[key] for item in answer["items"]]
        assert len(walked) <= 3 * len(expected) + 10, f"{path} {sort}: read {walked}"
    assert len(walked) == len(set(walked)), f"{path} {sort}: read twice: {walked}"
    stayed = [item for item in expected if item not in went]
    assert [item for item in walked if item in stayed] == stayed, f"{path} {sort}"
    assert not set(walked) - set(expected) - came, f"{path} {sort}: read what never was"
    # What the walk read is in the list's order: the order a single page gives now.
    after = _get(registry, _with(path, sort), page_size=100).json()["items"]
    now = [item[key] for item in after]
    assert [item for item in walked if item in now] == [item for item in now if item in walked]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users",
        "/api/v1/project-groups",
        MEMBERS,
        TOKEN_LIST,
        "/api/v1/audit-log",
        "/api/v1/audit-log?actor=walker-actor",
    ],
)
def test_a_page_number_past_the_bound_points_to_the_cursor(
    registry: InProcessRegistry, path: str
) -> None:
    for size in (20, 100):
        deepest = (MAX_PAGED_ITEMS - 1) // size + 1
        assert _get(registry, path, page=deepest, page_size=size).status_code == 200
        response = _get(registry, path, page=deepest + 1, page_size=size)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "INVALID_ARGUMENT"
        assert (error["detail"]["field"], error["detail"]["max_page"]) == ("page", deepest)
        assert "cursor" in error["message"]


def test_a_cursor_of_another_list_or_that_does_not_fit_is_refused(
    registry: InProcessRegistry,
) -> None:
    users = _get(registry, "/api/v1/users", page_size=2).json()
    tokens = _get(registry, TOKEN_LIST, page_size=2, sort="-last_used_at").json()
    assert users["next"] and tokens["next"]
    refused = [
        ("/api/v1/project-groups", {"cursor": users["next"]}, "cursor"),
        ("/api/v1/audit-log", {"cursor": tokens["next"]}, "cursor"),
        (TOKEN_LIST, {"cursor": tokens["next"], "sort": "name"}, "sort"),
        (TOKEN_LIST, {"cursor": tokens["next"], "page": "2"}, "cursor"),
        ("/api/v1/users", {"cursor": users["next"], "q": "walker"}, "q"),
        ("/api/v1/users", {"sort": "password_hash"}, "sort"),
    ]
    for path, params, field in refused:
        response = _get(registry, path, page_size=2, **params)
        assert response.status_code == 400, (path, params, response.text)
        error = response.json()["error"]
        assert (error["code"], error["detail"]["field"]) == ("INVALID_ARGUMENT", field), error


def test_totals_are_bounded_and_member_counts_kept(registry: InProcessRegistry) -> None:
    """Totals are counted (up to the bound) as before; a group's member count follows its
    members as they come and go."""
    users = _get(registry, "/api/v1/users", page_size=1).json()
    count = registry.run(_user_count(registry))
    assert (users["total"], users.get("total_exact", True)) == (count, True)

    def crowd() -> dict[str, Any]:
        groups = _get(registry, "/api/v1/project-groups", q="crowd").json()["items"]
        return next(group for group in groups if group["name"] == "crowd")

    members = _get(registry, MEMBERS, page_size=1).json()
    assert crowd()["member_count"] == members["total"] >= GROUP_MEMBERS + 1
    registry.run(registry.services.accounts.create_user("counted", PASSWORD))
    registry.run(registry.services.groups.set_member("crowd", "counted", "guest"))
    assert crowd()["member_count"] == members["total"] + 1
    registry.run(registry.services.groups.set_member("crowd", "counted", "owner"))  # no change
    assert crowd()["member_count"] == members["total"] + 1
    registry.run(registry.services.groups.remove_member("crowd", "counted"))
    assert crowd()["member_count"] == members["total"]


async def _user_count(registry: InProcessRegistry) -> int:
    async with registry.services.db.read() as conn:
        return len((await conn.scalars(select(User.id))).all())


def _signed_in(registry: InProcessRegistry, username: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=registry.app),
        base_url="http://registry.test",
        auth=(username, PASSWORD),
    )


def _walk(registry: InProcessRegistry, path: str, client: httpx.AsyncClient, key: str) -> list[Any]:
    answer = _get(registry, path, client, page_size=1).json()
    walked = [item[key] for item in answer["items"]]
    while answer["next"]:
        answer = _get(registry, path, client, page_size=1, cursor=answer["next"]).json()
        walked += [item[key] for item in answer["items"]]
    return walked


def test_the_cursor_shows_each_caller_what_the_policy_lets_them_see(
    registry: InProcessRegistry,
) -> None:
    """Admins see every item; others their own groups, their own tokens, and the events of
    the registries they administer; the user list is for admins only."""
    services = registry.services
    registry.run(services.accounts.create_user("viewer", PASSWORD))
    registry.run(services.groups.create("viewer-team", "viewer"))
    registry.run(services.groups.set_member("crowd", "viewer", "guest"))
    registry.run(services.registries.create("viewed", kind="user", owner="viewer"))
    registry.run(services.registries.create("viewed2", kind="user", owner="viewer"))
    registry.run(
        services.db.transaction(
            lambda conn: write_events(
                conn,
                [
                    AuditRecord("x", "127.0.0.1", None, "a.b", "POST", f"/t/{n}", reg, 200, "ok")
                    for n, reg in enumerate(
                        ("viewed", "walked", "viewed2", None, "viewed", "viewed2", "viewed")
                    )
                ],
            )
        )
    )
    viewer = _signed_in(registry, "viewer")
    try:
        for number in range(3):
            created = registry.run(
                viewer.post("/api/v1/users/me/tokens", json={"name": f"v{number}"})
            )
            assert created.status_code == 201, created.text
        groups = _walk(registry, "/api/v1/project-groups", viewer, "name")
        assert groups == ["crowd", "viewer", "viewer-team"]
        assert len(_walk(registry, "/api/v1/project-groups", registry.client, "name")) > 3
        assert _walk(registry, "/api/v1/users/me/tokens", viewer, "name") == ["v0", "v1", "v2"]
        assert _get(registry, TOKEN_LIST, viewer).status_code == 404
        # Their two registries' events, each registry's range merged, page after page.
        for sort in ("-at", "at"):
            events = _walk(registry, f"/api/v1/audit-log?sort={sort}", viewer, "id")
            one_page = _get(registry, "/api/v1/audit-log", viewer, sort=sort, page_size=100)
            assert events == [event["id"] for event in one_page.json()["items"]]
            assert {e["registry"] for e in one_page.json()["items"]} == {"viewed", "viewed2"}
            assert len(events) == 5
        everything = _walk(registry, "/api/v1/audit-log?action=a.b", registry.client, "registry")
        assert len(everything) == 7
        refused = _get(registry, "/api/v1/users", viewer)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    finally:
        registry.run(viewer.aclose())


def test_searches_find_names_through_their_index(registry: InProcessRegistry) -> None:
    """A search matches inside the name, literally (`_` and `%` are characters), short or
    long, and the same on both databases."""
    assert [u["username"] for u in _get(registry, "/api/v1/users", q="lker3").json()["items"]] == [
        "walker3"
    ]
    assert _get(registry, "/api/v1/users", q="lk").json()["total"] >= USERS
    assert _get(registry, "/api/v1/users", q="%").json()["items"] == []
    tokens = _get(registry, TOKEN_LIST, q="i-t1", page_size=100).json()["items"]
    assert {t["name"] for t in tokens} >= {"ci-t1"}
    assert all("i-t1" in t["name"] for t in tokens)
    events = _get(registry, "/api/v1/audit-log", q="walked/path/1", page_size=100).json()
    assert events["items"] and all("walked/path/1" in e["target"] for e in events["items"])
    groups = _get(registry, "/api/v1/project-groups", q="rowd").json()["items"]
    assert [g["name"] for g in groups] == ["crowd"]


WORDED_TARGETS = {
    "manifest": "/v2/tailsteam/tailsapp/manifests/sha256:ABCdef0123",
    "tag": "/api/v1/registries/tailsteam/images/tailsapp/-/tags/v1.2.3",
    "webapp": "/api/v1/registries/tailsteam/images/tailswebapp",
    "upload": "/v2/tailsteam/tailsapp_store/blobs/uploads/\u00e9crit-7",
    "digest": f"/v2/tailsteam/tailsapp/blobs/sha256:{'0123456789abcdef' * 4}",
}
# (q, the events of WORDED_TARGETS it finds: on SQLite, on PostgreSQL)
WORD_SEARCHES = [
    ("tailsapp", {"manifest", "tag", "upload", "digest"}, None),  # a word, the start of one
    ("tailsteam/tailsapp", {"manifest", "upload", "digest"}, None),  # across a separator
    ("/tailsapp/", {"manifest", "tag", "digest"}, None),  # separators before the first word
    ("0123456789abcdef" * 4, {"digest"}, None),  # longer than the tails kept (64)
    ("blobs/sha256:" + "0123456789abcdef" * 4, {"digest"}, None),
    ("blobs/sha256:" + "0123456789abcdef" * 4 + "0", set(), None),
    ("_store", {"upload"}, None),
    ("2.3", {"tag"}, None),  # `3` starts a word after `.`
    ("\u00e9crit", {"upload"}, None),  # non-ASCII characters are word characters
    ("sha256:ABCd", {"manifest"}, None),
    ("ABCDEF", {"manifest"}, set()),  # LIKE: ASCII case folded on SQLite, not on PostgreSQL
    ("webapp", set(), None),  # inside a word: not a match (before migration 0019: one)
    ("crit", set(), None),
    ("1.2.3", set(), None),  # `1` is inside the word `v1`
    ("-/", {"tag"}, None),  # no word: found by a scan (migration 0021)
    ("/-/", {"tag"}, None),  # three characters: a scan too, no trigram index (0021)
    ("tails%", set(), None),  # literally
]


def test_the_audit_search_finds_the_words_of_targets(registry: InProcessRegistry) -> None:
    """The audit log's `q` matches where a word of the target starts (the B-tree of
    migration 0019 holds each target's tails from each word), whatever precedes it in `q`;
    separators before the first word of `q` are matched as they are. Case as LIKE has it on
    each database."""
    events = [
        AuditRecord("tailor", "127.0.0.1", None, "tails.put", "PUT", target, None, 201, "success")
        for target in WORDED_TARGETS.values()
    ]
    registry.run(registry.services.db.transaction(lambda conn: write_events(conn, events)))
    named = {target: name for name, target in WORDED_TARGETS.items()}
    postgresql = registry.settings.database_url.startswith("postgresql")
    wrong = []
    for q, on_sqlite, on_postgresql in WORD_SEARCHES:
        expected = on_postgresql if postgresql and on_postgresql is not None else on_sqlite
        answer = _get(registry, "/api/v1/audit-log", q=q, actor="tailor", page_size=100).json()
        found = {named[e["target"]] for e in answer["items"]}
        if found != expected or answer["total"] != len(expected):
            wrong.append(f"q={q!r}: {sorted(found)} ({answer['total']}), not {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


def test_migration_0017_keeps_the_memberships_and_counts_them(tmp_path: Path) -> None:
    """A database of before 0017, with memberships, comes through the upgrade (and back)
    with every membership, its username and the groups' member counts (SQLite: a batch copy
    of `project_groups` would have dropped the table under them, cascading)."""
    data = tmp_path / "data"
    running = InProcessRegistry(data)
    try:
        running.run(running.services.accounts.create_user("miguser", PASSWORD))
        running.run(running.services.groups.create("miggroup", "miguser"))
        running.run(running.services.groups.set_member("miggroup", "admin", "guest"))
    finally:
        running.close()
    url = f"sqlite+aiosqlite:///{data / 'registry.db'}"
    for step, target in ((command.downgrade, "0016"), (command.upgrade, "head")):
        with sqlite3.connect(data / "registry.db") as conn:
            before = conn.execute("SELECT count(*) FROM group_members").fetchone()[0]
        migration_step(url, step, target)
        with sqlite3.connect(data / "registry.db") as conn:
            assert conn.execute("SELECT count(*) FROM group_members").fetchone()[0] == before
    running = InProcessRegistry(data)
    try:
        members = _get(running, "/api/v1/project-groups/miggroup/members").json()
        assert members["items"] == [
            {"username": "admin", "role": "guest"},
            {"username": "miguser", "role": "owner"},
        ]
        groups = _get(running, "/api/v1/project-groups", q="miggroup").json()["items"]
        assert [(g["name"], g["member_count"]) for g in groups] == [("miggroup", 2)]
        users = _get(running, "/api/v1/users", q="iguse").json()["items"]
        assert [u["username"] for u in users] == ["miguser"]  # the search table rebuilt
    finally:
        running.close()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_migration_0019_finds_the_events_logged_before_it(tmp_path: Path, database: str) -> None:
    """Migration 0019 indexes the words of the targets already in the log (and its
    downgrade drops what it made): an event written before it, and one written while the
    database was back at the revision before, are found by their words after it."""
    data = tmp_path / "data"
    with fresh_database(database, "tails") as url:
        with InProcessRegistry(data, database_url=url) as running:
            before = AuditRecord(
                "migrant", "127.0.0.1", None, "m.put", "PUT", "/v2/migteam/early", None, 201, "ok"
            )
            running.run(running.services.db.transaction(lambda c: write_events(c, [before])))
        engine_url = url or f"sqlite+aiosqlite:///{data / 'registry.db'}"
        migration_step(engine_url, command.downgrade, "0018")  # the revision before 0019
        late = {
            "at": utcnow(), "actor": "migrant", "client": "127.0.0.1", "action": "m.put",
            "method": "PUT", "status": 201, "target": "/v2/migteam/late", "outcome": "ok",
        }  # fmt: skip
        _on(engine_url, lambda conn: conn.execute(AuditEvent.__table__.insert(), [late]))
        assert "audit_target_tails" not in _on(engine_url, _tables)
        migration_step(engine_url, command.upgrade, "head")
        with InProcessRegistry(data, database_url=url) as running:
            found = _get(running, "/api/v1/audit-log", q="migteam/", page_size=100).json()
            targets = sorted(e["target"] for e in found["items"])
            assert targets == ["/v2/migteam/early", "/v2/migteam/late"]
            assert _get(running, "/api/v1/audit-log", q="igteam").json()["items"] == []
        # and an event that goes takes its tails along (retention deletes events)
        gone = AuditEvent.__table__.delete().where(AuditEvent.actor == "migrant")
        _on(engine_url, lambda conn: conn.execute(gone))
        left = _on(engine_url, lambda conn: conn.exec_driver_sql(_TAILS_OF_MIGTEAM).scalar())
        assert left == 0


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_migration_0021_drops_the_trigram_index_of_targets(tmp_path: Path, database: str) -> None:
    """Migration 0021 drops the trigram index of the audit log's targets (SQLite's FTS5
    table and its triggers, PostgreSQL's GIN index): a `q` of separators only, which it
    served, still finds the events written before and after it, by a scan. Going down makes
    the index again from the log; up again drops it."""
    data = tmp_path / "data"
    with fresh_database(database, "trigram") as url:
        early = AuditRecord(
            "trigrammer", "127.0.0.1", None, "t.put", "PUT", "/v2/tri/-/early", None, 201, "ok"
        )
        with InProcessRegistry(data, database_url=url) as running:
            running.run(running.services.db.transaction(lambda c: write_events(c, [early])))
        engine_url = url or f"sqlite+aiosqlite:///{data / 'registry.db'}"
        assert _on(engine_url, _trigram_index) == []
        migration_step(engine_url, command.downgrade, "0020")
        # PostgreSQL: made again where 0017 could make it (pg_trgm installed)
        expected = ["audit_search"]
        if database == "postgres":
            expected = [_PG_TRIGRAM] if _on(engine_url, _pg_trgm_installed) else []
        assert _on(engine_url, _trigram_index) == expected
        if database == "sqlite":  # rebuilt from the log: it finds the early event
            found = _on(engine_url, lambda c: c.exec_driver_sql(_FTS_EARLY).scalar())
            assert found == 1
        migration_step(engine_url, command.upgrade, "head")
        assert _on(engine_url, _trigram_index) == []
        with InProcessRegistry(data, database_url=url) as running:
            late = AuditRecord(
                "trigrammer", "127.0.0.1", None, "t.put", "PUT", "/v2/tri/-/late", None, 201, "ok"
            )
            running.run(running.services.db.transaction(lambda c: write_events(c, [late])))
            answer = _get(running, "/api/v1/audit-log", q="/-/", actor="trigrammer").json()
            assert sorted(e["target"] for e in answer["items"]) == [
                "/v2/tri/-/early",
                "/v2/tri/-/late",
            ]
            assert answer["total"] == 2


_PG_TRIGRAM = "ix_audit_log_target_trgm"
_FTS_EARLY = "SELECT count(*) FROM audit_search WHERE audit_search MATCH '\"tri/-/ea\"'"


def _pg_trgm_installed(conn: Any) -> bool:
    return bool(conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").all())


def _trigram_index(conn: Any) -> list[str]:
    """The trigram index of the audit log's targets, if the database has it."""
    if conn.dialect.name == "postgresql":
        indexes = inspect(conn).get_indexes("audit_log")
        return [i["name"] for i in indexes if i["name"] == _PG_TRIGRAM]
    return [name for name in inspect(conn).get_table_names() if name == "audit_search"]


_TAILS_OF_MIGTEAM = "SELECT count(*) FROM audit_target_tails WHERE tail LIKE 'migteam%'"


def _tables(conn: Any) -> list[str]:
    return inspect(conn).get_table_names()


def _on(url: str, work: Any) -> Any:
    """`work(connection)` in a transaction of the database at `url`."""

    async def go() -> Any:
        engine = _sqlite_engine(url) if url.startswith("sqlite") else create_async_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())
