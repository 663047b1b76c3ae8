"""The catalog as lists: registries, images and tags as the management API and the console
show them (SPEC §5), with filters, sorting and pages, and the operations on them.

An image, to the console, is a repository holding at least one tag: deleting its last tag
(here or through /v2) makes it go, and its untagged manifests are left to garbage collection,
so both paths leave the same state.

Lists cost the same at 100,000 rows as at 1,000 (issue 15): they read `images.tag_count` and
`registries.image_count`, which database triggers keep (migration 0009), instead of counting
rows per request, and every sort they offer reads an index range in order (migration 0015; the
platform image list merges each registry's range); searches go through trigram indexes of tag
and image names (FTS5 on SQLite, `pg_trgm` on PostgreSQL). A search (`q`) counts its matches only
up to `SEARCH_COUNT_LIMIT`; past it the list says so with `total_exact: false`, and `total`
is that limit, a lower bound; so is every total no trigger keeps (the registry lists).

A page is found by its number (an offset: the rows before it are read and dropped, so
callers bound it) or, cheaply at any depth, after a key: the sort key of the last row of the
page before (`Page.after`, which the API hands out as an opaque cursor). Each list returns the
key of its last row when more rows follow, and a page after a key is an index range that
starts at that key (keyset pagination).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ociregistry.auth.models import ProjectGroup, User
from ociregistry.catalog import candidates
from ociregistry.catalog.immutable import refuse_deleting
from ociregistry.catalog.usage import UNIQUE_BYTES, lock_for_images, remove_images, tree_sizes
from ociregistry.catalog.usage_deferred import UsageCounter, count_pending
from ociregistry.db import locks
from ociregistry.db.database import Database
from ociregistry.db.models import (
    Image,
    Manifest,
    ManifestReference,
    Registry,
    Tag,
    utcnow,
)
from ociregistry.db.sql import escape_like
from ociregistry.errors import InvalidArgument, NotFound

MAX_PAGE_SIZE = 100
SEARCH_COUNT_LIMIT = 1000  # a search counts this many matches at most (`total_exact: false`)

log = logging.getLogger("ociregistry.console")


@dataclass(frozen=True, slots=True)
class Page:
    """A page by its number, or (`after`) the page after the row whose sort key that is:
    the values of the list's ORDER BY terms, as the list gave them with its page before."""

    number: int = 1
    size: int = 20
    after: tuple[Any, ...] | None = None

    @property
    def offset(self) -> int:
        return 0 if self.after is not None else (self.number - 1) * self.size


FIRST_PAGE = Page()  # the default page of a list: number 1, 20 items
Key = tuple[Any, ...]  # a row's sort key, as JSON values (times as RFC 3339 strings)
_NO_ID = 2**31 - 1  # above every row id (ids are 32-bit integers on PostgreSQL)


@dataclass(frozen=True, slots=True)
class Total:
    """How many items a list holds over all its pages; `exact` is False when a search stopped
    counting at SEARCH_COUNT_LIMIT matches, and `count` is then a lower bound."""

    count: int
    exact: bool = True


@dataclass(frozen=True, slots=True)
class RegistryView:
    resource_id: str
    name: str
    kind: str
    remark: str
    public: bool
    status: str
    project_group: str | None
    labels: dict[str, str]
    owner: str | None
    image_count: int
    pull_count: int
    pull_count_refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    size_bytes: int  # distinct bytes its manifests reference (catalog/usage.py)
    unique_bytes: int  # the part no other registry references
    quota_bytes: int  # 0: none
    immutable_tags: list[str]  # patterns of tags that never move (catalog/immutable.py)
    caller_role: str | None = None  # the caller's role in its project group, if any


@dataclass(frozen=True, slots=True)
class ImageView:
    registry: str
    name: str
    latest_tag: str | None
    tag_count: int
    pull_count: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TagView:
    name: str
    digest: str
    media_type: str
    size_bytes: int
    pull_count: int
    created_at: datetime
    platforms: list[str]


_TAGGED = Image.tag_count > 0  # kept by triggers, like the counts below (migration 0009)
_IMAGE_COUNT = Registry.image_count
_REGISTRY_COLUMNS = (
    Registry.resource_id,
    Registry.name,
    Registry.kind,
    Registry.remark,
    Registry.public,
    Registry.status,
    ProjectGroup.name.label("project_group"),
    Registry.labels,
    User.username.label("owner"),
    _IMAGE_COUNT.label("image_count"),
    Registry.pull_count,
    Registry.pull_count_refreshed_at,
    Registry.created_at,
    Registry.updated_at,
    Registry.size_bytes,
    UNIQUE_BYTES.label("unique_bytes"),
    Registry.quota_bytes,
    Registry.immutable_tags,
)
REGISTRY_SORTS: dict[str, Any] = {
    "name": Registry.name,
    "created_at": Registry.created_at,
    "updated_at": Registry.updated_at,
    "pull_count": Registry.pull_count,
    "image_count": _IMAGE_COUNT,
    "size_bytes": Registry.size_bytes,
}

