"""Retention (issue 14, point 3) in the database: a registry's policy, its stored plans,
applying a plan, and the schedule. What a plan says is computed by catalog/retention.py.

A dry run reads every manifest and tag of the registry once and stores the plan; nothing is
deleted. Applying plan N executes exactly that plan, in transactions of `APPLY_BATCH` items,
each item re-checked first: a tag deleted only if it still points at the planned
digest and was not pushed since (else it is kept and reported), a manifest only when no tag
points at it and no other manifest needs it (catalog/images.py `delete_unneeded_manifest`).
A plan is applied once: the first apply claims it by compare-and-set, a second gets 409
(saying whether the plan is being applied or was).

An apply survives a crash. Each batch's transaction also records the batch's outcomes in the
plan (`result.progress`, one letter per item) and moves the plan's heartbeat (`applied_at`,
while `applying`) by compare-and-set: an applier whose heartbeat someone else moved has lost
the plan, and its batch rolls back with the failed write. A plan left `applying` by a killed
process (no heartbeat for `stale_seconds`, the job lease's length) is taken over by the
background job, under its lease, and finished from where the progress says; its result then
says `resumed`, and counts what was done before the crash too.

The schedule runs as one background job under the job lease (catalog/leases.py, started in
app.py); each registry's due run is also claimed in a transaction that moves its
`last_scheduled_at`, so a run never happens twice. Each registry keeps its last `PLANS_KEPT`
plans for inspection.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from ociregistry.catalog.audit import AuditLog, AuditRecord
from ociregistry.catalog.images import delete_unneeded_manifest
from ociregistry.catalog.immutable import rule_for
from ociregistry.catalog.retention import (
    DELETE,
    ManifestFacts,
    TagFacts,
    check_policy,
    make_plan,
    schedule_due,
    stamp,
)
from ociregistry.catalog.usage import lock_for_manifests
from ociregistry.db import locks
from ociregistry.db.database import Database
from ociregistry.db.models import (
    Image,
    Manifest,
    ManifestReference,
    Registry,
    RetentionPlan,
    RetentionPolicy,
    Tag,
    as_utc,
    utcnow,
)
from ociregistry.errors import NotFound, PlanApplied
from ociregistry.names import RepositoryName

APPLY_BATCH = 50  # items re-checked and deleted per transaction: short write-lock holds
PLANS_KEPT = 20  # per registry, the newest; older plans go when a new one is made
SCHEDULE_ACTOR = "retention-schedule"
EMPTY_POLICY: dict[str, Any] = check_policy({})
log = logging.getLogger("ociregistry.retention")

# What happens to a tag or manifest of the plan when it is applied.
DELETED, GONE, MOVED, PUSHED = "deleted", "gone", "moved", "pushed_since"
IMMUTABLE_NOW = "immutable"
TAGGED, REFERENCED = "tagged", "referenced"
# An item's outcome as one letter of `result.progress`; "." is a manifest still to be done.
_CODES = {
    DELETED: "d",
    GONE: "g",
    MOVED: "m",
    PUSHED: "p",
    IMMUTABLE_NOW: "i",
    TAGGED: "t",
    REFERENCED: "r",
}
_OUTCOMES = {code: outcome for outcome, code in _CODES.items()}
PENDING = "."
# Tests only: seconds to wait after each batch of an apply, so that a test can kill the
# server mid-apply (tests/api/test_retention_crash.py). Not a setting: 0 in production.
_PAUSE_SECONDS = float(os.environ.get("OCIREGISTRY_TEST_RETENTION_BATCH_PAUSE", "0") or 0)


class _LostPlan(Exception):
    """Another applier took the plan over (this one was taken for dead): stop, undo the
    batch in hand."""


def _shown_result(status: str, result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The result as the API shows it: while applying, the counts so far, from the progress
    letters the batches record (see `_execute`)."""
    if status != "applying" or result is None:
        return result
    progress = result.get("progress") or {}
    tags, manifests = progress.get("tags", ""), progress.get("manifests", "")
    return {
        "items_done": len(tags) + len(manifests) - manifests.count(PENDING),
        "tags_deleted": tags.count(_CODES[DELETED]),
        "manifests_deleted": manifests.count(_CODES[DELETED]),
        "kept": [],
    }


