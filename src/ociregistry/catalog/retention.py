"""Retention policies and the plans they make (issue 14, point 3), as pure functions: no
database, no clock of their own, so what a plan says can be tested on any tag set.

A policy is a list of rules. Each rule selects tags by image and tag patterns (shell-style,
with exclusions) and keeps some of those it selects, per image: the N most recently pushed,
the N most recently pulled (tags never pulled are not among them), those pushed or pulled
within D days, or all of them. A tag is kept when some rule keeps it; what no rule keeps is
deleted. Tags an immutable rule of the registry covers are skipped (kept, and not counted
among any rule's N) unless the policy opts in with `include_immutable`. A policy without
rules keeps everything: retention is off.

Manifests follow their tags: a manifest is deleted when it had tags and every one of them is
deleted, and an untagged one only with `delete_untagged`; but a manifest that a kept manifest
needs (the child of a kept index, or the subject of a kept referrer) is kept, and a referrer
of a kept manifest too. Deleting a tag never deletes another tag sharing its digest: the plan
deletes tags, and a manifest only once nothing keeps it.

The plan lists every manifest once, with its tags beside it (tags sharing a digest together),
each with its verdict, the reason and the rule (1-based) that decided it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from ociregistry.catalog.immutable import rule_for
from ociregistry.errors import InvalidArgument

MAX_RULES = 20
MAX_PATTERNS = 20
MAX_COUNT = 100_000
MAX_DAYS = 36_500
MAX_EVERY_HOURS = 24 * 31
KEEP_COUNT = {"latest_pushed", "latest_pulled"}  # these take `count`
KEEP_DAYS = {"pushed_within", "pulled_within"}  # these take `days`
KEEPS = (*sorted(KEEP_COUNT), *sorted(KEEP_DAYS), "always")
_IMAGE_PATTERN = re.compile(r"[a-z0-9._/*?\[\]!-]{1,255}")
_TAG_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")
_CLASS = re.compile(r"\[!?[^\[\]]+\]")  # one `[...]` class, as fnmatch reads it
_DAILY_AT = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")

KEEP, DELETE = "keep", "delete"
# Why an item got its verdict: stable words the console translates.
BY_RULE = "rule"  # a rule keeps this tag
NO_RULE = "no_rule"  # no rule keeps this tag
IMMUTABLE = "immutable"  # an immutable rule covers this tag, and the policy does not opt in
OFF = "off"  # the policy has no rules
TAG_KEPT = "tag_kept"  # a manifest one of whose tags is kept
NEEDED = "needed"  # a manifest a kept manifest needs (index child, referrer's subject)
REFERRER = "referrer"  # a referrer of a kept manifest
TAGS_DELETED = "tags_deleted"  # a manifest every tag of which is deleted
UNTAGGED = "untagged"  # an untagged manifest: deleted with `delete_untagged`, else kept


def _bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, detail={"field": field})


def _patterns(value: Any, field: str, shape: re.Pattern[str], default: list[str]) -> list[str]:
    if value is None:
        return list(default)
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise _bad(field, f"{field} must be a list of at most {MAX_PATTERNS} patterns")
    for pattern in value:
        if not isinstance(pattern, str) or not shape.fullmatch(pattern):
            raise _bad(
                field,
                f"{field}: {pattern!r} is not a pattern: use the characters of a name and the "
                "wildcards '*', '?', '[...]'",
            )
        if "[" in _CLASS.sub("", pattern) or "]" in _CLASS.sub("", pattern):
            raise _bad(field, f"{field}: {pattern!r} has an unclosed or empty '[...]' class")
    return list(dict.fromkeys(value))


def _number(rule: dict[str, Any], name: str, where: str, most: int) -> int:
    value = rule.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise _bad(f"{where}.{name}", f"{where}.{name} must be a whole number from 1 to {most}")
    return value


def check_rule(rule: Any, index: int) -> dict[str, Any]:
    where = f"rules[{index}]"
    if not isinstance(rule, dict):
        raise _bad(where, f"{where} must be an object")
    known = {"images", "exclude_images", "tags", "exclude_tags", "keep", "count", "days"}
    unknown = sorted(set(rule) - known)
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", f"{where} has an unknown field {unknown[0]!r}")
    keep = rule.get("keep")
    if keep not in KEEPS:
        raise _bad(f"{where}.keep", f"{where}.keep must be one of {', '.join(KEEPS)}")
    checked: dict[str, Any] = {
        "images": _patterns(rule.get("images"), f"{where}.images", _IMAGE_PATTERN, ["*"]),
        "exclude_images": _patterns(
            rule.get("exclude_images"), f"{where}.exclude_images", _IMAGE_PATTERN, []
        ),
        "tags": _patterns(rule.get("tags"), f"{where}.tags", _TAG_PATTERN, ["*"]),
        "exclude_tags": _patterns(
            rule.get("exclude_tags"), f"{where}.exclude_tags", _TAG_PATTERN, []
        ),
        "keep": keep,
    }
    if keep in KEEP_COUNT:
        checked["count"] = _number(rule, "count", where, MAX_COUNT)
    elif "count" in rule:
        raise _bad(f"{where}.count", f"{where}.count goes only with {' or '.join(KEEP_COUNT)}")
    if keep in KEEP_DAYS:
        checked["days"] = _number(rule, "days", where, MAX_DAYS)
    elif "days" in rule:
        raise _bad(f"{where}.days", f"{where}.days goes only with {' or '.join(KEEP_DAYS)}")
    return checked


def check_schedule(value: Any) -> dict[str, Any] | None:
    """None (no schedule), `{"daily_at": "HH:MM"}` (UTC) or `{"every_hours": N}`."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"daily_at"}:
        if isinstance(value["daily_at"], str) and _DAILY_AT.fullmatch(value["daily_at"]):
            return {"daily_at": value["daily_at"]}
        raise _bad("schedule.daily_at", "schedule.daily_at must be a time HH:MM (UTC)")
    if isinstance(value, dict) and set(value) == {"every_hours"}:
        hours = value["every_hours"]
        if not isinstance(hours, bool) and isinstance(hours, int) and 1 <= hours <= MAX_EVERY_HOURS:
            return {"every_hours": hours}
        raise _bad(
            "schedule.every_hours",
            f"schedule.every_hours must be a whole number from 1 to {MAX_EVERY_HOURS}",
        )
    raise _bad("schedule", 'schedule must be null, {"daily_at": "HH:MM"} or {"every_hours": N}')