_TAG_COUNT = Image.tag_count
_LATEST_TAG = (
    select(Tag.name)
    .where(Tag.image_id == Image.id)
    .order_by(Tag.created_at.desc(), Tag.id.desc())
    .limit(1)
    .correlate(Image)
    .scalar_subquery()
)
_IMAGE_SIZE = Image.size_bytes  # exact, kept by catalog/usage.py (migration 0010)
IMAGE_SORTS: dict[str, Any] = {
    "name": Image.name,
    "created_at": Image.created_at,
    "updated_at": Image.updated_at,
    "pull_count": Image.pull_count,
    "tag_count": _TAG_COUNT,
    "size_bytes": Image.size_bytes,
}
TAG_SORTS: dict[str, Any] = {
    "name": Tag.name,
    "created_at": Tag.created_at,
    "pull_count": Tag.pull_count,
}


def parse_sort(
    value: str | None, allowed: dict[str, Any], default: str, *, then: tuple[Any, ...] = ()
) -> list[Any]:
    """ORDER BY terms for `name`, `-created_at`, …; only fields of the allow-list. `then`
    are the tie-breaks, in the same direction as the sort, so that one index (the sort's
    column, then the row id) gives the whole order read forwards or backwards."""
    text = value or default
    descending = text.startswith("-")
    field = text.removeprefix("-")
    if field not in allowed:
        raise InvalidArgument(
            f"cannot sort by {field[:50]!r}; use one of {', '.join(sorted(allowed))} "
            "(prefix '-' for descending)",
            detail={"field": "sort"},
        )
    return [column.desc() if descending else column.asc() for column in (allowed[field], *then)]


def _sort_field(value: str | None, allowed: dict[str, Any], default: str) -> tuple[str, bool]:
    """The field and direction of `sort` (already checked by parse_sort)."""
    text_ = value or default
    return text_.removeprefix("-"), text_.startswith("-")


_TIMES = ("created_at", "updated_at")


def _decode_key(after: Key, field: str, ids: int) -> Key:
    """`after` as values to compare with the sort column `field` and `ids` row ids; a key
    that does not fit (a cursor of another list or sort, or made up) is refused."""

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    first: Any = None
    valid = isinstance(after, tuple | list) and len(after) == 1 + ids
    if valid:
        first, *rest = after
        valid = all(whole(value) for value in rest)
        if field in _TIMES:
            try:
                first = datetime.fromisoformat(first)
            except (TypeError, ValueError):
                valid = False
            else:  # times are UTC (SQLite gives them back without an offset)
                first = first if first.tzinfo else first.replace(tzinfo=UTC)
        elif field == "name":
            valid = valid and isinstance(first, str)
        else:
            valid = valid and whole(first)
    if not valid:
        raise InvalidArgument(
            "cursor does not belong to this list and sort; use the `next` of its last answer",
            detail={"field": "cursor"},
        )
    return (first, *after[1:])


def _encode_key(values: Any) -> Key:
    return tuple(v.isoformat() if isinstance(v, datetime) else v for v in values)


def _beyond(columns: tuple[Any, ...], key: Key, descending: bool) -> ColumnElement[bool]:
    """Rows after `key` in the order of `columns` (all in one direction): a row-value
    comparison, which both databases read as a range of an index on those columns."""
    values = tuple_(
        *(
            bindparam(None, value, type_=column.type)
            for column, value in zip(columns, key, strict=True)
        )
    )
    row = tuple_(*columns)
    return row < values if descending else row > values


def _after_in_registry(registry_id: int, key: Key) -> tuple[Any, int]:
    """A key (sort value, registry id, image id) of the images of several registries as a
    key (sort value, image id) within one registry: that registry's images after it in the
    order (sort value, registry id, image id), in either direction. Within the key's own
    registry the id decides a tie of sort values; in another, the registry ids decide it,
    as comparing with id -1 (a registry of a higher id) or _NO_ID (a lower one) does."""
    value, after_registry, after_id = key
    if registry_id == after_registry:
        return value, after_id
    return value, -1 if registry_id > after_registry else _NO_ID


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    return column.like(f"%{escape_like(text)}%", escape="\\")


TRIGRAM = 3  # the trigram index answers searches of at least this many characters


def _name_search(table: str, text_: str) -> Any:
    """The ids of rows whose name contains `text_`, from a trigram index of SQLite (the FTS5
    table `tags_search` of migration 0009, `images_search` of 0015): the same matches as
    `_contains`, found without reading every row. The caller drives the query from these ids
    (`image_id + 0`, `registry_id + 0` keep SQLite from walking a range of the table instead)."""
    phrase = '"' + text_.replace('"', '""') + '"'
    return (
        select(literal_column("rowid"))
        .select_from(text(table))
        .where(text(f"{table} MATCH :phrase").bindparams(phrase=phrase))
    )


