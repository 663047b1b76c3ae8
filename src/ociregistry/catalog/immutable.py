"""Immutable tags (issue 14, point 4): a registry's `immutable_tags` patterns (`v*`,
`release-*`, shell-style) name tags that, once pushed, never point at another manifest.

Overwrite protection is enforced in the database: such a tag is written by an upsert whose
update only happens when the stored tag already points at the same manifest, so the check and
the write are one statement and two pushes racing on different instances cannot both win.
Pushing the same digest again succeeds.

It is not deletion protection for everyone: the registry's owners and platform admins may
delete an immutable tag (the access policy says who, `may_delete_immutable`); developers may
not, whichever way they try (a tag, the manifest it points at, the whole image).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ociregistry.db.database import execute_on_driver
from ociregistry.db.models import Image, Manifest, Registry, Tag
from ociregistry.errors import ImmutableTag, NameInvalid

MAX_PATTERNS = 20
# What a tag may hold, plus the wildcards `*`, `?` and classes `[...]`.
_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")


def check_patterns(value: object) -> list[str]:
    """The `immutable_tags` list: at most 20 shell-style patterns of tag characters and
    `* ? [ ]` (a bad one is INVALID_ARGUMENT in the API)."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_PATTERNS
        or not all(isinstance(p, str) and _PATTERN.fullmatch(p) for p in value)
    ):
        raise NameInvalid(
            f"immutable_tags must be a list of at most {MAX_PATTERNS} tag patterns of "
            "1-128 characters: letters, digits, '_', '.', '-' and the wildcards '*', '?', "
            "'[...]'",
            detail={"field": "immutable_tags"},
        )
    return list(dict.fromkeys(value))


def rule_for(patterns: Sequence[str] | None, tag: str) -> str | None:
    """The first pattern that makes `tag` immutable, or None."""
    for pattern in patterns or ():
        if fnmatchcase(tag, pattern):
            return pattern
    return None


_PATTERNS = select(Registry.immutable_tags).where(Registry.id == bindparam("registry_id"))


def registry_patterns(conn: Connection, registry_id: int) -> list[str]:
    return conn.scalar(_PATTERNS, {"registry_id": registry_id}) or []


@cache
def _write_tag_statement(dialect: str, immutable: bool) -> Any:
    """Insert a tag or re-point it, RETURNING its id when it was written: an immutable tag
    only ever at the manifest it points at already."""
    table = Tag.__table__
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    insert = insert.values(
        image_id=bindparam("t_image_id"),
        name=bindparam("t_name"),
        manifest_id=bindparam("t_manifest_id"),
        pull_count=bindparam("t_pull_count"),
        created_at=bindparam("t_created_at"),
    )
    return insert.on_conflict_do_update(
        index_elements=["image_id", "name"],
        set_={"manifest_id": insert.excluded.manifest_id, "created_at": insert.excluded.created_at},
        where=(table.c.manifest_id == insert.excluded.manifest_id) if immutable else None,
    ).returning(table.c.id)


def write_tag(conn: Connection, params: dict[str, Any], rule: str | None, where: str) -> None:
    """Point a tag at a manifest (insert or move it), in one statement compiled once (run on
    the driver on SQLite). When `rule` makes the tag immutable, it is only ever inserted or
    re-pointed at the same manifest; anything else is refused with 403 DENIED naming the tag
    and the rule."""
    statement = _write_tag_statement(conn.dialect.name, rule is not None)
    written = execute_on_driver(conn, statement, {f"t_{k}": v for k, v in params.items()})
    if written or rule is None:
        return
    current = conn.scalar(
        select(Manifest.digest)
        .join(Tag, Tag.manifest_id == Manifest.id)
        .where(Tag.image_id == params["image_id"], Tag.name == params["name"])
    )
    raise ImmutableTag(
        f"tag {params['name']} of {where} is immutable (rule {rule!r} of the registry): it "
        f"points at {current} and cannot be moved; push under a new tag",
        detail={"tag": params["name"], "rule": rule, "digest": current},
    )


def refuse_deleting(
    conn: Connection,
    image_ids: Iterable[int],
    tags: Iterable[str] | None,
    manifest_id: int | None = None,
) -> None:
    """Refuse (403 DENIED) when the tags a deletion would remove include an immutable one:
    the named `tags`, the tags of `manifest_id`, or else every tag of the images."""
    ids = list(image_ids)
    if not ids:
        return
    query = (
        select(Tag.name, Registry.immutable_tags, Registry.name, Image.name)
        .join(Image, Image.id == Tag.image_id)
        .join(Registry, Registry.id == Image.registry_id)
        .where(Tag.image_id.in_(ids))
    )
    if tags is not None:
        query = query.where(Tag.name.in_(list(tags)))
    if manifest_id is not None:
        query = query.where(Tag.manifest_id == manifest_id)
    for tag, patterns, registry, image in conn.execute(query):
        rule = rule_for(patterns, tag)
        if rule is not None:
            raise ImmutableTag(
                f"tag {tag} of {registry}/{image} is immutable (rule {rule!r}); only the "
                "registry's owners and platform admins may delete it",
                detail={"tag": tag, "rule": rule},
            )
