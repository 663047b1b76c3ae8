"""Every list reads an index range, never every image or tag (issue 15, flat growth).

A list that costs the same at 100,000 items as at 1,000 is one whose queries read a range of
an index in the list's order and stop after the page: no full scan of a large table, and no
sort of a registry's images or an image's tags to find a page. That is a property of the
query plans, which the database shows without any timing, on tables of any size. So each list
the API and the console offer (their sorts, searches, later pages, the /v2 pages after
`last`) is requested from an in-process registry while every statement it runs is recorded,
and each statement's plan is read back: `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN (FORMAT
JSON)` on PostgreSQL with sequential scans and sorts disabled, so that the plan shows whether
an index can serve the query and its order at all, as it would on a large table. A search
must go through the trigram index of the names it searches (SQLite: its FTS5 table;
PostgreSQL: the `pg_trgm` index must exist, which its planner takes once a table is large).

A page after a cursor (`{next}` in a path: the `next` of the page before) is an index range
that starts at the cursor's key, whatever its depth. A platform search whose `q` a registry's
name holds (every image of it matches) reads that registry's images as its index range, not
all of them to sort. A list's total is a count kept by triggers or a count that stops at a
bound (`LIMIT`): no statement counts every row of what it lists. And `/v2/<name>/tags/list`
reads the tags of one image, found first, as one range: joined to its image and registry,
PostgreSQL's planner could not tell that one image matches and, on a large table, sorted
every tag after `last` for each page (28x at 100,000 tags); so the tags must not be read
inside a join.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine

from ociregistry.auth.models import PersonalAccessToken
from ociregistry.catalog.audit import AuditRecord, write_events
from ociregistry.db.database import Database
from ociregistry.db.models import utcnow
from support.inprocess import InProcessRegistry, push_image
from support.oci import make_image
from support.pgcluster import fresh_database

LARGE = ("images", "tags", "manifests", "manifest_references", "image_blobs")
MENTIONS_LARGE = re.compile(r"\b(" + "|".join(LARGE) + r")\b")
USER_REGISTRY, PLATFORM_REGISTRIES = "plans-team", ("plans-p1", "plans-p2")
TAGS = 5

IMAGES = f"/api/v1/registries/{USER_REGISTRY}/images"
TAG_LIST = f"{IMAGES}/app0/-/tags"
# (path, trigram index a search must use, or None for a list that pages an index in order)
CASES = [
    ("/v2/_catalog?n=2", None),
    (f"/v2/_catalog?n=2&last={USER_REGISTRY}/app1", None),
    (f"/v2/{USER_REGISTRY}/app0/tags/list?n=2", None),
    (f"/v2/{USER_REGISTRY}/app0/tags/list?n=2&last=t1", None),
    ("/api/v1/platform/images", None),
    ("/api/v1/platform/images?page=2&page_size=2", None),
    ("/api/v1/platform/images?sort=-created_at", None),
    ("/api/v1/platform/images?sort=-updated_at", None),
    ("/api/v1/platform/images?sort=-pull_count", None),
    ("/api/v1/platform/images?q=app1", "images"),
    (f"{IMAGES}", None),
    (f"{IMAGES}?page=2&page_size=2", None),
    (f"{IMAGES}?sort=-name", None),
    (f"{IMAGES}?sort=-created_at", None),
    (f"{IMAGES}?sort=created_at", None),
    (f"{IMAGES}?sort=-updated_at", None),
    (f"{IMAGES}?sort=-pull_count", None),
    (f"{IMAGES}?q=app1", "images"),
    (f"{TAG_LIST}", None),
    (f"{TAG_LIST}?page=2&page_size=2", None),
    (f"{TAG_LIST}?sort=name", None),
    (f"{TAG_LIST}?sort=-pull_count", None),
    (f"{TAG_LIST}?q=t12", "tags"),
    # pages after a cursor
    (f"{TAG_LIST}?page_size=2&cursor={{next}}", None),
    (f"{TAG_LIST}?page_size=2&sort=name&cursor={{next}}", None),
    (f"{TAG_LIST}?page_size=2&sort=-pull_count&cursor={{next}}", None),
    (f"{IMAGES}?page_size=2&cursor={{next}}", None),
    (f"{IMAGES}?page_size=2&sort=-created_at&cursor={{next}}", None),
    ("/api/v1/platform/images?page_size=2&cursor={next}", None),
    ("/api/v1/platform/images?page_size=2&sort=-updated_at&cursor={next}", None),
    # a search that every image of the platform registries matches through their names
    ("/api/v1/platform/images?q=plans-p", None),
    ("/api/v1/platform/images?q=plans-p&sort=-created_at", None),
    ("/api/v1/platform/images?q=plans-p&page_size=2&cursor={next}", None),
]
REGISTRY_LISTS = [
    "/api/v1/registries",
    "/api/v1/registries?q=plans",
    "/api/v1/registries?page_size=1&cursor={next}",
    "/api/v1/shared/registries",
    "/api/v1/platform/registries",
    "/api/v1/platform/registries?sort=-created_at&page_size=1&cursor={next}",
]
V2_TAG_PAGES = [
    f"/v2/{USER_REGISTRY}/app0/tags/list?n=2",
    f"/v2/{USER_REGISTRY}/app0/tags/list?n=2&last=t1",
]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessRegistry]:
    """A registry with a user registry and two platform registries of a few images each,
    and an image `app0` with a few tags; on SQLite and on a PostgreSQL of its own."""
    with (
        fresh_database(request.param, "plans") as url,
        InProcessRegistry(tmp_path_factory.mktemp("plans") / "data", database_url=url) as running,
    ):
        running.run(_seed(running))
        yield running


async def _seed(registry: InProcessRegistry) -> None:
    services = registry.services
    await services.registries.create(USER_REGISTRY, public=False, kind="user", owner="admin")
    await services.registries.create(f"{USER_REGISTRY}2", public=True, kind="user", owner="admin")
    for name in PLATFORM_REGISTRIES:
        await services.registries.create(name, public=True, kind="platform", owner=None)
    for name in (USER_REGISTRY, *PLATFORM_REGISTRIES):
        for number in range(3):
            await push_image(
                registry.client, f"{name}/app{number}", make_image(f"{name}{number}"), "v1"
            )
    for number in range(TAGS):
        await push_image(
            registry.client, f"{USER_REGISTRY}/app0", make_image(f"tag{number}"), f"t{number}"
        )
    await _seed_accounts(registry)


async def _seed_accounts(registry: InProcessRegistry) -> None:
    """Users in a group `plans-crowd`, tokens of admin (some used, some expiring) and audit
    events, for the lists of accounts."""
    services = registry.services
    await services.groups.create("plans-crowd", "admin")
    for number in range(3):
        await services.accounts.create_user(f"walker{number}", "long-enough-password")
        await services.groups.set_member("plans-crowd", f"walker{number}", "guest")
        await services.accounts.create_token("admin", f"ci-t{number}")
    async with services.db.write() as conn:
        await conn.execute(
            update(PersonalAccessToken)
            .where(PersonalAccessToken.name == "ci-t1")
            .values(last_used_at=utcnow(), expires_at=utcnow())
        )
    events = [
        AuditRecord(
            "walker-actor", "127.0.0.1", None, "walk.step", "POST", f"/walked/path/{n}",
            "walked", 403, "denied",
        )
        for n in range(3)
    ]  # fmt: skip
    await services.db.transaction(lambda conn: write_events(conn, events))


def _following(registry: InProcessRegistry, path: str) -> str:
    """`path` with `{next}` replaced by the `next` cursor of the page before (the same
    request without it)."""
    if "{next}" not in path:
        return path
    first = registry.run(registry.client.get(path.replace("&cursor={next}", "")))
    cursor = first.json()["next"]
    assert cursor, f"{path}: the first page has no next: {first.text}"
    return path.replace("{next}", cursor)


def _recorded(
    registry: InProcessRegistry, path: str, tables: re.Pattern[str] = MENTIONS_LARGE
) -> list[tuple[str, Any]]:
    """The SELECTs on the large tables (or `tables`) that answering `GET path` ran, with
    their parameters."""
    path = _following(registry, path)
    statements: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and tables.search(statement):
            with lock:
                statements.append((statement, parameters))

    # The hottest reads (such as a /v2 page of tags) go to the driver without SQLAlchemy's
    # execution, so no engine event sees them: record what `Database` compiled for them.
    originals = {name: getattr(Database, name) for name in ("first", "rows")}

    def recording(name: str) -> Any:
        async def run(self: Database, statement: Any, parameters: dict[str, Any]) -> Any:
            sql, names, fixed = self._compiled(statement)
            args = [parameters[n] if n in parameters else fixed[n] for n in names]
            record(None, None, sql, tuple(args))
            return await originals[name](self, statement, parameters)

        return run

    event.listen(Engine, "before_cursor_execute", record)
    for name in originals:
        setattr(Database, name, recording(name))
    try:
        response = registry.run(registry.client.get(path))
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        for name, original in originals.items():
            setattr(Database, name, original)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    assert statements, f"GET {path} ran no query on the large tables"
    return statements


def _sqlite_faults(
    database: Path,
    statement: str,
    parameters: Any,
    search: str | None,
    tables: tuple[str, ...] = LARGE,
) -> list[str]:
    """What in the plan of `statement` reads more than a page: a scan of a large table, or a
    sort of rows found through an index other than a primary key lookup (the order the page
    needed was not the index's)."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, parameters or ()).fetchall()
    faults, groups, children = [], {}, {}
    for node, parent, _unused, detail in rows:
        children.setdefault(parent, []).append((node, detail))
        if re.match(r"SCAN (" + "|".join(tables) + r")\b", detail):
            faults.append(detail)

    def loops(parent: int) -> list[str]:
        """The loops of one query, those of a MULTI-INDEX OR (an OR of index ranges) too."""
        found = []
        for node, detail in children.get(parent, []):
            found.append(detail)
            if detail == "MULTI-INDEX OR" or re.fullmatch(r"INDEX \d+", detail):
                found += loops(node)
        return found

    for parent in children:
        groups[parent] = loops(parent)
    for details in groups.values():
        sorted_here = "USE TEMP B-TREE FOR ORDER BY" in details
        ranges = [
            d
            for d in details
            if re.match(r"SEARCH (" + "|".join(tables) + r") USING (COVERING )?INDEX", d)
        ]
        if sorted_here and ranges and search is None:
            faults.append(f"sorted after {ranges[0]}")
    return faults


def _postgres_faults(
    plan: dict[str, Any], search: str | None, tables: tuple[str, ...] = LARGE
) -> list[str]:
    faults: list[str] = []

    def walk(node: dict[str, Any], finding: bool = False) -> None:
        relation = node.get("Relation Name")
        if node["Node Type"] == "Seq Scan" and relation in tables:
            faults.append(f"Seq Scan on {relation}")
        # A search's matches (the CTE `found`) come from a condition on the name: reading a
        # whole index, or every image of a registry (the registry alone as the condition), to
        # test each row is a scan all the same.
        finding = finding or str(node.get("Subplan Name", "")).startswith("CTE found")
        reads = node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
        index = str(node.get("Index Name", ""))
        named = re.search(r"\b(name|username|target)\b", str(node.get("Index Cond", "")))
        if finding and reads and not index.endswith("_pkey") and not named:
            faults.append(f"{node['Node Type']} of {index} without the name in a search")
        if node["Node Type"] == "Sort" and search is None:
            for child in node.get("Plans", []):
                # rows found by primary key (a list of ids: a bitmap of the pkey too) are few
                indexes = [child, *child.get("Plans", [])]
                by_key = any(str(n.get("Index Name", "")).endswith("_pkey") for n in indexes)
                if child.get("Relation Name") in tables and not by_key:
                    faults.append(f"Sort of {child['Node Type']} on {child['Relation Name']}")
        for child in node.get("Plans", []):
            walk(child, finding)

    walk(plan)
    return faults


def _postgres_plans(
    registry: InProcessRegistry, statements: list[tuple[str, Any]], *, generic: bool = False
) -> list[Any]:
    """PostgreSQL's plans for `statements`, as at 100,000 rows (no sequential scan). With
    `generic`, the plans it keeps once it has prepared them a few times (which know no
    parameter's value), as asyncpg's cached statements get them under a steady load;
    without, the plans for these values, sorts discouraged too."""

    async def explain() -> list[Any]:
        engine = create_async_engine(registry.settings.database_url)
        plans = []
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SET enable_seqscan = off")
                if generic:
                    await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                else:
                    await conn.exec_driver_sql("SET enable_sort = off")
                for number, (statement, parameters) in enumerate(statements):
                    if generic:
                        await conn.exec_driver_sql(f"PREPARE generic{number} AS {statement}")
                        values = ", ".join(_literal(value) for value in parameters)
                        result = await conn.exec_driver_sql(
                            f"EXPLAIN (FORMAT JSON) EXECUTE generic{number}({values})"
                        )
                    else:
                        result = await conn.exec_driver_sql(
                            "EXPLAIN (FORMAT JSON) " + statement, parameters
                        )
                    document = result.scalar_one()
                    plans.append(json.loads(document) if isinstance(document, str) else document)
        finally:
            await engine.dispose()
        return plans

    return registry.run(explain())


def _postgres_index_exists(registry: InProcessRegistry, name: str) -> bool:
    async def look() -> bool:
        engine = create_async_engine(registry.settings.database_url)
        try:
            async with engine.connect() as conn:
                found = await conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_indexes WHERE indexname = $1", (name,)
                )
                return bool(found.scalar_one())
        finally:
            await engine.dispose()

    return registry.run(look())