def full_name_matches(
    registries: list[tuple[int, str]], q: str
) -> tuple[list[int], list[tuple[int, str]]]:
    """How `q` can occur in `{registry}/{image}` other than inside the image's name: for
    each (id, name) of `registries`, either it occurs in `{registry}/` (every image of that
    registry matches: `whole`), or it begins there and runs on into the image's name, which
    must then start with the rest (`prefixes`: (registry id, rest)). With the images whose
    name contains `q`, that is exactly the full-name search, and each part has an index."""
    whole: list[int] = []
    prefixes: list[tuple[int, str]] = []
    for registry_id, name in registries:
        head = name + "/"
        if q in head:
            whole.append(registry_id)
            continue
        prefixes += [(registry_id, q[k:]) for k in range(1, len(q)) if head.endswith(q[:k])]
    return whole, prefixes


def _found_first(chosen: Select[Any], id_column: Any) -> Select[Any]:
    """The rows of a search, found before they are sorted (PostgreSQL). Left to itself, the
    planner walks the list's sort index and tests every row against `LIKE '%q%'`, betting
    that matches are spread evenly; when they sit at the far end of that order (old tags
    under the newest-first sort) a page read every row. A materialized CTE makes it find
    the matches first, through the trigram index, and sort only those."""
    found = chosen.cte("found").prefix_with("MATERIALIZED")
    return select(id_column).where(id_column.in_(select(found.c.id)))


MERGE_LIMIT = 64  # registries whose best images are merged for a page (more: one query)


def _image_page(
    registry_ids: list[int], sort: str | None, page: Page
) -> tuple[Select[Any], dict[str, Any]]:
    """The ids of the images of one page of `registry_ids` (and one more, to tell whether
    more follow), in the order of `sort`, and the statement's parameters.

    One registry's images in any sort are a range of one index (registry, sort column, id):
    the page is read in order and nothing is sorted. Several registries' images (the platform
    image list) interleave, and no index holds them in order: the page is the best
    `offset + size` of each registry, each an index range, merged, so it costs the same at
    100,000 images as at 1,000."""
    order = parse_sort(sort, IMAGE_SORTS, "name", then=(Image.registry_id, Image.id))
    field, descending = _sort_field(sort, IMAGE_SORTS, "name")
    after = _decode_key(page.after, field, 2) if page.after is not None else None
    if 1 < len(registry_ids) <= MERGE_LIMIT:
        params = {f"registry_{i}": registry_id for i, registry_id in enumerate(registry_ids)}
        params |= {"best": page.offset + page.size + 1, "skip": page.offset}
        params["size"] = page.size + 1
        if after is not None:
            params["after"] = after[0]
            for i, registry_id in enumerate(registry_ids):
                params[f"after_{i}"] = _after_in_registry(registry_id, after)[1]
        return _merged_page(len(registry_ids), sort, after is not None), params
    if len(registry_ids) == 1:
        chosen = select(Image.id).where(Image.registry_id == registry_ids[0], _TAGGED)
        if after is not None:
            within = _after_in_registry(registry_ids[0], after)
            chosen = chosen.where(_beyond((IMAGE_SORTS[field], Image.id), within, descending))
    else:
        chosen = select(Image.id).where(Image.registry_id.in_(registry_ids), _TAGGED)
        if after is not None:
            keys = (IMAGE_SORTS[field], Image.registry_id, Image.id)
            chosen = chosen.where(_beyond(keys, after, descending))
    return chosen.order_by(*order).offset(page.offset).limit(page.size + 1), {}


@functools.lru_cache(maxsize=256)
def _merged_page(count: int, sort: str | None, keyed: bool) -> Select[Any]:
    """The merge of `count` registries' best images, built once per count and sort: building
    a union of subqueries costs SQLAlchemy more than SQLite takes to run it. `keyed`: each
    registry's range starts after a key (parameters `after` and `after_<i>`)."""
    field, descending = _sort_field(sort, IMAGE_SORTS, "name")
    column = IMAGE_SORTS[field]
    order = parse_sort(sort, IMAGE_SORTS, "name", then=(Image.registry_id, Image.id))
    best = []
    for i in range(count):
        part = select(Image.id, column.label("key"), Image.registry_id).where(
            Image.registry_id == bindparam(f"registry_{i}"), _TAGGED
        )
        if keyed:
            row = tuple_(column, Image.id)
            key = tuple_(
                bindparam("after", type_=column.type), bindparam(f"after_{i}", type_=Integer)
            )
            part = part.where(row < key if descending else row > key)
        best.append(part.order_by(*order).limit(bindparam("best", type_=Integer)).subquery())
    return _merge(best, descending)


def _merge(parts: list[Any], descending: bool) -> Select[Any]:
    """The ids of the union of `parts` (subqueries of id, key, registry_id, each already the
    best rows of its part) in the order (key, registry_id, id), parameters `skip`, `size`."""
    merged = union_all(*(select(part.c.id, part.c.key, part.c.registry_id) for part in parts))
    rows = merged.subquery()
    terms = (rows.c.key, rows.c.registry_id, rows.c.id)
    return (
        select(rows.c.id)
        .order_by(*(term.desc() if descending else term.asc() for term in terms))
        .offset(bindparam("skip", type_=Integer))
        .limit(bindparam("size", type_=Integer))
    )