def check_policy(body: Any) -> dict[str, Any]:
    """A policy as the API takes it, checked and with its defaults filled in; a bad field is
    INVALID_ARGUMENT naming it."""
    if not isinstance(body, dict):
        raise _bad("policy", "the policy must be a JSON object")
    known = {"rules", "delete_untagged", "include_immutable", "schedule"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise _bad(unknown[0], f"unknown field {unknown[0]!r}")
    rules = body.get("rules", [])
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise _bad("rules", f"rules must be a list of at most {MAX_RULES} rules")
    flags = {}
    for flag in ("delete_untagged", "include_immutable"):
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise _bad(flag, f"{flag} must be true or false")
        flags[flag] = value
    return {
        "rules": [check_rule(rule, i) for i, rule in enumerate(rules)],
        **flags,
        "schedule": check_schedule(body.get("schedule")),
    }


def describe(rule: dict[str, Any]) -> str:
    """A rule in words, for plans and the CLI."""
    keep = {
        "latest_pushed": f"the {rule.get('count')} most recently pushed",
        "latest_pulled": f"the {rule.get('count')} most recently pulled",
        "pushed_within": f"those pushed within {rule.get('days')} days",
        "pulled_within": f"those pulled within {rule.get('days')} days",
        "always": "all",
    }[rule["keep"]]
    text = f"keep {keep} of tags {', '.join(rule['tags'])}"
    if rule["exclude_tags"]:
        text += f" except {', '.join(rule['exclude_tags'])}"
    text += f" in images {', '.join(rule['images'])}"
    if rule["exclude_images"]:
        text += f" except {', '.join(rule['exclude_images'])}"
    return text


# -- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagFacts:
    image: str
    name: str
    digest: str
    pushed_at: datetime
    pulled_at: datetime | None


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    image: str
    digest: str
    media_type: str
    created_at: datetime
    children: tuple[str, ...] = ()  # an index's child manifests
    subject: str | None = None  # a referrer's subject


def stamp(moment: datetime | None) -> str | None:
    """A stored time as the plan writes it (RFC 3339, UTC, microseconds), so that a re-check
    compares strings, whatever zone the database handed the time back in."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _matches(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in include) and not any(
        fnmatchcase(name, p) for p in exclude
    )


def _kept_by(rule: dict[str, Any], tags: list[TagFacts], now: datetime) -> set[TagFacts]:
    """The tags of one image that `rule` keeps, of the (unprotected) `tags` of that image."""
    chosen = [
        t
        for t in tags
        if _matches(t.image, rule["images"], rule["exclude_images"])
        and _matches(t.name, rule["tags"], rule["exclude_tags"])
    ]
    keep = rule["keep"]
    if keep == "always":
        return set(chosen)
    if keep == "latest_pushed":
        ordered = sorted(chosen, key=lambda t: (-t.pushed_at.timestamp(), t.name))
        return set(ordered[: rule["count"]])
    if keep == "latest_pulled":
        pulled = [t for t in chosen if t.pulled_at is not None]
        ordered = sorted(pulled, key=lambda t: (-t.pulled_at.timestamp(), t.name))  # type: ignore[union-attr]
        return set(ordered[: rule["count"]])
    since = now - timedelta(days=rule["days"])
    if keep == "pushed_within":
        return {t for t in chosen if t.pushed_at >= since}
    return {t for t in chosen if t.pulled_at is not None and t.pulled_at >= since}


def tag_verdicts(
    policy: dict[str, Any],
    tags: Iterable[TagFacts],
    immutable_patterns: Sequence[str],
    now: datetime,
) -> dict[TagFacts, tuple[str, str, int | None]]:
    """Each tag's (verdict, reason, rule number)."""
    verdicts: dict[TagFacts, tuple[str, str, int | None]] = {}
    by_image: dict[str, list[TagFacts]] = {}
    for tag in tags:
        if not policy["rules"]:
            verdicts[tag] = (KEEP, OFF, None)
        elif not policy["include_immutable"] and rule_for(immutable_patterns, tag.name):
            verdicts[tag] = (KEEP, IMMUTABLE, None)
        else:
            by_image.setdefault(tag.image, []).append(tag)
    for image_tags in by_image.values():
        for tag in image_tags:
            verdicts[tag] = (DELETE, NO_RULE, None)
        for number, rule in reversed(list(enumerate(policy["rules"], start=1))):
            for tag in _kept_by(rule, image_tags, now):  # the lowest rule number wins
                verdicts[tag] = (KEEP, BY_RULE, number)
    return verdicts


def make_plan(
    policy: dict[str, Any],
    manifests: Sequence[ManifestFacts],
    tags: Sequence[TagFacts],
    immutable_patterns: Sequence[str],
    now: datetime,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The plan's items, one per manifest with its tags, and a summary of the counts."""
    verdicts = tag_verdicts(policy, tags, immutable_patterns, now)
    tags_of: dict[tuple[str, str], list[TagFacts]] = {}
    for tag in tags:
        tags_of.setdefault((tag.image, tag.digest), []).append(tag)
    by_key = {(m.image, m.digest): m for m in manifests}
    needs: dict[tuple[str, str], set[tuple[str, str]]] = {}  # manifest -> what keeping it keeps
    for m in manifests:
        key = (m.image, m.digest)
        for child in m.children:
            needs.setdefault(key, set()).add((m.image, child))
        if m.subject is not None:
            needs.setdefault(key, set()).add((m.image, m.subject))  # a kept referrer's subject
            needs.setdefault((m.image, m.subject), set()).add(key)  # a kept subject's referrer
    reasons: dict[tuple[str, str], str] = {}
    # Index children and referrers follow what they belong to; the rest are roots.
    dependent = {(m.image, c) for m in manifests for c in m.children} | {
        (m.image, m.digest) for m in manifests if (m.image, m.subject) in by_key
    }
    for key in by_key:
        own = tags_of.get(key, [])
        if any(verdicts[t][0] == KEEP for t in own):
            reasons[key] = TAG_KEPT
        elif not own and not policy["rules"]:
            reasons[key] = OFF
        elif not own and not policy["delete_untagged"] and key not in dependent:
            reasons[key] = UNTAGGED
    # What a kept manifest needs is kept, transitively.
    pending = list(reasons)
    while pending:
        for needed in needs.get(pending.pop(), ()):
            if needed in by_key and needed not in reasons:
                subject = by_key[needed].subject
                reasons[needed] = (
                    REFERRER if subject is not None and (needed[0], subject) in reasons else NEEDED
                )
                pending.append(needed)
    items: list[dict[str, Any]] = []
    summary = {"manifests_kept": 0, "manifests_deleted": 0, "tags_kept": 0, "tags_deleted": 0}
    for key in sorted(by_key):
        m = by_key[key]
        own = sorted(tags_of.get(key, []), key=lambda t: t.name)
        if key in reasons:
            verdict, reason = KEEP, reasons[key]
        else:
            verdict, reason = DELETE, TAGS_DELETED if own else UNTAGGED
        summary[f"manifests_{'kept' if verdict == KEEP else 'deleted'}"] += 1
        tag_items = []
        for tag in own:
            tag_verdict, tag_reason, number = verdicts[tag]
            summary[f"tags_{'kept' if tag_verdict == KEEP else 'deleted'}"] += 1
            tag_items.append(
                {
                    "name": tag.name,
                    "pushed_at": stamp(tag.pushed_at),
                    "pulled_at": stamp(tag.pulled_at),
                    "verdict": tag_verdict,
                    "reason": tag_reason,
                    "rule": number,
                }
            )
        items.append(
            {
                "image": m.image,
                "digest": m.digest,
                "media_type": m.media_type,
                "created_at": stamp(m.created_at),
                "verdict": verdict,
                "reason": reason,
                "tags": tag_items,
            }
        )
    return items, summary


# -- the schedule ----------------------------------------------------------------------------


def schedule_due(
    schedule: dict[str, Any] | None,
    last_run: datetime | None,
    policy_set_at: datetime,
    now: datetime,
) -> bool:
    """Whether a scheduled plan is due now. Every N hours: at once after the schedule is set,
    then N hours after the last run. Daily at HH:MM (UTC): at the first such time after the
    schedule was set or last ran."""
    if schedule is None:
        return False
    if "every_hours" in schedule:
        return last_run is None or now - last_run >= timedelta(hours=schedule["every_hours"])
    hour, minute = (int(part) for part in schedule["daily_at"].split(":"))
    latest = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if latest > now:
        latest -= timedelta(days=1)
    return latest > max(last_run or policy_set_at, policy_set_at)
