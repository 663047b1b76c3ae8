"""The registry's metadata, as SQLAlchemy models. Schema changes go through Alembic migrations
(`ociregistry/migrations`); the same models run on SQLite and PostgreSQL.

    registries ─< images ─< manifests ─< manifest_references
                        ├─< tags >── manifests
                        ├─< image_blobs          (which blobs an image may serve)
                        └─< image_usage          (which blobs its manifests reference)
    registries ─< registry_usage                 (the same, per registry)
    blob_usage                                   (the same, for the whole platform)

The three usage tables are reference counts kept as manifests are added and removed
(catalog/usage.py; on SQLite a manifest is counted after its PUT, catalog/usage_deferred.py):
they make every storage figure exact whenever it is read.

Bytes (blobs and manifests alike) live in the blob store under their digest, never here.
`images.tag_count`, `images.size_bytes` and `registries.image_count` are kept by database
triggers (migration 0009), never written by the application.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DIGEST_LENGTH = 160  # sha512:<128 hex>


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands stored times back without a zone; every stored time is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def new_resource_id(prefix: str) -> str:
    """A random, opaque resource ID (`reg-…`); 80 random bits, so it is never reused."""
    return f"{prefix}-{secrets.token_hex(10)}"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Registry(Base):
    __tablename__ = "registries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="user")  # user | platform
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="available")  # | deleting
    remark: Mapped[str] = mapped_column(Text, default="")
    project_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("project_groups.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pull_count: Mapped[int] = mapped_column(BigInteger, default=0)
    pull_count_refreshed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # kept by catalog/usage.py
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # 0: no quota
    # tag patterns whose tags never move once pushed (catalog/immutable.py)
    immutable_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Images holding at least one tag; kept by triggers (migration 0009).
    image_count: Mapped[int] = mapped_column(Integer, server_default="0")


class Image(Base):
    """An OCI repository inside a registry: `{registry}/{name}`."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("registry_id", "name"),
        Index("ix_images_name", "name", "registry_id"),  # platform images, by name
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    pull_count: Mapped[int] = mapped_column(BigInteger, default=0)
    tag_count: Mapped[int] = mapped_column(Integer, server_default="0")  # kept by triggers
    size_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")  # by catalog/usage.py
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageBlob(Base):
    """A blob an image may serve: uploaded into it, mounted into it, or one of its manifests."""

    __tablename__ = "image_blobs"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Manifest(Base):
    __tablename__ = "manifests"
    __table_args__ = (
        UniqueConstraint("image_id", "digest"),
        Index("ix_manifests_subject", "image_id", "subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    artifact_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), nullable=True)
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ManifestReference(Base):
    """What a manifest points at: its config and layers, or an index's children."""

    __tablename__ = "manifest_references"

    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # blob | manifest
    size: Mapped[int] = mapped_column(BigInteger)
    platform: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PullEvent(Base):
    """A manifest GET, or a HEAD by tag, waiting to be counted (see catalog/pulls.py)."""

    __tablename__ = "pull_events"
    __table_args__ = (
        Index("ix_pull_events_pending", "processed", "at"),
        Index("ix_pull_events_client", "client", "image_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)  # seconds since the epoch
    client: Mapped[str] = mapped_column(String(300))  # address and credentials
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    tag: Mapped[str | None] = mapped_column(String(128), nullable=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    processed: Mapped[bool] = mapped_column(Boolean, default=False)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("image_id", "name"),
        Index("ix_tags_image_created", "image_id", "created_at"),  # newest first, the default
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"))
    pull_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # the last push to this tag
    last_pulled_at: Mapped[datetime | None] = mapped_column(nullable=True)  # by catalog/pulls.py


class AuditEvent(Base):
    """One change, sign-in or failed sign-in, as the audit log shows it (ops/audit.py)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        # every filter of the list, then its order (migration 0017)
        Index("ix_audit_log_at_id", "at", "id"),
        Index("ix_audit_log_registry_at_id", "registry", "at", "id"),
        Index("ix_audit_log_actor_at", "actor", "at", "id"),
        Index("ix_audit_log_action_at", "action", "at", "id"),
        Index("ix_audit_log_outcome_at", "outcome", "at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(512))
    # `registry` is the column; the attribute name `registry` is the ORM's own
    registry_name: Mapped[str | None] = mapped_column("registry", String(63), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # success | denied | failure
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


# A blob's id: BIGINT on PostgreSQL, whose identity spends a value on every upsert; SQLite's
# INTEGER PRIMARY KEY is the rowid (64 bits), which clusters the table on it.
BLOB_ID = BigInteger().with_variant(Integer, "sqlite")


class ImageUsage(Base):
    """A blob (layer, config or manifest) the manifests of an image reference, and how many
    references it has there: the image's `size_bytes` is the sum of these sizes. Keyed by the
    blob's integer id (`BlobUsage.id`, which has the digest; migration 0018), so that the rows
    a push adds go to the end of the image's rows, one page, not to a page each by digest,
    and a row is small (a page holds some 150). On SQLite the foreign key is a delete trigger
    on `images` instead (migration 0024: its lookup cost every row inserted)."""

    __tablename__ = "image_usage"
    __table_args__ = ({"sqlite_with_rowid": False},)  # clustered on the key (migration 0016)

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    blob_id: Mapped[int] = mapped_column(BLOB_ID, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    refs: Mapped[int] = mapped_column(Integer)


class RegistryUsage(Base):
    """A blob some image of a registry references, and in how many of its images (keyed by
    the blob's id, as `ImageUsage`; on SQLite without its foreign key, as `ImageUsage`)."""

    __tablename__ = "registry_usage"
    __table_args__ = ({"sqlite_with_rowid": False},)  # clustered on the key (migration 0016)

    registry_id: Mapped[int] = mapped_column(
        ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True
    )
    blob_id: Mapped[int] = mapped_column(BLOB_ID, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    refs: Mapped[int] = mapped_column(Integer)


class BlobUsage(Base):
    """A blob some registry references, and in how many registries: the platform's referenced
    bytes, and what is unique to one registry (`refs` = 1). Its `id`, given in the order blobs
    first enter the store, keys the rows of the levels below (migration 0018)."""

    __tablename__ = "blob_usage"

    id: Mapped[int] = mapped_column(BLOB_ID, primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    refs: Mapped[int] = mapped_column(Integer)


class UsageFold(Base):
    """The highest manifest id whose references the usage tables count: on SQLite a manifest
    is counted after its PUT, with every other pushed since (catalog/usage_deferred.py;
    migration 0022). One row."""

    __tablename__ = "usage_fold"
    __table_args__ = (CheckConstraint("id = 1", name="ck_usage_fold_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest_id: Mapped[int] = mapped_column(BigInteger)


class JobLease(Base):
    """Who runs a background job (garbage collection, upload purge, …) until when: one
    instance at a time, taken and renewed by compare-and-set (see catalog/leases.py)."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires: Mapped[datetime] = mapped_column()


class JobRun(Base):
    """One run of a background job under its lease: what ran where and when, for operators
    (and for the test that no two instances ever run the same job at once)."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_name_started", "name", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="running")  # | ok | failed | lost


class RetentionPolicy(Base):
    """A registry's retention policy (catalog/retention.py): its rules as JSON, and when the
    schedule last made a plan (the compare-and-set that lets one instance run it)."""

    __tablename__ = "retention_policies"

    registry_id: Mapped[int] = mapped_column(
        ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True
    )
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_scheduled_at: Mapped[datetime | None] = mapped_column(nullable=True)


class RetentionPlan(Base):
    """A stored dry run: every manifest and tag with its verdict and the rule that decided it;
    applying it executes exactly these items and records what happened to each."""

    __tablename__ = "retention_plans"
    __table_args__ = (Index("ix_retention_plans_registry", "registry_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    trigger: Mapped[str] = mapped_column(String(16))  # manual | schedule
    status: Mapped[str] = mapped_column(String(16))  # planned | applying | applied
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    items: Mapped[list[Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[datetime | None] = mapped_column(nullable=True)
    applied_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