def _last_key(rows: list[Any], page: Page, keys: int) -> tuple[list[Any], Key | None]:
    """The page's rows (read one too many, to tell whether more follow) and, when more do,
    the key of its last row: its last `keys` columns."""
    if len(rows) <= page.size:
        return rows, None
    rows = rows[: page.size]
    return rows, _encode_key(rows[-1][-keys:])


async def _count_matches(conn: Any, query: Select[Any]) -> Total:
    """The number of rows of a search, counted up to SEARCH_COUNT_LIMIT and no further."""
    capped = query.limit(SEARCH_COUNT_LIMIT + 1).subquery()
    found = await conn.scalar(select(func.count()).select_from(capped)) or 0
    if found > SEARCH_COUNT_LIMIT:
        return Total(SEARCH_COUNT_LIMIT, exact=False)
    return Total(found)


# -- keyset pages of any list ----------------------------------------------------------------
# The catalog's own lists above build their pages by hand (merges of registries' ranges);
# the other lists (users, groups and members, tokens, the audit log) are each one table's
# rows in one index's order, and share these steps.


@dataclass(frozen=True, slots=True)
class KeysetOrder:
    """A list's order by `sort`: its ORDER BY terms and the columns of a row's key (the sort
    column, then the row id). A nullable sort column orders its NULLs as the smallest
    values, as SQLite does and as an index holds them on both databases."""

    order: tuple[Any, ...]
    keys: tuple[Any, ...]
    descending: bool
    nullable: bool


def keyset_order(
    sort: str | None, allowed: dict[str, Any], default: str, id_column: Any
) -> KeysetOrder:
    """The order of `sort` among `allowed` (400 naming the field otherwise), `id_column` the
    tie-break."""
    parse_sort(sort, allowed, default)  # refuses a field not allowed
    field, descending = _sort_field(sort, allowed, default)
    column = allowed[field]
    nullable = bool(getattr(column, "nullable", False))
    order = [column.desc() if descending else column.asc()]
    if nullable:  # NULLs first ascending, last descending, on both databases
        order = [order[0].nulls_last() if descending else order[0].nulls_first()]
    order.append(id_column.desc() if descending else id_column.asc())
    return KeysetOrder(tuple(order), (column, id_column), descending, nullable)


def _decode_keyset(after: Key, order: KeysetOrder) -> Key:
    """`after` as values of the key columns, each of its column's type; 400 when it does
    not fit (a cursor of another list or sort, or made up)."""
    valid = isinstance(after, tuple | list) and len(after) == len(order.keys)
    values: list[Any] = []
    for column, value in zip(order.keys, after, strict=False) if valid else ():
        kind = column.type.python_type
        if value is None and column is order.keys[0] and order.nullable:
            values.append(None)
        elif kind is datetime and isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                valid = False
                break
            values.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        elif isinstance(value, kind) and not isinstance(value, bool) and kind is not datetime:
            values.append(value)
        else:
            valid = False
            break
    if not valid:
        raise InvalidArgument(
            "cursor does not belong to this list and sort; use the `next` of its last answer",
            detail={"field": "cursor"},
        )
    return tuple(values)


def _ranges(order: KeysetOrder, key: Key) -> list[ColumnElement[bool]]:
    """The index ranges holding the rows after `key`, in the list's order: one range, but
    for a nullable sort column, whose NULLs (first ascending, last descending) are a range
    of their own; a condition joining both (`OR`) could only be tested row by row."""
    column, id_column = order.keys
    if not order.nullable:
        return [_beyond(order.keys, key, order.descending)]
    value, row_id = key
    if value is None and order.descending:
        return [and_(column.is_(None), id_column < row_id)]
    if value is None:
        return [and_(column.is_(None), id_column > row_id), column.is_not(None)]
    beyond = _beyond(order.keys, key, order.descending)
    return [beyond, column.is_(None)] if order.descending else [beyond]


def keyset_ranges(order: KeysetOrder, after: Key | None) -> list[ColumnElement[bool]]:
    """The conditions of the index ranges after the key `after` (none without one), for a
    query that reads them in parts of its own."""
    return [] if after is None else _ranges(order, _decode_keyset(after, order))


async def keyset_fetch(
    conn: Any, query: Select[Any], order: KeysetOrder, page: Page
) -> tuple[list[Any], Key | None]:
    """`query`'s rows of `page`, in `order`: after the page's key (each of its index ranges
    in turn, until the page is full) or, by number, after its offset; and the key of the
    last row when more rows follow."""
    ranges: list[Any] = keyset_ranges(order, page.after) or [None]
    rows: list[Any] = []
    for condition in ranges:
        part = query if condition is None else query.where(condition)
        part = part.add_columns(*order.keys).order_by(*order.order)
        part = part.offset(page.offset).limit(page.size + 1 - len(rows))
        rows += (await conn.execute(part)).all()
        if len(rows) > page.size:
            break
    rows, following = _last_key(rows, page, len(order.keys))
    return [row[: -len(order.keys)] for row in rows], following