@pytest.mark.parametrize(("path", "search"), CASES)
def test_list_reads_an_index_range(
    registry: InProcessRegistry, path: str, search: str | None
) -> None:
    statements = _recorded(registry, path)
    faults: list[str] = []
    if registry.settings.database_url.startswith("postgresql"):
        plans = _postgres_plans(registry, statements)
        for (statement, _), plan in zip(statements, plans, strict=True):
            found = _postgres_faults(plan[0]["Plan"], search)
            faults += [f"{fault}\n    in {statement}" for fault in found]
        if search:
            # On a few rows the planner filters the image's (registry's) rows instead, as it
            # should; at scale it takes the trigram index, which must therefore exist.
            index = f"ix_{search}_name_trgm"
            assert _postgres_index_exists(registry, index), f"GET {path}: no index {index}"
    else:
        database = Path(registry.settings.data_dir) / "registry.db"
        for statement, parameters in statements:
            found = _sqlite_faults(database, statement, parameters, search)
            faults += [f"{fault}\n    in {statement}" for fault in found]
        if search:
            table = SEARCH_TABLES.get(search, f"{search}_search")
            assert any(table in statement for statement, _ in statements), (
                f"GET {path}: no query went through {table}"
            )
    assert not faults, f"GET {path}:\n" + "\n".join(faults)