def _plan_json(row: Any, registry: str, *, items: bool = True) -> dict[str, Any]:
    plan = {
        "id": row.id,
        "registry": registry,
        "created_at": stamp(row.created_at),
        "created_by": row.created_by,
        "trigger": row.trigger,
        "status": row.status,
        "policy": row.policy,
        "summary": row.summary,
        # While applying, the column holds the applier's heartbeat, not a time to show.
        "applied_at": stamp(row.applied_at) if row.status == "applied" else None,
        "applied_by": row.applied_by,
        "result": _shown_result(row.status, row.result),
    }
    if items:
        plan["items"] = row.items
    return plan


def _apply_tags(
    conn: Connection, registry: str, batch: list[tuple[dict, dict]], policy: dict
) -> list[str]:
    """Delete a batch of planned tags, their registry and images locked first, by id (the
    lock order of db/database.py: an image's last tag changes its registry's image count);
    the outcome of each."""
    images = sorted({item["image"] for item, _ in batch})
    found = select(Image.id).join(Registry, Registry.id == Image.registry_id)
    found = found.where(Registry.name == registry, Image.name.in_(images))
    locks.images_with_registries(conn, conn.scalars(found).all())
    return [_delete_planned_tag(conn, registry, item, tag, policy) for item, tag in batch]


def _apply_manifests(conn: Connection, registry: str, batch: list[dict[str, Any]]) -> list[str]:
    """Delete a batch of planned manifests, after locking what that changes in the order of
    db/database.py: the registry, its images by id, then the blob-level usage rows; the
    outcome of each."""
    found = (
        select(Manifest.id, Manifest.image_id, Image.name, Manifest.digest)
        .join(Image, Image.id == Manifest.image_id)
        .join(Registry, Registry.id == Image.registry_id)
        .where(
            Registry.name == registry,
            Image.name.in_(sorted({item["image"] for item in batch})),
            Manifest.digest.in_(sorted({item["digest"] for item in batch})),
        )
    )
    wanted = {(item["image"], item["digest"]) for item in batch}
    rows = [row for row in conn.execute(found) if (row[2], row[3]) in wanted]
    locks.images_with_registries(conn, [row[1] for row in rows])
    lock_for_manifests(conn, [row[0] for row in rows])
    return [
        delete_unneeded_manifest(conn, RepositoryName(registry, item["image"]), item["digest"])
        for item in batch
    ]


def _delete_planned_tag(
    conn: Connection, registry: str, item: dict[str, Any], tag: dict[str, Any], policy: dict
) -> str:
    """Delete one tag of the plan if it is as planned; else say why it stays."""
    row = conn.execute(
        select(Tag.id, Manifest.digest, Tag.created_at, Registry.immutable_tags)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .join(Image, Image.id == Tag.image_id)
        .join(Registry, Registry.id == Image.registry_id)
        .where(Registry.name == registry, Image.name == item["image"], Tag.name == tag["name"])
        .with_for_update(of=Tag)
    ).first()
    if row is None:
        return GONE
    tag_id, digest, pushed_at, immutable_patterns = row
    if digest != item["digest"]:
        return MOVED
    if stamp(as_utc(pushed_at)) != tag["pushed_at"]:
        return PUSHED
    if not policy["include_immutable"] and rule_for(immutable_patterns, tag["name"]):
        return IMMUTABLE_NOW
    conn.execute(delete(Tag).where(Tag.id == tag_id))
    return DELETED


def _due(policy: dict[str, Any], set_at: Any, last_run: Any, now: Any) -> bool:
    return bool(policy.get("rules")) and schedule_due(
        policy.get("schedule"), as_utc(last_run), as_utc(set_at) or now, now
    )