async def bounded_total(conn: Any, query: Select[Any]) -> Total:
    """How many rows `query` selects, counted up to SEARCH_COUNT_LIMIT (`exact` False past
    it): a list that no trigger counts pays for at most that many index entries."""
    return await _count_matches(conn, query)


async def searched_ids(conn: Any, chosen: Select[Any]) -> list[int] | None:
    """The ids a search selects when there are at most SEARCH_COUNT_LIMIT of them (None:
    more). Read once, they are both the search's exact total and the few rows its page is
    sorted from: a trigram index costs more as the table grows when the text's trigrams are
    common (every `grp…`, `…/images/img…`), so a request reads it once rather than twice
    (the total, then the page)."""
    ids = list((await conn.scalars(chosen.limit(SEARCH_COUNT_LIMIT + 1))).all())
    return ids if len(ids) <= SEARCH_COUNT_LIMIT else None


async def search_total(
    conn: Any, url: str, chosen: Select[Any], column: Any, q: str | None
) -> tuple[Total, ColumnElement[bool] | None]:
    """A list's total and, for a search with at most SEARCH_COUNT_LIMIT matches, the condition
    that picks exactly them from the ids `searched_ids` read (`column` among them), so the
    page is sorted from those few rows; None: list what `chosen` selects (no search, or one
    with more matches, whose total is then the limit, labelled an estimate)."""
    found = await searched_ids(conn, chosen) if q else None
    if found is not None:
        return Total(len(found)), among(url, column, found)
    if q:
        return Total(SEARCH_COUNT_LIMIT, exact=False), None
    return await bounded_total(conn, chosen), None


def among(url: str, column: Any, ids: list[int]) -> ColumnElement[bool]:
    """`column` is one of `ids` (searched_ids'), as one statement whatever their number: a
    PostgreSQL array, a SQLite JSON array. A list of bound values (`IN (?, ?, …)`) would be
    a new statement for each number of matches, each prepared and cached anew, pushing the
    hot statements out of each connection's cache."""
    if url.startswith("postgresql"):
        return column == any_(bindparam(None, ids, type_=ARRAY(Integer)))
    listed = func.json_each(bindparam(None, json.dumps(ids), type_=String))
    return column.in_(select(literal_column("value")).select_from(listed))


def name_contains(
    url: str, id_column: Any, column: Any, search_table: str, q: str
) -> ColumnElement[bool]:
    """Rows whose `column` contains `q`, found on SQLite through the trigram FTS5 table
    `search_table` (when `q` has at least TRIGRAM characters) and on PostgreSQL through the
    column's `pg_trgm` index (with `searched_first`)."""
    named = _contains(column, q)
    if url.startswith("sqlite") and len(q) >= TRIGRAM:
        return and_(id_column.in_(_name_search(search_table, q)), named)
    return named


def searched_first(url: str, chosen: Select[Any], id_column: Any) -> Select[Any]:
    """The ids of a search found before they are sorted, on PostgreSQL (see _found_first)."""
    return _found_first(chosen, id_column) if url.startswith("postgresql") else chosen