MENTIONS_REGISTRIES = re.compile(r"\b(registries|" + "|".join(LARGE) + r")\b")


@pytest.mark.parametrize("path", [path for path, _ in CASES] + REGISTRY_LISTS)
def test_list_total_is_kept_or_bounded(registry: InProcessRegistry, path: str) -> None:
    """No COUNT over every row of a list per request: a total is a count kept by triggers,
    or counted up to a bound (a LIMIT inside the count) and then labelled `total_exact`."""
    statements = _recorded(registry, path, MENTIONS_REGISTRIES)
    unbounded = [
        statement
        for statement, _ in statements
        if re.search(r"\bcount\(", statement, re.IGNORECASE)
        and not re.search(r"\bLIMIT\b", statement, re.IGNORECASE)
    ]
    assert not unbounded, f"GET {path} counts every row:\n" + "\n".join(unbounded)


def _sqlite_joined(database: Path, statement: str, parameters: Any) -> list[str]:
    """The tables the statement's main query loops over besides `tags` (its subqueries, the
    image found first, excepted)."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, parameters or ()).fetchall()
    return [
        detail
        for _id, parent, _unused, detail in rows
        if parent == 0 and re.match(r"(SCAN|SEARCH) ", detail) and " tags " not in f"{detail} "
    ]


def _postgres_joined(node: dict[str, Any], inside_join: bool = False) -> list[str]:
    """The joins that read `tags` on one side (InitPlans, the image found first, excepted)."""
    if node.get("Parent Relationship") == "InitPlan":
        return []
    if node.get("Relation Name") == "tags" and inside_join:
        return [f"{node['Node Type']} on tags inside a join"]
    joined = inside_join or node["Node Type"] in ("Nested Loop", "Hash Join", "Merge Join")
    return [fault for child in node.get("Plans", []) for fault in _postgres_joined(child, joined)]


@pytest.mark.parametrize("path", V2_TAG_PAGES)
def test_v2_tag_page_reads_one_image_found_first(registry: InProcessRegistry, path: str) -> None:
    statements = [s for s in _recorded(registry, path) if re.search(r"\btags\b", s[0])]
    assert statements, f"GET {path} read no tags"
    faults: list[str] = []
    if registry.settings.database_url.startswith("postgresql"):
        for (statement, _), plan in zip(
            statements, _postgres_plans(registry, statements), strict=True
        ):
            faults += [f"{f}\n    in {statement}" for f in _postgres_joined(plan[0]["Plan"])]
    else:
        database = Path(registry.settings.data_dir) / "registry.db"
        for statement, parameters in statements:
            joined = _sqlite_joined(database, statement, parameters)
            faults += [f"joined to {d}\n    in {statement}" for d in joined]
    assert not faults, f"GET {path}:\n" + "\n".join(faults)


# -- the lists of accounts and the audit log ---------------------------------------------------

ACCOUNT_MEMBERS = "/api/v1/project-groups/plans-crowd/members"
ACCOUNT_TOKENS = "/api/v1/users/admin/tokens"
ACCOUNT_TABLES = (
    "users",
    "project_groups",
    "group_members",
    "personal_access_tokens",
    "audit_log",
    "audit_target_tails",
)
MENTIONS_ACCOUNTS = re.compile(r"\b(" + "|".join(ACCOUNT_TABLES) + r")\b")
# (search name: SQLite's FTS5 table `<name>_search`; PostgreSQL's trigram index), but the
# audit log's, a B-tree of its targets' tails that start a word (migration 0019) on both
TRIGRAMS = {
    "users": "ix_users_username_trgm",
    "groups": "ix_project_groups_name_trgm",
    "tokens": "ix_personal_access_tokens_name_trgm",
    "audit": "audit_target_tails_pkey",
}
SEARCH_TABLES = {"audit": "audit_target_tails"}  # others: SQLite's `<name>_search`
PLAN_CASES = [
    ("/api/v1/users", None),
    ("/api/v1/users?sort=-created_at", None),
    ("/api/v1/users?q=walker", "users"),
    ("/api/v1/users?page_size=2&cursor={next}", None),
    ("/api/v1/users?sort=-created_at&page_size=2&cursor={next}", None),
    ("/api/v1/project-groups", None),
    ("/api/v1/project-groups?sort=-created_at&page_size=2&cursor={next}", None),
    ("/api/v1/project-groups?q=walker", "groups"),
    (ACCOUNT_MEMBERS, None),
    (f"{ACCOUNT_MEMBERS}?q=walker", "users"),
    (f"{ACCOUNT_MEMBERS}?sort=-username&page_size=2&cursor={{next}}", None),
    (ACCOUNT_TOKENS, None),
    (f"{ACCOUNT_TOKENS}?sort=-created_at&page_size=2&cursor={{next}}", None),
    (f"{ACCOUNT_TOKENS}?sort=name&page_size=2&cursor={{next}}", None),
    (f"{ACCOUNT_TOKENS}?sort=-last_used_at", None),
    (f"{ACCOUNT_TOKENS}?sort=-last_used_at&page_size=2&cursor={{next}}", None),
    (f"{ACCOUNT_TOKENS}?sort=expires_at&page_size=2&cursor={{next}}", None),
    (f"{ACCOUNT_TOKENS}?q=ci-t", "tokens"),
    ("/api/v1/audit-log", None),
    ("/api/v1/audit-log?page_size=2&cursor={next}", None),
    ("/api/v1/audit-log?sort=at&page_size=2&cursor={next}", None),
    ("/api/v1/audit-log?actor=walker-actor", None),
    ("/api/v1/audit-log?action=walk.step", None),
    ("/api/v1/audit-log?registry=walked", None),
    ("/api/v1/audit-log?outcome=denied", None),
    ("/api/v1/audit-log?actor=walker-actor&page_size=2&cursor={next}", None),
    ("/api/v1/audit-log?action=walk.step&page_size=2&cursor={next}", None),
    ("/api/v1/audit-log?registry=walked&page_size=2&cursor={next}", None),
    ("/api/v1/audit-log?outcome=denied&page_size=2&cursor={next}", None),
    ("/api/v1/audit-log?q=walked/path", "audit"),
]


def _is_bounded_count(statement: str) -> bool:
    return bool(re.search(r"\bcount\(", statement, re.IGNORECASE)) and bool(
        re.search(r"\bLIMIT\b", statement, re.IGNORECASE)
    )


def _whole_list_in_order(fault: str, statement: str) -> bool:
    scan = re.match(r"SCAN (\w+) USING (COVERING )?INDEX", fault)
    return scan is not None and not re.search(
        rf"\bFROM {scan.group(1)}\s+WHERE\b", statement, re.IGNORECASE
    )


@pytest.mark.parametrize(("path", "search"), PLAN_CASES)
def test_each_list_reads_an_index_range_and_counts_to_a_bound(
    registry: InProcessRegistry, path: str, search: str | None
) -> None:
    """No scan of a whole table and no sort of rows found through an index, but for the
    total, which reads at most SEARCH_COUNT_LIMIT index entries (its count has a LIMIT);
    a search goes through the trigram index of what it searches."""
    statements = _recorded(registry, path, MENTIONS_ACCOUNTS)
    unbounded = [
        s for s, _ in statements if re.search(r"\bcount\(", s, re.I) and not _is_bounded_count(s)
    ]
    assert not unbounded, f"GET {path} counts every row:\n" + "\n".join(unbounded)
    listed = [(s, p) for s, p in statements if not _is_bounded_count(s)]
    faults: list[str] = []
    if registry.settings.database_url.startswith("postgresql"):
        for (statement, _), plan in zip(listed, _postgres_plans(registry, listed), strict=True):
            found = _postgres_faults(plan[0]["Plan"], search, ACCOUNT_TABLES)
            faults += [f"{fault}\n    in {statement}" for fault in found]
        if search:
            index = TRIGRAMS[search]
            assert _postgres_index_exists(registry, index), f"GET {path}: no index {index}"
    else:
        database = Path(registry.settings.data_dir) / "registry.db"
        for statement, parameters in listed:
            found = _sqlite_faults(database, statement, parameters, search, ACCOUNT_TABLES)
            # A whole list's page (no condition on its table) is its index read in order
            # up to the LIMIT: a SCAN to SQLite, but of a page only.
            found = [f for f in found if not _whole_list_in_order(f, statement)]
            faults += [f"{fault}\n    in {statement}" for fault in found]
        if search:
            table = SEARCH_TABLES.get(search, f"{search}_search")
            assert any(table in statement for statement, _ in statements), (
                f"GET {path}: no query went through {table}"
            )
    assert not faults, f"GET {path}:\n" + "\n".join(faults)


SEARCHED_ONCE = [
    ("/api/v1/users?q=walker", "/api/v1/users?q=walker1", "users"),
    ("/api/v1/project-groups?q=walker", "/api/v1/project-groups?q=walker1", "groups"),
    (f"{ACCOUNT_MEMBERS}?q=walker", f"{ACCOUNT_MEMBERS}?q=walker1", "users"),
    (f"{ACCOUNT_TOKENS}?q=ci-t", f"{ACCOUNT_TOKENS}?q=ci-t1", "tokens"),
    ("/api/v1/audit-log?q=walked/path", "/api/v1/audit-log?q=walked/path/1", "audit"),
]


@pytest.mark.parametrize(("path", "narrower", "search"), SEARCHED_ONCE)
def test_search_reads_its_trigram_index_once(
    registry: InProcessRegistry, path: str, narrower: str, search: str
) -> None:
    """A search's total and its page come from one read of the trigram index (the matches,
    up to SEARCH_COUNT_LIMIT): when the text's trigrams are common, that read costs more as
    the table grows, and reading it twice per request (the total, then the page) made these
    searches 3-5x dearer at 100,000 rows than at 1,000. The page's statement is the same
    whatever the number of matches (one prepared statement, not one per number)."""
    postgresql = registry.settings.database_url.startswith("postgresql")
    table = SEARCH_TABLES.get(search, f"{search}_search")
    marker = re.compile(r"\bLIKE\b" if postgresql else rf"\b{table}\b", re.IGNORECASE)
    pages = []
    for searched in (path, narrower):
        statements = [s for s, _ in _recorded(registry, searched, MENTIONS_ACCOUNTS)]
        searching = [s for s in statements if marker.search(s)]
        assert len(searching) == 1, (
            f"GET {searched} read the trigram index {len(searching)} times:\n"
            + "\n".join(searching)
        )
        pages.append([s for s in statements if not marker.search(s)])
    assert pages[0] and pages[0] == pages[1], f"the pages of {path} and {narrower} differ"


AUDIT_WORD_SEARCHES = [
    "/api/v1/audit-log?q=walked/path",
    "/api/v1/audit-log?q=/Walked/Path/1",
    "/api/v1/audit-log?q=walked&sort=at",
    "/api/v1/audit-log?q=path&actor=walker-actor",
]


@pytest.mark.parametrize("path", AUDIT_WORD_SEARCHES)
def test_audit_search_reads_one_range_of_the_targets_tails(
    registry: InProcessRegistry, path: str
) -> None:
    """The audit log's search finds its events through one range of the B-tree of their
    targets' tails that start a word (migration 0019), whose length is the number of
    matches, not through the trigram index of the targets, whose posting lists (every
    target shares `/ap`, `api`, `/v1`) are a part of the whole log: 2-4x dearer at 100,000
    events than at 1,000."""
    statements = _recorded(registry, path, MENTIONS_ACCOUNTS)
    searching = [(s, p) for s, p in statements if "audit_target_tails" in s]
    assert len(searching) == 1, f"GET {path} read the tails {len(searching)} times"
    assert not [s for s, _ in statements if re.search(r"\baudit_search\b", s)], (
        f"GET {path} read the trigram index"
    )
    if registry.settings.database_url.startswith("postgresql"):
        # the plan for these values, and the one kept once the statement is prepared
        for (plan,) in (
            _postgres_plans(registry, searching),
            _postgres_plans(registry, searching, generic=True),
        ):
            _tails_read_by_range(path, plan)
    else:
        database = Path(registry.settings.data_dir) / "registry.db"
        ((statement, parameters),) = searching
        with sqlite3.connect(database) as conn:
            plan = conn.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
        details = [row[3] for row in plan]
        tails = [d for d in details if "audit_target_tails" in d]
        assert tails == ["SEARCH audit_target_tails USING PRIMARY KEY (tail>? AND tail<?)"], (
            f"GET {path}: {details}"
        )
        assert not [d for d in details if d.startswith("SCAN")], f"GET {path}: {details}"


def _tails_read_by_range(path: str, plan: Any) -> None:
    nodes, tails = [plan[0]["Plan"]], []
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        assert node.get("Index Name") != "ix_audit_log_target_trgm", f"GET {path}: {node}"
        scanned = node.get("Relation Name") == "audit_target_tails"
        assert not (scanned and node["Node Type"] == "Seq Scan"), f"GET {path}: {node}"
        if str(node.get("Index Name", "")).startswith("audit_target_tails"):
            tails.append(node)
    assert [(n["Index Name"], "tail >=" in n.get("Index Cond", "")) for n in tails] == [
        ("audit_target_tails_pkey", True)
    ], f"GET {path}: {tails}"


def _literal(value: Any) -> str:
    """`value` as SQL (EXPLAIN EXECUTE takes no bound parameters)."""
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    assert isinstance(value, int), value
    return str(value)


def test_members_search_finds_the_memberships_by_user(registry: InProcessRegistry) -> None:
    """A search of a group's members finds the users first, then their memberships by user:
    never a walk of the group's members in name order testing each against the users
    found, which PostgreSQL's generic plan chose (the group's size unknown to it), reading
    all 100,000 members of `crowd` per request (8x the cost at 1,000)."""
    path = f"{ACCOUNT_MEMBERS}?q=walker"
    statements = [
        (s, p) for s, p in _recorded(registry, path, MENTIONS_ACCOUNTS) if "group_members" in s
    ]
    assert statements, f"GET {path} read no memberships"
    walks: list[str] = []
    if registry.settings.database_url.startswith("postgresql"):
        for (statement, _), plan in zip(
            statements, _postgres_plans(registry, statements, generic=True), strict=True
        ):
            nodes = [plan[0]["Plan"]]
            while nodes:
                node = nodes.pop()
                nodes += node.get("Plans", [])
                index = str(node.get("Index Name", ""))
                by_user = "user_id" in str(node.get("Index Cond", ""))
                scanned = node.get("Relation Name") == "group_members" and not index
                scanned = scanned and node["Node Type"] == "Seq Scan"
                if scanned or ("group_members" in index and not by_user):
                    walks.append(f"{node['Node Type']} {index}\n  {statement}")
    else:
        database = Path(registry.settings.data_dir) / "registry.db"
        with sqlite3.connect(database) as conn:
            for statement, parameters in statements:
                plan = conn.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
                walks += [
                    f"{row[3]}\n  {statement}"
                    for row in plan
                    if "group_members" in row[3] and "user_id=" not in row[3]
                ]
    assert not walks, f"GET {path} walks the group's members:\n" + "\n".join(walks)