class Retention:
    """Policies, plans and their application, for the API, the CLI and the schedule."""

    def __init__(
        self, db: Database, audit: AuditLog | None = None, *, stale_seconds: float = 120
    ) -> None:
        self.db = db
        self.audit = audit
        # An apply whose heartbeat is older than this is taken for dead (the job lease's length).
        self.stale_seconds = stale_seconds

    async def _registry_id(self, registry: str) -> int:
        async with self.db.read() as conn:
            found = await conn.scalar(
                select(Registry.id).where(Registry.name == registry, Registry.status == "available")
            )
        if found is None:
            raise NotFound(f"registry {registry!r} does not exist", detail={"name": registry})
        return found

    # -- the policy ------------------------------------------------------------------------

    async def get_policy(self, registry: str) -> dict[str, Any]:
        registry_id = await self._registry_id(registry)
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        RetentionPolicy.policy,
                        RetentionPolicy.updated_at,
                        RetentionPolicy.updated_by,
                        RetentionPolicy.last_scheduled_at,
                    ).where(RetentionPolicy.registry_id == registry_id)
                )
            ).first()
        policy, updated_at, updated_by, last_run = row or (EMPTY_POLICY, None, None, None)
        return {
            **policy,
            "updated_at": stamp(updated_at),
            "updated_by": updated_by,
            "last_scheduled_at": stamp(last_run),
        }

    async def set_policy(self, registry: str, body: Any, actor: str | None) -> dict[str, Any]:
        policy = check_policy(body)
        registry_id = await self._registry_id(registry)
        async with self.db.write() as conn:
            changed = await conn.execute(
                update(RetentionPolicy)
                .where(RetentionPolicy.registry_id == registry_id)
                .values(policy=policy, updated_at=utcnow(), updated_by=actor)
            )
            if not changed.rowcount:
                await conn.execute(
                    RetentionPolicy.__table__.insert().values(
                        registry_id=registry_id,
                        policy=policy,
                        updated_at=utcnow(),
                        updated_by=actor,
                    )
                )
        return await self.get_policy(registry)

    # -- plans -----------------------------------------------------------------------------

    async def make_plan(
        self, registry: str, actor: str | None, *, trigger: str = "manual"
    ) -> dict[str, Any]:
        """A dry run: the plan of what the policy would keep and delete now, stored."""
        registry_id = await self._registry_id(registry)
        stored = await self.get_policy(registry)
        policy = {key: stored[key] for key in EMPTY_POLICY}
        now = utcnow()
        async with self.db.read(offload=True) as conn:
            patterns = await conn.scalar(
                select(Registry.immutable_tags).where(Registry.id == registry_id)
            )
            manifest_rows = (
                await conn.execute(
                    select(
                        Manifest.id,
                        Image.name,
                        Manifest.digest,
                        Manifest.media_type,
                        Manifest.created_at,
                        Manifest.subject,
                    )
                    .join(Image, Image.id == Manifest.image_id)
                    .where(Image.registry_id == registry_id)
                )
            ).all()
            child_rows = (
                await conn.execute(
                    select(ManifestReference.manifest_id, ManifestReference.digest)
                    .join(Manifest, Manifest.id == ManifestReference.manifest_id)
                    .join(Image, Image.id == Manifest.image_id)
                    .where(Image.registry_id == registry_id, ManifestReference.kind == "manifest")
                )
            ).all()
            tag_rows = (
                await conn.execute(
                    select(
                        Image.name, Tag.name, Manifest.digest, Tag.created_at, Tag.last_pulled_at
                    )
                    .join(Tag, Tag.image_id == Image.id)
                    .join(Manifest, Manifest.id == Tag.manifest_id)
                    .where(Image.registry_id == registry_id)
                )
            ).all()
        children: dict[int, list[str]] = {}
        for manifest_id, digest in child_rows:
            children.setdefault(manifest_id, []).append(digest)
        manifests = [
            ManifestFacts(
                image, digest, media_type, as_utc(created), tuple(children.get(i, ())), subject
            )
            for i, image, digest, media_type, created, subject in manifest_rows
        ]
        tags = [
            TagFacts(image, name, digest, as_utc(pushed), as_utc(pulled))
            for image, name, digest, pushed, pulled in tag_rows
        ]
        items, summary = make_plan(policy, manifests, tags, patterns or [], now)
        async with self.db.write() as conn:
            plan_id = (
                await conn.execute(
                    RetentionPlan.__table__.insert()
                    .values(
                        registry_id=registry_id,
                        created_at=now,
                        created_by=actor,
                        trigger=trigger,
                        status="planned",
                        policy=policy,
                        items=items,
                        summary=summary,
                    )
                    .returning(RetentionPlan.id)
                )
            ).scalar_one()
            kept = (
                select(RetentionPlan.id)
                .where(RetentionPlan.registry_id == registry_id)
                .order_by(RetentionPlan.id.desc())
                .limit(PLANS_KEPT)
            )
            await conn.execute(
                delete(RetentionPlan).where(
                    RetentionPlan.registry_id == registry_id,
                    RetentionPlan.id.not_in(select(kept.subquery().c.id)),
                )
            )
        return await self.get_plan(registry, plan_id)

    async def _plan_row(self, registry: str, plan_id: int) -> Any:
        registry_id = await self._registry_id(registry)
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(RetentionPlan).where(
                        RetentionPlan.id == plan_id, RetentionPlan.registry_id == registry_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(
                f"registry {registry!r} has no retention plan {plan_id}",
                detail={"plan": plan_id},
            )
        return row

    async def get_plan(self, registry: str, plan_id: int) -> dict[str, Any]:
        return _plan_json(await self._plan_row(registry, plan_id), registry)

    async def list_plans(self, registry: str) -> list[dict[str, Any]]:
        """The registry's kept plans, newest first, without their items."""
        registry_id = await self._registry_id(registry)
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        RetentionPlan.id,
                        RetentionPlan.created_at,
                        RetentionPlan.created_by,
                        RetentionPlan.trigger,
                        RetentionPlan.status,
                        RetentionPlan.policy,
                        RetentionPlan.summary,
                        RetentionPlan.applied_at,
                        RetentionPlan.applied_by,
                        RetentionPlan.result,
                    )
                    .where(RetentionPlan.registry_id == registry_id)
                    .order_by(RetentionPlan.id.desc())
                )
            ).all()
        return [_plan_json(row, registry, items=False) for row in rows]

    async def apply_plan(self, registry: str, plan_id: int, actor: str | None) -> dict[str, Any]:
        """Execute exactly plan `plan_id`, re-checking each item; record what happened."""
        row = await self._plan_row(registry, plan_id)
        heartbeat = utcnow()
        async with self.db.write() as conn:
            claimed = await conn.execute(
                update(RetentionPlan)
                .where(RetentionPlan.id == plan_id, RetentionPlan.status == "planned")
                .values(
                    status="applying",
                    applied_by=actor,
                    applied_at=heartbeat,
                    result={"progress": {"tags": "", "manifests": ""}},
                )
            )
        if claimed.rowcount != 1:
            current = await self._plan_row(registry, plan_id)
            if current.status == "applying":
                raise PlanApplied(
                    f"retention plan {plan_id} of {registry!r} is being applied (started by "
                    f"{current.applied_by or 'the schedule'}); wait for it to finish",
                    detail={"plan": plan_id, "status": current.status},
                )
            raise PlanApplied(
                f"retention plan {plan_id} of {registry!r} was applied already; make a new plan",
                detail={"plan": plan_id, "status": current.status},
            )
        try:
            await self._execute(registry, plan_id, row.policy, row.items, heartbeat, {})
        except _LostPlan:
            log.warning("retention plan %d of %s: taken over by another applier", plan_id, registry)
        return await self.get_plan(registry, plan_id)

    async def _execute(
        self,
        registry: str,
        plan_id: int,
        policy: dict[str, Any],
        items: list[dict[str, Any]],
        heartbeat: datetime,
        progress: dict[str, str],
        *,
        resumed: bool = False,
    ) -> dict[str, Any]:
        """Apply a claimed plan from where `progress` says, in batches that each record their
        outcomes and move the heartbeat; the plan ends `applied`. Raises _LostPlan when
        another applier has taken the plan over."""
        doomed = [(item, tag) for item in items for tag in item["tags"] if tag["verdict"] == DELETE]
        manifests = [item for item in items if item["verdict"] == DELETE]
        tag_codes = progress.get("tags", "")
        manifest_codes = progress.get("manifests") or PENDING * len(manifests)

        def record(conn: Connection, tags: str, manifest_states: str) -> datetime:
            now = utcnow()
            moved = conn.execute(
                update(RetentionPlan)
                .where(
                    RetentionPlan.id == plan_id,
                    RetentionPlan.status == "applying",
                    RetentionPlan.applied_at == heartbeat,
                )
                .values(
                    applied_at=now,
                    result={"progress": {"tags": tags, "manifests": manifest_states}},
                )
            )
            if moved.rowcount != 1:
                raise _LostPlan(plan_id)
            return now

        for start in range(len(tag_codes), len(doomed), APPLY_BATCH):
            batch = doomed[start : start + APPLY_BATCH]

            def delete_tags(
                conn: Connection, batch: Any = batch, done: str = tag_codes
            ) -> tuple[str, datetime]:
                codes = done + "".join(
                    _CODES[outcome] for outcome in _apply_tags(conn, registry, batch, policy)
                )
                return codes, record(conn, codes, manifest_codes)

            tag_codes, heartbeat = await self.db.transaction(delete_tags)
            if _PAUSE_SECONDS:
                await asyncio.sleep(_PAUSE_SECONDS)
        # Manifests: an index or referrer goes before what it names, so retry what another
        # planned manifest still referenced until a pass deletes nothing more.
        while waiting := [i for i, code in enumerate(manifest_codes) if code == PENDING]:
            settled = False
            for start in range(0, len(waiting), APPLY_BATCH):
                batch = waiting[start : start + APPLY_BATCH]

                def delete_manifests(
                    conn: Connection, batch: Any = batch, done: str = manifest_codes
                ) -> tuple[str, datetime]:
                    codes = list(done)
                    outcomes = _apply_manifests(conn, registry, [manifests[i] for i in batch])
                    for i, outcome in zip(batch, outcomes, strict=True):
                        if outcome != REFERENCED:
                            codes[i] = _CODES[outcome]
                    joined = "".join(codes)
                    return joined, record(conn, tag_codes, joined)

                before = manifest_codes
                manifest_codes, heartbeat = await self.db.transaction(delete_manifests)
                settled = settled or manifest_codes != before
                if _PAUSE_SECONDS:
                    await asyncio.sleep(_PAUSE_SECONDS)
            if not settled:  # what is left is referenced by what the plan keeps
                manifest_codes = "".join(
                    _CODES[REFERENCED] if code == PENDING else code for code in manifest_codes
                )
        counts = {"tags_deleted": 0, "manifests_deleted": 0}
        kept: list[dict[str, Any]] = []
        for (item, tag), code in zip(doomed, tag_codes, strict=True):
            tag["outcome"] = outcome = _OUTCOMES[code]
            if outcome == DELETED:
                counts["tags_deleted"] += 1
            elif outcome != GONE:
                kept.append({"image": item["image"], "tag": tag["name"], "reason": outcome})
        for item, code in zip(manifests, manifest_codes, strict=True):
            item["outcome"] = outcome = _OUTCOMES[code]
            if outcome == DELETED:
                counts["manifests_deleted"] += 1
            elif outcome != GONE:
                kept.append({"image": item["image"], "digest": item["digest"], "reason": outcome})
        result: dict[str, Any] = {**counts, "kept": kept}
        if resumed:
            result["resumed"] = True
        async with self.db.write() as conn:
            done = await conn.execute(
                update(RetentionPlan)
                .where(
                    RetentionPlan.id == plan_id,
                    RetentionPlan.status == "applying",
                    RetentionPlan.applied_at == heartbeat,
                )
                .values(status="applied", applied_at=utcnow(), result=result, items=items)
            )
        if done.rowcount != 1:
            raise _LostPlan(plan_id)
        return result

    async def resume_interrupted(self) -> list[tuple[str, int]]:
        """Finish the plans whose applier died mid-apply (no heartbeat for `stale_seconds`):
        take each over by compare-and-set on its heartbeat, so one taker wins, and apply the
        rest of it. Run by the `retention` background job under its lease."""
        stale = utcnow() - timedelta(seconds=self.stale_seconds)
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(RetentionPlan.id, RetentionPlan.applied_at, Registry.name)
                    .join(Registry, Registry.id == RetentionPlan.registry_id)
                    .where(
                        RetentionPlan.status == "applying",
                        or_(RetentionPlan.applied_at.is_(None), RetentionPlan.applied_at < stale),
                    )
                )
            ).all()
        resumed = []
        for plan_id, beat, registry in rows:
            heartbeat = utcnow()
            last = (
                RetentionPlan.applied_at.is_(None)
                if beat is None
                else RetentionPlan.applied_at == beat
            )
            async with self.db.write() as conn:
                taken = await conn.execute(
                    update(RetentionPlan)
                    .where(RetentionPlan.id == plan_id, RetentionPlan.status == "applying", last)
                    .values(applied_at=heartbeat)
                )
                row = (
                    await conn.execute(select(RetentionPlan).where(RetentionPlan.id == plan_id))
                ).first()
            if taken.rowcount != 1 or row is None:
                continue  # another instance took it, or it moved on
            log.warning("retention plan %d of %s was interrupted; resuming it", plan_id, registry)
            try:
                result = await self._execute(
                    registry,
                    plan_id,
                    row.policy,
                    row.items,
                    heartbeat,
                    (row.result or {}).get("progress") or {},
                    resumed=True,
                )
            except _LostPlan:
                continue
            await self._audit_job(registry, plan_id, result)
            resumed.append((registry, plan_id))
        return resumed

    async def _audit_job(self, registry: str, plan_id: int, result: dict[str, Any]) -> None:
        if self.audit is None:
            return
        await self.audit.record(
            AuditRecord(
                actor=SCHEDULE_ACTOR,
                client="-",
                request_id=None,
                action="retention.apply",
                method="JOB",
                target=f"/api/v1/registries/{registry}/retention/plans/{plan_id}:apply",
                registry=registry,
                status=200,
                outcome="success",
                detail={"plan": plan_id, **result},
            )
        )

    # -- the schedule ----------------------------------------------------------------------

    async def run_schedules(self) -> list[tuple[str, int]]:
        """Make and apply a plan for every registry whose schedule is due; the (registry,
        plan id) pairs applied. Run by the `retention` background job under its lease, which
        first finishes the applies that a crash interrupted."""
        await self.resume_interrupted()
        now = utcnow()
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        RetentionPolicy.registry_id,
                        Registry.name,
                        RetentionPolicy.policy,
                        RetentionPolicy.updated_at,
                        RetentionPolicy.last_scheduled_at,
                    )
                    .join(Registry, Registry.id == RetentionPolicy.registry_id)
                    .where(Registry.status == "available")
                )
            ).all()
        done = []
        for registry_id, registry, policy, set_at, last_run in rows:
            # Idle means idle: nothing due, nothing written (the claim is a write).
            if not _due(policy, set_at, last_run, now) or not await self._claim(registry_id):
                continue
            plan = await self.make_plan(registry, SCHEDULE_ACTOR, trigger="schedule")
            applied = await self.apply_plan(registry, plan["id"], SCHEDULE_ACTOR)
            log.info("retention plan %d of %s applied: %s", plan["id"], registry, applied["result"])
            await self._audit_job(registry, plan["id"], applied["result"] or {})
            done.append((registry, plan["id"]))
        return done

    async def _claim(self, registry_id: int) -> bool:
        """Take the registry's due scheduled run, if it is due: one transaction reads and
        moves `last_scheduled_at`, so two instances never both take it."""
        now = utcnow()
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    select(
                        RetentionPolicy.policy,
                        RetentionPolicy.updated_at,
                        RetentionPolicy.last_scheduled_at,
                    )
                    .where(RetentionPolicy.registry_id == registry_id)
                    .with_for_update()
                )
            ).first()
            if row is None:
                return False
            if not _due(*row, now):
                return False
            await conn.execute(
                update(RetentionPolicy)
                .where(RetentionPolicy.registry_id == registry_id)
                .values(last_scheduled_at=now)
            )
        return True