class Listings:
    """Registries, images and tags as lists and single views, and the changes made to them
    there (not `console/`, the web UI, though the console is their main reader)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Figures (`size_bytes`, `unique_bytes`) are read after the manifests pushed so far
        # are counted (on SQLite they are counted after their PUT: catalog/usage_deferred.py).
        self.usage = UsageCounter(db)

    # -- registries --------------------------------------------------------------------------

    @staticmethod
    def _registry_query(role: Any = None) -> Select[Any]:
        """Registries with their columns of SPEC §5, and `role` (a column: the caller's role
        in the registry's group) when given."""
        columns = (*_REGISTRY_COLUMNS, role) if role is not None else _REGISTRY_COLUMNS
        return (
            select(*columns)
            .select_from(Registry)
            .outerjoin(ProjectGroup, ProjectGroup.id == Registry.project_group_id)
            .outerjoin(User, User.id == Registry.owner_id)
        )

    async def list_registries(
        self,
        *,
        scope: str,
        where: ColumnElement[bool] | None = None,
        role: Any = None,
        q: str | None = None,
        project_group: str | None = None,
        label: tuple[str, str] | None = None,
        sort: str | None = None,
        page: Page = Page(),
    ) -> tuple[list[RegistryView], Total, Key | None]:
        """`scope` is `user` (user registries), `shared` (public user registries) or
        `platform`; `where` is the access policy's condition for the caller (none: every
        registry of the scope) and `role` its column of the caller's role. No trigger keeps
        these counts (they depend on the caller): the total is counted up to
        SEARCH_COUNT_LIMIT, as a search's is. Last, the key of the page's last row when more
        rows follow."""
        conditions: list[ColumnElement[bool]] = []
        if scope == "platform":
            conditions.append(Registry.kind == "platform")
        elif scope == "shared":
            conditions += [Registry.kind == "user", Registry.public.is_(True)]
        else:
            conditions.append(Registry.kind == "user")
        if where is not None:
            conditions.append(where)
        if q:
            conditions.append(_contains(Registry.name, q))
        if project_group:
            conditions.append(ProjectGroup.name == project_group)
        if label:
            conditions.append(Registry.labels[label[0]].as_string() == label[1])
        order = parse_sort(sort, REGISTRY_SORTS, "name", then=(Registry.id,))
        field, descending = _sort_field(sort, REGISTRY_SORTS, "name")
        keys = (REGISTRY_SORTS[field], Registry.id)
        counted = (
            select(Registry.id)
            .select_from(Registry)
            .outerjoin(ProjectGroup, ProjectGroup.id == Registry.project_group_id)
            .where(*conditions)
        )
        if page.after is not None:
            after = _decode_key(page.after, field, 1)
            conditions.append(_beyond(keys, after, descending))
        query = self._registry_query(role).add_columns(*keys).where(*conditions)
        await self.usage.settle()
        async with self.db.read(offload=True) as conn:
            total = await _count_matches(conn, counted)
            rows = (
                await conn.execute(query.order_by(*order).offset(page.offset).limit(page.size + 1))
            ).all()
        rows, following = _last_key(rows, page, len(keys))
        return [RegistryView(*row[: -len(keys)]) for row in rows], total, following

    async def get_registry(self, name: str, *, role: Any = None) -> RegistryView:
        await self.usage.settle()
        async with self.db.read() as conn:
            row = (
                await conn.execute(self._registry_query(role).where(Registry.name == name))
            ).first()
        if row is None:
            raise NotFound(f"registry {name!r} does not exist", detail={"name": name})
        return RegistryView(*row)

    async def update_registry(self, name: str, **values: Any) -> RegistryView:
        async with self.db.write() as conn:
            if values.get("quota_bytes"):  # a registry with a quota has nothing pending
                await conn.run_sync(count_pending)
            result = await conn.execute(
                update(Registry).where(Registry.name == name).values(updated_at=utcnow(), **values)
            )
        if not result.rowcount:
            raise NotFound(f"registry {name!r} does not exist", detail={"name": name})
        return await self.get_registry(name)

    # -- images and tags ---------------------------------------------------------------------

    @staticmethod
    def _image_columns() -> Select[Any]:
        """The columns of an ImageView."""
        return select(
            Registry.name,
            Image.name,
            _LATEST_TAG,
            _TAG_COUNT,
            Image.pull_count,
            _IMAGE_SIZE,
            Image.created_at,
            Image.updated_at,
        )

    @classmethod
    def _image_query(cls, registries: ColumnElement[bool]) -> Select[Any]:
        """Images holding at least one tag, in the registries matching `registries`."""
        return (
            cls._image_columns()
            .join(Registry, Registry.id == Image.registry_id)
            .where(registries, _TAGGED)
        )

    async def list_images(
        self,
        registries: str | ColumnElement[bool],
        *,
        q: str | None = None,
        sort: str | None = None,
        page: Page = Page(),
        match_full_name: bool = False,
    ) -> tuple[list[ImageView], Total, Key | None]:
        """Images of the registry named `registries`, or of those matching that condition
        (the platform image list spans many); `q` matches the name in its registry, or with
        `match_full_name` the whole `{registry}/{image}`. Without `q` the total is the sum of
        the registries' maintained image counts. Last, the key of the page's last row when
        more rows follow."""
        order = parse_sort(sort, IMAGE_SORTS, "name", then=(Image.registry_id, Image.id))
        field, _ = _sort_field(sort, IMAGE_SORTS, "name")
        keys = (IMAGE_SORTS[field], Image.registry_id, Image.id)
        if isinstance(registries, str):
            registries = Registry.name == registries
        await self.usage.settle()
        async with self.db.read(offload=True) as conn:
            held = [
                (int(row[0]), str(row[1]), int(row[2]))
                for row in (
                    await conn.execute(
                        select(Registry.id, Registry.name, Registry.image_count)
                        .where(registries)
                        .order_by(Registry.id)
                    )
                ).all()
            ]
            if q:
                total, page_ids, params = await self._image_search_page(
                    conn, held, q, match_full_name, sort, page
                )
            else:
                total = Total(sum(count for _, _, count in held))
                page_ids, params = _image_page(
                    [registry_id for registry_id, *_ in held], sort, page
                )
            chosen_page = page_ids.subquery()
            query = self._image_columns().add_columns(*keys).select_from(chosen_page)
            query = query.join(Image, Image.id == chosen_page.c.id)
            query = query.join(Registry, Registry.id == Image.registry_id)
            rows = (await conn.execute(query.order_by(*order), params)).all()
        rows, following = _last_key(rows, page, len(keys))
        return [ImageView(*row[: -len(keys)]) for row in rows], total, following

    async def _image_search_page(
        self,
        conn: Any,
        held: list[tuple[int, str, int]],
        q: str,
        match_full_name: bool,
        sort: str | None,
        page: Page,
    ) -> tuple[Total, Select[Any], dict[str, Any]]:
        """The total and the page's ids (one more, to tell whether more follow) of a search.

        A registry whose own name holds `q` (`{registry}/` contains it: every image of it
        matches a full-name search) is not searched: its images are its index range in the
        list's order, merged with the best matches elsewhere, and they count by its
        maintained image count; the rest are counted up to SEARCH_COUNT_LIMIT."""
        order = parse_sort(sort, IMAGE_SORTS, "name", then=(Image.registry_id, Image.id))
        field, descending = _sort_field(sort, IMAGE_SORTS, "name")
        column = IMAGE_SORTS[field]
        after = _decode_key(page.after, field, 2) if page.after is not None else None
        whole, prefixes = (
            full_name_matches([(i, name) for i, name, _ in held], q)
            if match_full_name
            else ([], [])
        )
        rest = self._image_search(
            [registry_id for registry_id, *_ in held if registry_id not in whole], q, prefixes
        )
        counted = await _count_matches(conn, rest)
        whole_count = sum(count for registry_id, _, count in held if registry_id in whole)
        total = Total(counted.count + whole_count, counted.exact)
        if after is not None:
            rest = rest.where(_beyond((column, Image.registry_id, Image.id), after, descending))
        if not whole:
            return total, rest.order_by(*order).offset(page.offset).limit(page.size + 1), {}
        # The best rows of the whole registries (the platform list's cached merge of index
        # ranges) and of the other matches, each read in order up to the page's end, then the
        # page among those few: building one union of per-registry subqueries per request
        # cost SQLAlchemy more (5 ms) than running it.
        best = page.offset + page.size
        whole_page, params = _image_page(whole, sort, Page(1, best, after=page.after))
        found = list((await conn.scalars(whole_page, params)).all())
        found += (await conn.scalars(rest.order_by(*order).limit(best + 1))).all()
        chosen = select(Image.id).where(Image.id.in_(found)).order_by(*order)
        return total, chosen.offset(page.offset).limit(page.size + 1), {}

    def _image_search(self, ids: list[int], q: str, prefixes: list[tuple[int, str]]) -> Select[Any]:
        """The ids of the tagged images of the registries `ids` whose name contains `q`, or
        (`prefixes`, see full_name_matches) is in a registry of those and starts with the
        rest of `q`; found through the trigram index of image names (migration 0015) rather
        than by reading every image."""
        in_registries: ColumnElement[bool] = Image.registry_id.in_(ids)
        named: ColumnElement[bool] = _contains(Image.name, q)
        if len(q) >= TRIGRAM:
            # Driven from the trigram index: `registry_id + 0` keeps the planner from walking
            # the registries' images instead, testing each.
            in_registries = (Image.registry_id + 0).in_(ids)
            if self.db.url.startswith("sqlite"):
                named = and_(Image.id.in_(_name_search("images_search", q)), named)
        matches = [named]
        matches += [
            and_(Image.registry_id == registry_id, Image.name.startswith(rest, autoescape=True))
            for registry_id, rest in prefixes
        ]
        chosen = select(Image.id).where(in_registries, _TAGGED, or_(*matches))
        if self.db.url.startswith("postgresql"):
            return _found_first(chosen, Image.id)
        return chosen

    async def get_image(self, registry: str, image: str) -> ImageView:
        await self.usage.settle()
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    self._image_query(Registry.name == registry).where(Image.name == image)
                )
            ).first()
        if row is None:
            raise NotFound(
                f"image {registry}/{image} does not exist", detail={"image": f"{registry}/{image}"}
            )
        return ImageView(*row)

    async def delete_image(self, registry: str, image: str, *, immutable_too: bool = False) -> None:
        """All its tags and manifests go with it; refused when one of its tags is immutable,
        unless `immutable_too` (the caller may delete immutable tags)."""
        await self.get_image(registry, image)
        await self.db.transaction(lambda conn: _delete_image(conn, registry, image, immutable_too))

    async def list_tags(
        self,
        registry: str,
        image: str,
        *,
        q: str | None = None,
        sort: str | None = None,
        page: Page = Page(),
    ) -> tuple[list[TagView], Total, Key | None]:
        """Without `q` the total is the image's maintained tag count. Last, the key of the
        page's last row when more rows follow."""
        found = await self.get_image(registry, image)
        reference_size = (
            select(func.coalesce(func.sum(ManifestReference.size), 0).cast(BigInteger))
            .where(ManifestReference.manifest_id == Manifest.id)
            .correlate(Manifest)
            .scalar_subquery()
        )
        image_id = (
            select(Image.id)
            .join(Registry, Registry.id == Image.registry_id)
            .where(Registry.name == registry, Image.name == image)
            .scalar_subquery()
        )
        # The page is chosen on the image's tags alone (the default sort walks
        # ix_tags_image_created), and only its rows get the manifest's columns and size.
        chosen = select(Tag.id).where(Tag.image_id == image_id)
        if q and self.db.url.startswith("sqlite") and len(q) >= TRIGRAM:
            chosen = select(Tag.id).where(
                Tag.id.in_(_name_search("tags_search", q)), Tag.image_id + 0 == image_id
            )
        elif q:
            if len(q) >= TRIGRAM:  # through pg_trgm, not a walk of the image's tags
                chosen = select(Tag.id).where(Tag.image_id + 0 == image_id)
            chosen = chosen.where(_contains(Tag.name, q))
            if self.db.url.startswith("postgresql"):
                chosen = _found_first(chosen, Tag.id)
        order = parse_sort(sort, TAG_SORTS, "-created_at", then=(Tag.id,))
        field, descending = _sort_field(sort, TAG_SORTS, "-created_at")
        keys = (TAG_SORTS[field], Tag.id)
        async with self.db.read(offload=True) as conn:
            if q:
                total = await _count_matches(conn, chosen)
            else:
                total = Total(found.tag_count)
            if page.after is not None:
                after = _decode_key(page.after, field, 1)
                chosen = chosen.where(_beyond(keys, after, descending))
            page_ids = chosen.order_by(*order).offset(page.offset).limit(page.size + 1)
            page_ids = page_ids.subquery()
            query = (
                select(
                    Tag.name,
                    Manifest.digest,
                    Manifest.media_type,
                    Manifest.size + reference_size,
                    Tag.pull_count,
                    Tag.created_at,
                    Manifest.id,
                    *keys,
                )
                .select_from(page_ids)
                .join(Tag, Tag.id == page_ids.c.id)
                .join(Manifest, Manifest.id == Tag.manifest_id)
            )
            rows, following = _last_key(
                (await conn.execute(query.order_by(*order))).all(), page, len(keys)
            )
            manifest_ids = {row[6] for row in rows}
            platforms: dict[int, list[str]] = {}
            if manifest_ids:
                for manifest_id, platform in (
                    await conn.execute(
                        select(ManifestReference.manifest_id, ManifestReference.platform)
                        .where(
                            ManifestReference.manifest_id.in_(manifest_ids),
                            ManifestReference.kind == "manifest",
                            ManifestReference.platform.is_not(None),
                        )
                        .order_by(ManifestReference.manifest_id, ManifestReference.position)
                    )
                ).all():
                    platforms.setdefault(manifest_id, []).append(platform)
            sizes = await conn.run_sync(lambda sync: tree_sizes(sync, manifest_ids))
        return (
            [
                TagView(
                    *row[:3],
                    sizes.get(row[6], row[3]),
                    *row[4:6],
                    platforms=platforms.get(row[6], []),
                )
                for row in rows
            ],
            total,
            following,
        )

    async def delete_tag(
        self, registry: str, image: str, tag: str, *, immutable_too: bool = False
    ) -> bool:
        """Delete a tag; True when it was the image's last, and the image went with it. An
        immutable tag only with `immutable_too` (the caller may delete immutable tags)."""

        def work(conn: Connection) -> int:
            image_id = conn.scalar(
                select(Image.id)
                .join(Registry, Registry.id == Image.registry_id)
                .where(Registry.name == registry, Image.name == image)
            )
            if image_id is not None:  # and its registry: the last tag changes its count
                locks.images_with_registries(conn, [image_id])
            if not immutable_too and image_id is not None:
                refuse_deleting(conn, [image_id], [tag])
            result = conn.execute(delete(Tag).where(Tag.image_id == image_id, Tag.name == tag))
            if not result.rowcount:
                raise NotFound(
                    f"tag {tag!r} does not exist in {registry}/{image}", detail={"tag": tag}
                )
            return conn.scalar(select(func.count(Tag.id)).where(and_(Tag.image_id == image_id)))

        return not await self.db.transaction(work)


def _delete_image(conn: Connection, registry: str, image: str, immutable_too: bool) -> None:
    """Locks in the order of db/database.py: the registry, the image (`FOR UPDATE`: it goes),
    the blob-level usage rows it holds; then the deletes."""
    registry_id = select(Registry.id).where(Registry.name == registry).scalar_subquery()
    doomed = select(Image.id).where(Image.registry_id == registry_id, Image.name == image)
    image_ids = list(conn.scalars(doomed).all())
    locks.images_with_registries(conn, image_ids, delete=True)
    if not immutable_too:
        refuse_deleting(conn, image_ids, None)
    lock_for_images(conn, image_ids)
    conn.execute(candidates.of_images(conn.dialect.name, image_ids))
    remove_images(conn, image_ids)
    conn.execute(delete(Image).where(Image.id.in_(image_ids)))
